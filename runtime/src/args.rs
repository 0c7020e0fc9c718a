//! Flags shared by every stage, each with its `MAILDROP_*` variable.
//!
//! A stage's own `Config` struct `#[command(flatten)]`s the groups it needs, so `--help` lists
//! every setting in one place and a bad value stops start-up with the variable's name.

use std::time::Duration;

use clap::Args;

pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Parses a human duration such as `30s`, `5m`, `24h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// NATS server URL (JetStream must be enabled); the nodes of a cluster comma-separated.
    #[arg(id = "nats_url", long = "nats-url", env = "MAILDROP_NATS_URL", default_value = DEFAULT_NATS_URL)]
    pub url: String,
}

#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis URL: one `redis://` URL for a single server; for a Redis Cluster, its nodes'
    /// URLs comma-separated, or one node as `redis+cluster://host:port`.
    #[arg(id = "redis_url", long = "redis-url", env = "MAILDROP_REDIS_URL", default_value = DEFAULT_REDIS_URL)]
    pub url: String,
}

/// Limits of the JetStream streams. Every stage makes sure the streams exist, so every stage takes
/// the same settings; give all stages the same environment.
#[derive(Debug, Clone, Args)]
pub struct StreamArgs {
    /// How long raw messages stay in the RECEIVED stream (the replay and rebuild horizon).
    #[arg(long, env = "MAILDROP_RECEIVED_MAX_AGE", default_value = "7d", value_parser = parse_duration)]
    pub received_max_age: Duration,
    /// Largest total size of the RECEIVED stream in bytes; the oldest messages go first.
    #[arg(long, env = "MAILDROP_RECEIVED_MAX_BYTES", default_value_t = 8 * 1024 * 1024 * 1024)]
    pub received_max_bytes: i64,
    /// How long verdicts and mailbox events are kept.
    #[arg(long, env = "MAILDROP_EVENTS_MAX_AGE", default_value = "7d", value_parser = parse_duration)]
    pub events_max_age: Duration,
    /// Window in which a republished message with the same id is dropped as a duplicate.
    #[arg(long, env = "MAILDROP_DUPLICATE_WINDOW", default_value = "10m", value_parser = parse_duration)]
    pub duplicate_window: Duration,
    /// Replicas of every stream (1 for one server, 3 for a 3-node cluster).
    #[arg(long, env = "MAILDROP_STREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=5))]
    pub stream_replicas: u16,
}

impl Default for StreamArgs {
    fn default() -> Self {
        Self {
            received_max_age: Duration::from_secs(7 * 86_400),
            received_max_bytes: 8 * 1024 * 1024 * 1024,
            events_max_age: Duration::from_secs(7 * 86_400),
            duplicate_window: Duration::from_secs(600),
            stream_replicas: 1,
        }
    }
}

/// How a durable consumer retries.
#[derive(Debug, Clone, Args)]
pub struct ConsumerArgs {
    /// Deliveries of a failing message before it is dead-lettered.
    #[arg(long, env = "MAILDROP_MAX_DELIVER", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_deliver: u32,
    /// Time a consumer has to finish a message before JetStream redelivers it.
    #[arg(long, env = "MAILDROP_ACK_WAIT", default_value = "30s", value_parser = parse_duration)]
    pub ack_wait: Duration,
    /// Messages handled at once by one instance.
    #[arg(long, env = "MAILDROP_CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
}

impl Default for ConsumerArgs {
    fn default() -> Self {
        Self {
            max_deliver: 5,
            ack_wait: Duration::from_secs(30),
            concurrency: 32,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, env = "MAILDROP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, in `tracing` syntax (e.g. `info,maildrop_ingest=debug`).
    #[arg(long, env = "MAILDROP_LOG", default_value = "info")]
    pub log: String,
}

/// The domains we receive mail for.
#[derive(Debug, Clone, Args)]
pub struct DomainArgs {
    /// Domains we accept mail for, comma-separated; the first is shown on the web page.
    #[arg(long, env = "MAILDROP_DOMAINS", value_delimiter = ',', default_value = "maildrop.localhost", value_parser = parse_domain)]
    pub domains: Vec<String>,
}

/// A DNS name: labels of letters, digits and hyphens, lower-cased.
pub fn parse_domain(s: &str) -> Result<String, String> {
    let d = s.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if d.is_empty() || d.len() > 253 || !d.split('.').all(label_ok) {
        return Err(format!("{s:?} is not a domain name"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_validated_and_lower_cased() {
        assert_eq!(
            parse_domain("Maildrop.Localhost.").unwrap(),
            "maildrop.localhost"
        );
        for bad in ["", "a..b", "-a.b", "a_b.c", "a b"] {
            assert!(parse_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert!(parse_duration("soon").is_err());
    }
}
