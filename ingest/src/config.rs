//! The ingest's settings.
//!
//! One flat struct, so `--help` lists every setting with its variable. The connection policy
//! (TLS, PROXY protocol, per-client limits, tarpits, blocked IPs, greylisting) is grouped at the
//! end; its defaults are named constants below and explained where they are used
//! ([`crate::limits`], [`crate::tarpit`], [`crate::policy`], [`crate::server`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::policy::GreylistSettings;
use crate::smtp::{self, SessionConfig};
use crate::tarpit::Tarpit;
use clap::Parser;
use clap::builder::BoolishValueParser;
use maildrop_runtime::args::{
    DomainArgs, LogArgs, NatsArgs, RedisArgs, StreamArgs, parse_duration,
};
use maildrop_runtime::cidr::{self, CidrList};
use maildrop_runtime::ops::{self, OpsArgs};

pub const DEFAULT_PROXY_TRUSTED: &str = "127.0.0.1/32,::1/128";
pub const DEFAULT_EXEMPT_NETWORKS: &str = "127.0.0.0/8,::1/128";
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 20;
pub const DEFAULT_CONNECTION_RATE_PER_IP: u32 = 60;
pub const DEFAULT_ERROR_DELAY: &str = "100ms";
pub const DEFAULT_ERROR_DELAY_MAX: &str = "500ms";
pub const DEFAULT_TARPIT: &str = "0s";
pub const DEFAULT_GREYLIST_DELAY: &str = "5m";
pub const DEFAULT_GREYLIST_EXPIRY: &str = "36h";
pub const DEFAULT_POLICY_TIMEOUT: &str = "500ms";
pub const DEFAULT_REJECTION_BUFFER: usize = 1024;

/// maildrop-ingest: the SMTP server that receives mail for our domains.
#[derive(Debug, Clone, Parser)]
#[command(name = "maildrop-ingest", version, about)]
#[command(mut_arg("ops_addr", ops::default_at(ops::DEFAULT_INGEST_ADDR)))]
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
    /// Largest header block of a message, in bytes (Postfix's header_size_limit).
    #[arg(long, env = "MAILDROP_MAX_HEADER_SIZE", default_value_t = smtp::DEFAULT_MAX_HEADER_SIZE)]
    pub max_header_size: usize,
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
    #[command(flatten)]
    pub ops: OpsArgs,

    /// PEM certificate chain (leaf first) for STARTTLS. STARTTLS is offered only when this and
    /// MAILDROP_TLS_KEY are both set; a file that cannot be used stops start-up.
    #[arg(long, env = "MAILDROP_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the STARTTLS certificate.
    #[arg(long, env = "MAILDROP_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Expect a PROXY protocol header (v1 or v2) from the peers in MAILDROP_PROXY_TRUSTED: such a
    /// connection must start with one (within 5 s, or it is closed), and its client address is the
    /// header's source. Other peers are served as plain SMTP under their own address, and one that
    /// sends a PROXY line is answered 421 and closed.
    #[arg(long, env = "MAILDROP_PROXY_PROTOCOL", value_parser = BoolishValueParser::new())]
    pub proxy_protocol: bool,
    /// The load balancers allowed to send PROXY headers, comma-separated CIDRs.
    #[arg(long, env = "MAILDROP_PROXY_TRUSTED", default_value = DEFAULT_PROXY_TRUSTED, value_parser = cidr::parse_list)]
    pub proxy_trusted: CidrList,
    /// Open connections per client IP (IPv6: per /64); more get 421 4.7.0. 0 for no limit.
    #[arg(long, env = "MAILDROP_MAX_CONNECTIONS_PER_IP", default_value_t = DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: u32,
    /// New connections per client IP (IPv6: per /64) and minute, in a burst or spread out; more get
    /// 421 4.7.0. 0 for no limit.
    #[arg(long, env = "MAILDROP_CONNECTION_RATE_PER_IP", default_value_t = DEFAULT_CONNECTION_RATE_PER_IP)]
    pub connection_rate_per_ip: u32,
    /// Clients exempt from the per-IP limits and from greylisting (like Postfix's mynetworks),
    /// comma-separated CIDRs; empty for none. Blocked IPs and delays apply to them too.
    #[arg(long, env = "MAILDROP_EXEMPT_NETWORKS", default_value = DEFAULT_EXEMPT_NETWORKS, value_parser = cidr::parse_list)]
    pub exempt_networks: CidrList,
    /// Delay before the reply to a failed command, times the connection's failed commands so far
    /// (a tarpit for clients that keep failing). 0s turns it off.
    #[arg(long, env = "MAILDROP_ERROR_DELAY", default_value = DEFAULT_ERROR_DELAY, value_parser = parse_duration)]
    pub error_delay: Duration,
    /// The longest delay before the reply to a failed command.
    #[arg(long, env = "MAILDROP_ERROR_DELAY_MAX", default_value = DEFAULT_ERROR_DELAY_MAX, value_parser = parse_duration)]
    pub error_delay_max: Duration,
    /// Delay before every reply to MAIL, RCPT and DATA (a tarpit for impatient spam software).
    /// 0s turns it off.
    #[arg(long, env = "MAILDROP_TARPIT", default_value = DEFAULT_TARPIT, value_parser = parse_duration)]
    pub tarpit: Duration,
    /// Greylisting: the first time a client (its IPv4 /24 or IPv6 /64, and its EHLO name) offers a
    /// recipient it gets 451 4.7.1; when it retries after MAILDROP_GREYLIST_DELAY it is accepted and
    /// remembered. State is kept in Redis.
    #[arg(long, env = "MAILDROP_GREYLIST", value_parser = BoolishValueParser::new())]
    pub greylist: bool,
    /// How long a greylisted client must wait before its retry is accepted.
    #[arg(long, env = "MAILDROP_GREYLIST_DELAY", default_value = DEFAULT_GREYLIST_DELAY, value_parser = parse_duration)]
    pub greylist_delay: Duration,
    /// How long the greylist remembers a client without contact: a first contact waits this long
    /// for its retry, and an accepted client stays accepted this long after its last mail.
    #[arg(long, env = "MAILDROP_GREYLIST_EXPIRY", default_value = DEFAULT_GREYLIST_EXPIRY, value_parser = parse_duration)]
    pub greylist_expiry: Duration,
    /// How long a blocked-IP or greylist lookup in Redis may take. A lookup that fails or times
    /// out lets the client in (with a warning): Redis being down never stops mail.
    #[arg(long, env = "MAILDROP_POLICY_TIMEOUT", default_value = DEFAULT_POLICY_TIMEOUT, value_parser = parse_duration)]
    pub policy_timeout: Duration,
    /// Redis holds the blocked IPs and the greylist.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Refused SMTP attempts (blocked, rate-limited, greylisted, relay denied, too large, bad
    /// input) waiting to be published on maildrop.rejected.ingest. When the buffer is full, events
    /// are dropped and counted, never waited for. 0 publishes none.
    #[arg(long, env = "MAILDROP_REJECTION_BUFFER", default_value_t = DEFAULT_REJECTION_BUFFER)]
    pub rejection_buffer: usize,
}

/// Settings that parse one by one but not together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "MAILDROP_GREYLIST_DELAY ({delay:?}) must be shorter than MAILDROP_GREYLIST_EXPIRY ({expiry:?}), or no client could ever pass"
    )]
    GreylistDelay { delay: Duration, expiry: Duration },
    #[error("MAILDROP_POLICY_TIMEOUT must be more than 0s")]
    PolicyTimeout,
}

impl Config {
    pub fn session(&self, max_message_size: usize) -> SessionConfig {
        SessionConfig {
            hostname: self.hostname.clone(),
            domains: self.domains.domains.clone(),
            max_message_size,
            max_header_size: self.max_header_size,
            max_recipients: self.max_recipients,
            max_line_length: self.max_line_length,
            max_bad_commands: self.max_bad_commands,
            max_commands: self.max_commands,
            starttls_available: self.tls_cert.is_some() && self.tls_key.is_some(),
            check_client: self.greylist,
        }
    }

    /// Checks what clap cannot: settings that contradict each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.greylist && self.greylist_delay >= self.greylist_expiry {
            return Err(ConfigError::GreylistDelay {
                delay: self.greylist_delay,
                expiry: self.greylist_expiry,
            });
        }
        if self.policy_timeout.is_zero() {
            return Err(ConfigError::PolicyTimeout);
        }
        Ok(())
    }

    pub fn tarpit(&self) -> Tarpit {
        Tarpit {
            error_step: self.error_delay,
            error_max: self.error_delay_max,
            commands: self.tarpit,
        }
    }

    pub fn greylist_settings(&self) -> Option<GreylistSettings> {
        self.greylist.then_some(GreylistSettings {
            delay: self.greylist_delay,
            expiry: self.greylist_expiry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("maildrop-ingest").chain(args.iter().copied()))
    }

    #[test]
    fn every_flag_is_well_formed() {
        use clap::CommandFactory;
        Config::command().debug_assert();
    }

    #[test]
    fn policy_defaults() {
        let c = parse(&[]).unwrap();
        assert!(!c.proxy_protocol && !c.greylist);
        assert_eq!(c.proxy_trusted.to_string(), DEFAULT_PROXY_TRUSTED);
        assert_eq!(c.exempt_networks.to_string(), DEFAULT_EXEMPT_NETWORKS);
        assert_eq!(c.max_connections_per_ip, 20);
        assert_eq!(c.connection_rate_per_ip, 60);
        assert_eq!(
            c.tarpit(),
            Tarpit {
                error_step: Duration::from_millis(100),
                error_max: Duration::from_millis(500),
                commands: Duration::ZERO,
            }
        );
        assert_eq!(c.greylist_settings(), None);
        assert!(!c.session(1000).starttls_available);
        assert!(!c.session(1000).check_client);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn tls_needs_both_files() {
        assert!(parse(&["--tls-cert", "/c.pem"]).is_err());
        assert!(parse(&["--tls-key", "/k.pem"]).is_err());
        let c = parse(&["--tls-cert", "/c.pem", "--tls-key", "/k.pem"]).unwrap();
        assert!(c.session(1000).starttls_available);
    }

    #[test]
    fn switches_are_flags() {
        // From the environment they also take yes/no, 1/0, on/off (clap's boolish values).
        let c = parse(&["--proxy-protocol", "--greylist"]).unwrap();
        assert!(c.proxy_protocol && c.greylist);
        assert!(parse(&["--proxy-protocol=yes"]).is_err());
    }

    #[test]
    fn network_lists_may_be_empty_but_not_wrong() {
        assert!(
            parse(&["--exempt-networks="])
                .unwrap()
                .exempt_networks
                .is_empty()
        );
        let err = parse(&["--proxy-trusted", "10.0.0.1/8"]).unwrap_err();
        assert!(err.to_string().contains("did you mean 10.0.0.0/8"), "{err}");
    }

    #[test]
    fn a_greylist_nobody_can_pass_is_refused() {
        let c = parse(&[
            "--greylist",
            "--greylist-delay",
            "2h",
            "--greylist-expiry",
            "1h",
        ])
        .unwrap();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::GreylistDelay { .. })
        ));
        assert!(c.session(1000).check_client);
        // Off, the same numbers do not matter.
        let c = parse(&["--greylist-delay", "2h", "--greylist-expiry", "1h"]).unwrap();
        assert_eq!(c.validate(), Ok(()));
    }
}
