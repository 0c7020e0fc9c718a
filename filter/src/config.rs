//! The filter's settings.

use clap::Parser;
use maildrop_runtime::args::{ConsumerArgs, LogArgs, NatsArgs, StreamArgs};

use crate::rules::RuleArgs;

/// maildrop-filter: decides which received messages are accepted.
#[derive(Debug, Clone, Parser)]
#[command(name = "maildrop-filter", version, about)]
pub struct Config {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub streams: StreamArgs,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    #[command(flatten)]
    pub rules: RuleArgs,
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
