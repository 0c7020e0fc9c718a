//! The gateway's settings.

use std::net::SocketAddr;

use clap::Parser;
use maildrop_runtime::args::{DomainArgs, LogArgs, NatsArgs, RedisArgs, StreamArgs, parse_duration};

/// maildrop-gateway: the HTTP API, live push and the web page.
#[derive(Debug, Clone, Parser)]
#[command(name = "maildrop-gateway", version, about)]
pub struct Config {
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
    /// Secret key from which mailbox aliases are derived. Changing it changes every alias.
    #[arg(long, env = "MAILDROP_ALIAS_KEY", default_value = "maildrop-development-alias-key", hide_default_value = true)]
    pub alias_key: String,
    /// How long an alias keeps working after it was last shown.
    #[arg(long, env = "MAILDROP_ALIAS_TTL", default_value = "30d", value_parser = parse_duration)]
    pub alias_ttl: std::time::Duration,
    #[command(flatten)]
    pub log: LogArgs,
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_flag_is_well_formed() {
        use clap::CommandFactory;
        super::Config::command().debug_assert();
    }
}
