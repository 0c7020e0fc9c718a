//! The store-writer's settings.

use std::time::Duration;

use clap::Parser;
use maildrop_runtime::args::{
    ConsumerArgs, LogArgs, NatsArgs, RedisArgs, StreamArgs, parse_duration,
};
use maildrop_store::Limits;

/// maildrop-store-writer: stores accepted messages in their mailboxes.
#[derive(Debug, Clone, Parser)]
#[command(name = "maildrop-store-writer", version, about)]
pub struct Config {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub streams: StreamArgs,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    /// Messages kept per mailbox; the oldest are evicted first.
    #[arg(long, env = "MAILDROP_MAILBOX_MAX_MESSAGES", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub mailbox_max_messages: u32,
    /// How long a mailbox lives after its newest message.
    #[arg(long, env = "MAILDROP_MAILBOX_RETENTION", default_value = "24h", value_parser = parse_duration)]
    pub mailbox_retention: Duration,
    #[command(flatten)]
    pub log: LogArgs,
}

impl Config {
    pub fn limits(&self) -> Limits {
        Limits {
            max_messages: self.mailbox_max_messages as usize,
            retention: self.mailbox_retention,
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
