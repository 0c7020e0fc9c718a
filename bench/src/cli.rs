//! Command line: every option has a `MAILDROP_BENCH_*` variable and a named default.
//!
//! Without a subcommand, `maildrop-bench` loads a running Maildrop (`make run`) at `--smtp`.
//! `maildrop-bench scenario <name>` starts its own servers and stages instead (in-process for
//! `ingest` and `pipeline`, as processes for the others).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::size::SizeSpec;
use crate::target::{parse_loopback_addr, parse_loopback_url};

pub const DEFAULT_SMTP: &str = "127.0.0.1:2525";
pub const DEFAULT_SESSIONS: u32 = 20;
pub const DEFAULT_PER_CONNECTION: u32 = 1;
pub const DEFAULT_MESSAGES: u64 = 20_000;
pub const DEFAULT_DURATION: &str = "60s";
/// Per run in a scenario: the ingest scenario makes two runs and must end within about 2 minutes.
pub const DEFAULT_SCENARIO_DURATION: &str = "50s";
pub const DEFAULT_SIZE: &str = "1KiB";
pub const DEFAULT_MAILBOXES: u32 = 100;
pub const DEFAULT_DOMAIN: &str = "maildrop.localhost";
pub const DEFAULT_REPLY_TIMEOUT: &str = "30s";
pub const DEFAULT_WARMUP: u64 = 200;
pub const DEFAULT_WS_WATCHERS: u32 = 10;
pub const DEFAULT_SETTLE: &str = "15s";
pub const DEFAULT_SEED: u64 = 1;
pub const DEFAULT_HARAKA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/haraka");
pub const DEFAULT_HARAKA_NODES: &str = "cpus";
pub const DEFAULT_PUSH_RATE: u32 = 1000;
pub const DEFAULT_PUSH_WATCHERS: &str = "1000,10000";
pub const DEFAULT_PUSH_MAILBOXES: u32 = 1000;
pub const DEFAULT_PUSH_MESSAGES: u64 = 10_000;
pub const DEFAULT_IDLE_CONNECTIONS: u32 = 1000;
pub const DEFAULT_IDLE_HOLD: &str = "10s";
pub const DEFAULT_SOAK_DURATION: &str = "3m";
pub const DEFAULT_SOAK_RATE: u32 = 200;
pub const DEFAULT_SOAK_EVERY: &str = "5s";

/// maildrop-bench: an SMTP load generator for Maildrop, with optional end-to-end latency.
///
/// Without a subcommand it loads a Maildrop already running on this machine (`make run`); with
/// `scenario ingest` or `scenario pipeline` it starts its own nats-server, redis-server and stages
/// in this process, so nothing needs to be running. Only loopback addresses are accepted.
#[derive(Debug, Parser)]
#[command(
    name = "maildrop-bench",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// SMTP address to load (loopback only).
    #[arg(long, env = "MAILDROP_BENCH_SMTP_ADDR", default_value = DEFAULT_SMTP, value_parser = parse_loopback_addr)]
    pub smtp: SocketAddr,
    /// Message size: a fixed size (`1KiB`, `20KiB`, `4096`) or `mix` (1 to 100 KiB, mostly a few
    /// KiB, multipart text and HTML, sometimes a small base64 attachment).
    #[arg(long, env = "MAILDROP_BENCH_SIZE", default_value = DEFAULT_SIZE)]
    pub size: SizeSpec,
    /// Longest the load may run (the run ends at the message count or this, whichever is first).
    #[arg(long, env = "MAILDROP_BENCH_DURATION", default_value = DEFAULT_DURATION, value_parser = parse_duration)]
    pub duration: Duration,
    /// Measure 250 → `stored` event: subscribe to the mailbox events on this NATS server.
    #[arg(long, env = "MAILDROP_BENCH_NATS_URL", value_parser = parse_loopback_url)]
    pub nats_url: Option<String>,
    /// Measure 250 → listed: poll the mailbox index keys on this Redis (every 2 ms).
    #[arg(long, env = "MAILDROP_BENCH_REDIS_URL", value_parser = parse_loopback_url)]
    pub redis_url: Option<String>,
    /// Measure 250 → WebSocket push: the gateway's base URL, e.g. `ws://127.0.0.1:8080`.
    #[arg(long, env = "MAILDROP_BENCH_WS_URL", value_parser = parse_loopback_url)]
    pub ws_url: Option<String>,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start nats-server, redis-server and the stages (and peers), then measure.
    ///
    /// In this process: `ingest` (the ingest alone; 1 KiB, then 20 KiB) and `pipeline` (all five
    /// stages; the mix, with end-to-end latency over NATS and WebSocket). As separate processes,
    /// each sampled for CPU and memory: `peers` (smtp-sink, Haraka, the ingest and the whole
    /// pipeline under one load), `push` (WebSocket watchers at a fixed message rate),
    /// `connections` (idle SMTP sessions held open), `soak` (a steady rate for minutes, memory
    /// over time), and `all` (those four, as `make bench` runs them). Each stops by itself.
    Scenario {
        #[arg(value_enum)]
        name: ScenarioName,
        /// Longest each load run may take (the soak's length is --soak-duration).
        #[arg(long, env = "MAILDROP_BENCH_DURATION", default_value = DEFAULT_SCENARIO_DURATION, value_parser = parse_duration)]
        duration: Duration,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        procs: ProcessArgs,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioName {
    Ingest,
    Pipeline,
    Peers,
    Push,
    Connections,
    Soak,
    /// The filter's rules alone: messages per second through the full rule set, cached DNS.
    Filter,
    All,
}

/// Options of the scenarios that run the stages and peers as processes.
#[derive(Debug, Clone, Args)]
pub struct ProcessArgs {
    /// Where the stage binaries are (default: next to maildrop-bench, i.e. target/release).
    #[arg(long, env = "MAILDROP_BENCH_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// The Haraka peer's directory, where `npm ci` installed it.
    #[arg(long, env = "MAILDROP_BENCH_HARAKA_DIR", default_value = DEFAULT_HARAKA_DIR)]
    pub haraka_dir: PathBuf,
    /// Haraka's `nodes` setting: worker processes (`cpus`: one per core).
    #[arg(long, env = "MAILDROP_BENCH_HARAKA_NODES", default_value = DEFAULT_HARAKA_NODES)]
    pub haraka_nodes: String,
    /// Push scenario: messages started per second.
    #[arg(long, env = "MAILDROP_BENCH_PUSH_RATE", default_value_t = DEFAULT_PUSH_RATE, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub push_rate: u32,
    /// Push scenario: watcher counts, one run each (comma-separated).
    #[arg(long, env = "MAILDROP_BENCH_PUSH_WATCHERS", default_value = DEFAULT_PUSH_WATCHERS, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub push_watchers: Vec<u32>,
    /// Push scenario: mailboxes the messages and watchers are spread over.
    #[arg(long, env = "MAILDROP_BENCH_PUSH_MAILBOXES", default_value_t = DEFAULT_PUSH_MAILBOXES, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub push_mailboxes: u32,
    /// Push scenario: messages per run.
    #[arg(long, env = "MAILDROP_BENCH_PUSH_MESSAGES", default_value_t = DEFAULT_PUSH_MESSAGES, value_parser = clap::value_parser!(u64).range(1..))]
    pub push_messages: u64,
    /// Connections scenario: idle SMTP sessions to hold open.
    #[arg(long, env = "MAILDROP_BENCH_IDLE_CONNECTIONS", default_value_t = DEFAULT_IDLE_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub idle_connections: u32,
    /// Connections scenario: how long to hold them once all are open.
    #[arg(long, env = "MAILDROP_BENCH_IDLE_HOLD", default_value = DEFAULT_IDLE_HOLD, value_parser = parse_duration)]
    pub idle_hold: Duration,
    /// Soak scenario: how long the steady load runs.
    #[arg(long, env = "MAILDROP_BENCH_SOAK_DURATION", default_value = DEFAULT_SOAK_DURATION, value_parser = parse_duration)]
    pub soak_duration: Duration,
    /// Soak scenario: messages started per second.
    #[arg(long, env = "MAILDROP_BENCH_SOAK_RATE", default_value_t = DEFAULT_SOAK_RATE, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub soak_rate: u32,
    /// Soak scenario: how often every process's memory is read.
    #[arg(long, env = "MAILDROP_BENCH_SOAK_EVERY", default_value = DEFAULT_SOAK_EVERY, value_parser = parse_duration)]
    pub soak_every: Duration,
}

/// Options shared by a direct run and the scenarios.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Concurrent SMTP sessions.
    #[arg(long, env = "MAILDROP_BENCH_SESSIONS", default_value_t = DEFAULT_SESSIONS, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub sessions: u32,
    /// Messages per connection: 1 = connect, EHLO, MAIL, RCPT, DATA, QUIT for every message; more
    /// reuses the connection with RSET (the ingest closes a connection after 1,000 commands, about
    /// 200 messages).
    #[arg(long, env = "MAILDROP_BENCH_PER_CONNECTION", default_value_t = DEFAULT_PER_CONNECTION, value_parser = clap::value_parser!(u32).range(1..))]
    pub per_connection: u32,
    /// Messages to send (the run ends at this count or the duration limit, whichever is first).
    #[arg(long, env = "MAILDROP_BENCH_MESSAGES", default_value_t = DEFAULT_MESSAGES, value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: u64,
    /// Mailboxes the recipients are spread over (`bench-0` … `bench-<K-1>`).
    #[arg(long, env = "MAILDROP_BENCH_MAILBOXES", default_value_t = DEFAULT_MAILBOXES, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub mailboxes: u32,
    /// Domain of the recipients (one the ingest accepts mail for).
    #[arg(long, env = "MAILDROP_BENCH_DOMAIN", default_value = DEFAULT_DOMAIN)]
    pub domain: String,
    /// Longest wait for any one reply before the transaction counts as a timeout.
    #[arg(long, env = "MAILDROP_BENCH_REPLY_TIMEOUT", default_value = DEFAULT_REPLY_TIMEOUT, value_parser = parse_duration)]
    pub reply_timeout: Duration,
    /// Messages sent before the measured run and not counted (0 to skip).
    #[arg(long, env = "MAILDROP_BENCH_WARMUP", default_value_t = DEFAULT_WARMUP)]
    pub warmup: u64,
    /// WebSocket watchers (with `--ws-url`, and in the pipeline scenario), spread over the
    /// mailboxes.
    #[arg(long, env = "MAILDROP_BENCH_WS_WATCHERS", default_value_t = DEFAULT_WS_WATCHERS, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub ws_watchers: u32,
    /// After the load, how long to wait for the last end-to-end observations.
    #[arg(long, env = "MAILDROP_BENCH_SETTLE", default_value = DEFAULT_SETTLE, value_parser = parse_duration)]
    pub settle: Duration,
    /// Seed of the message generator (the same seed gives the same sizes).
    #[arg(long, env = "MAILDROP_BENCH_SEED", default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Print JSON instead of tables.
    #[arg(long, env = "MAILDROP_BENCH_JSON")]
    pub json: bool,
}

/// `60s`, `500ms`, `2m`, `1m30s`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 60s, 500ms, 2m or 1m30s");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" | "min" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => return Err(bad()),
        };
        total += part;
        rest = &rest[unit..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_flag_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_option_has_an_environment_variable() {
        fn check(cmd: &clap::Command) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_positional() || matches!(id, "help" | "version") {
                    continue;
                }
                let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
                assert!(
                    env.as_deref()
                        .is_some_and(|e| e.starts_with("MAILDROP_BENCH_")),
                    "--{id} has no MAILDROP_BENCH_ variable"
                );
            }
            for sub in cmd.get_subcommands() {
                check(sub);
            }
        }
        check(&Cli::command());
    }

    #[test]
    fn the_defaults_are_the_reference_measurement() {
        let cli = Cli::try_parse_from(["maildrop-bench"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.smtp, "127.0.0.1:2525".parse().unwrap());
        assert_eq!(cli.size, SizeSpec::Fixed(1024));
        assert_eq!(cli.duration, Duration::from_secs(60));
        assert_eq!(cli.load.sessions, 20);
        assert_eq!(cli.load.per_connection, 1);
        assert_eq!(cli.load.messages, 20_000);
        assert_eq!(cli.load.mailboxes, 100);
        assert_eq!(cli.load.domain, "maildrop.localhost");
    }

    #[test]
    fn scenarios_take_the_load_options_after_their_name() {
        let cli = Cli::try_parse_from([
            "maildrop-bench",
            "scenario",
            "pipeline",
            "--messages",
            "500",
            "--json",
        ])
        .unwrap();
        let Some(Command::Scenario {
            name,
            duration,
            load,
            procs,
        }) = cli.command
        else {
            panic!("a scenario");
        };
        assert_eq!(name, ScenarioName::Pipeline);
        assert_eq!(duration, Duration::from_secs(50));
        assert_eq!(load.messages, 500);
        assert!(load.json);
        assert_eq!(procs.push_watchers, [1000, 10_000]);
        assert_eq!(procs.soak_duration, Duration::from_secs(180));
        assert!(procs.haraka_dir.ends_with("bench/peers/haraka"));
    }

    #[test]
    fn process_scenarios_take_their_own_options() {
        let cli = Cli::try_parse_from([
            "maildrop-bench",
            "scenario",
            "push",
            "--push-watchers",
            "10,20",
            "--push-rate",
            "50",
            "--soak-duration",
            "30s",
        ])
        .unwrap();
        let Some(Command::Scenario { name, procs, .. }) = cli.command else {
            panic!("a scenario");
        };
        assert_eq!(name, ScenarioName::Push);
        assert_eq!(procs.push_watchers, [10, 20]);
        assert_eq!(procs.push_rate, 50);
        assert_eq!(procs.soak_duration, Duration::from_secs(30));
        assert!(
            Cli::try_parse_from(["maildrop-bench", "scenario", "push", "--push-watchers", "0"])
                .is_err()
        );
    }

    #[test]
    fn remote_targets_are_refused() {
        assert!(Cli::try_parse_from(["maildrop-bench", "--smtp", "192.0.2.1:25"]).is_err());
        assert!(Cli::try_parse_from(["maildrop-bench", "--nats-url", "nats://192.0.2.1"]).is_err());
        assert!(Cli::try_parse_from(["maildrop-bench", "--size", "3"]).is_err());
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "60", "s", "1x", "1.5s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
