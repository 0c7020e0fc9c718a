//! The gateway's settings.

use std::net::SocketAddr;

use clap::Parser;
use maildrop_runtime::args::{
    DomainArgs, LogArgs, NatsArgs, RedisArgs, StreamArgs, parse_duration,
};
use maildrop_runtime::cidr::{self, CidrList};
use maildrop_store::ratelimit::Rate;

/// maildrop-gateway: the HTTP API, live push and the web page.
#[derive(Debug, Clone, Parser)]
#[command(name = "maildrop-gateway", version, about)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address to serve HTTP on.
    #[arg(long, env = "MAILDROP_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    #[command(flatten)]
    pub domains: DomainArgs,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub streams: StreamArgs,
    /// Events buffered per watched mailbox; a watcher further behind is told to resync.
    #[arg(long, env = "MAILDROP_WS_BUFFER", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub ws_buffer: u32,
    /// Most missed events replayed to a reconnecting watcher; beyond that it is told to resync.
    #[arg(long, env = "MAILDROP_MAX_REPLAY", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_replay: u32,
    /// Secret key from which mailbox aliases are derived. Changing it changes every alias.
    #[arg(
        long,
        env = "MAILDROP_ALIAS_KEY",
        default_value = "maildrop-development-alias-key",
        hide_default_value = true
    )]
    pub alias_key: String,
    /// How long an alias keeps working after it was last shown.
    #[arg(long, env = "MAILDROP_ALIAS_TTL", default_value = "30d", value_parser = parse_duration)]
    pub alias_ttl: std::time::Duration,
    /// Requests allowed per client IP, as `<count>/<period>` (shared by all gateways through Redis);
    /// `off` disables the limit.
    #[arg(long, env = "MAILDROP_RATE_LIMIT", default_value = "50/10s", value_parser = parse_rate)]
    pub rate_limit: RateLimit,
    /// Proxies whose `X-Forwarded-For` is believed, as comma-separated CIDRs (none by default).
    #[arg(long, env = "MAILDROP_TRUSTED_PROXIES", default_value = "", value_parser = cidr::parse_list)]
    pub trusted_proxies: CidrList,
    /// Origins allowed to call the API from a browser (CORS), comma-separated; `*` for any.
    #[arg(long, env = "MAILDROP_CORS_ORIGINS", default_value = "*")]
    pub cors_origins: String,
    /// Live feeds (WebSocket, SSE, wait) one client IP may hold open.
    #[arg(long, env = "MAILDROP_MAX_WATCHERS_PER_IP", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_watchers_per_ip: u32,
    /// Live feeds this gateway holds open in total.
    #[arg(long, env = "MAILDROP_MAX_WATCHERS", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_watchers: u32,
    #[command(flatten)]
    pub log: LogArgs,
}

/// What to do; serving HTTP when none is given.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Serve the HTTP API, live push and the web page (the default).
    Serve,
    /// Print a mailbox's events as JSON lines (a WebSocket client of a running gateway).
    Watch(crate::watch::WatchArgs),
}

/// `MAILDROP_RATE_LIMIT`: a rate, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit(pub Option<Rate>);

/// `50/10s` → 50 per 10 seconds; `off` → no limit.
pub fn parse_rate(s: &str) -> Result<RateLimit, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(RateLimit(None));
    }
    let (count, period) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected <count>/<period>, like 50/10s, or off"))?;
    let capacity: u32 = count
        .trim()
        .parse()
        .map_err(|_| format!("{count:?} is not a count"))?;
    let period = parse_duration(period.trim())?;
    if capacity == 0 || period.is_zero() {
        return Err("count and period must be above zero (use `off` to disable)".into());
    }
    Ok(RateLimit(Some(Rate { capacity, period })))
}

#[cfg(test)]
mod tests {
    #[test]
    fn rates_read_like_people_write_them() {
        use std::time::Duration;
        let r = super::parse_rate("50/10s").unwrap().0.unwrap();
        assert_eq!((r.capacity, r.period), (50, Duration::from_secs(10)));
        assert_eq!(super::parse_rate("off").unwrap().0, None);
        assert!(super::parse_rate("50").is_err());
        assert!(super::parse_rate("0/1s").is_err());
    }

    #[test]
    fn every_flag_is_well_formed() {
        use clap::CommandFactory;
        super::Config::command().debug_assert();
    }
}
