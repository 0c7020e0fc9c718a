//! The ingest's settings.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use maildrop_runtime::args::{DomainArgs, LogArgs, NatsArgs, StreamArgs, parse_duration};

use crate::smtp::{self, SessionConfig};

/// maildrop-ingest: the SMTP server that receives mail for our domains.
#[derive(Debug, Clone, Parser)]
#[command(name = "maildrop-ingest", version, about)]
pub struct Config {
    /// Address to accept SMTP connections on.
    #[arg(long, env = "MAILDROP_SMTP_ADDR", default_value = "127.0.0.1:2525")]
    pub smtp_addr: SocketAddr,
    /// Name the server greets with.
    #[arg(long, env = "MAILDROP_HOSTNAME", default_value = smtp::DEFAULT_HOSTNAME)]
    pub hostname: String,
    #[command(flatten)]
    pub domains: DomainArgs,
    /// Largest message accepted, in bytes (announced in SIZE). Never more than the NATS server's
    /// max_payload allows: it is lowered to fit, with a warning.
    #[arg(long, env = "MAILDROP_MAX_MESSAGE_SIZE", default_value_t = smtp::DEFAULT_MAX_MESSAGE_SIZE)]
    pub max_message_size: usize,
    /// Recipients accepted per message (RFC 5321 asks for at least 100).
    #[arg(long, env = "MAILDROP_MAX_RECIPIENTS", default_value_t = smtp::DEFAULT_MAX_RECIPIENTS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(100..=10_000))]
    pub max_recipients: usize,
    /// Longest command line, in bytes.
    #[arg(long, env = "MAILDROP_MAX_LINE_LENGTH", default_value_t = smtp::DEFAULT_MAX_LINE_LENGTH, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(512..=65_536))]
    pub max_line_length: usize,
    /// Failed commands before the connection is closed with 421.
    #[arg(long, env = "MAILDROP_MAX_BAD_COMMANDS", default_value_t = smtp::DEFAULT_MAX_BAD_COMMANDS)]
    pub max_bad_commands: u32,
    /// Commands per connection before it is closed with 421.
    #[arg(long, env = "MAILDROP_MAX_COMMANDS", default_value_t = smtp::DEFAULT_MAX_COMMANDS)]
    pub max_commands: u32,
    /// Open SMTP connections at once; further connections get 421 and are closed.
    #[arg(long, env = "MAILDROP_MAX_CONNECTIONS", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// A connection silent this long gets 421 and is closed.
    #[arg(long, env = "MAILDROP_SMTP_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Longest a whole SMTP session may last.
    #[arg(long, env = "MAILDROP_SMTP_SESSION_TIMEOUT", default_value = "30m", value_parser = parse_duration)]
    pub session_timeout: Duration,
    /// How long to wait for JetStream to acknowledge a message before answering 451.
    #[arg(long, env = "MAILDROP_PUBLISH_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub publish_timeout: Duration,
    /// On shutdown, how long transactions in flight may take to finish.
    #[arg(long, env = "MAILDROP_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub streams: StreamArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

impl Config {
    pub fn session(&self, max_message_size: usize) -> SessionConfig {
        SessionConfig {
            hostname: self.hostname.clone(),
            domains: self.domains.domains.clone(),
            max_message_size,
            max_recipients: self.max_recipients,
            max_line_length: self.max_line_length,
            max_bad_commands: self.max_bad_commands,
            max_commands: self.max_commands,
            ..SessionConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_flag_is_well_formed() {
        use clap::CommandFactory;
        super::Config::command().debug_assert();
    }
}
