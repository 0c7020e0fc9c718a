//! The reporter's settings.

use clap::Parser;
use maildrop_runtime::args::{ConsumerArgs, LogArgs, NatsArgs, RedisArgs, StreamArgs};
use maildrop_runtime::ops::{self, OpsArgs};

/// maildrop-reporter: keeps statistics of every stream.
#[derive(Debug, Clone, Parser)]
#[command(name = "maildrop-reporter", version, about)]
#[command(mut_arg("ops_addr", ops::default_at(ops::DEFAULT_REPORTER_ADDR)))]
pub struct Config {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub streams: StreamArgs,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    /// Messages counted per Redis write.
    #[arg(long, env = "MAILDROP_REPORTER_BATCH", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub ops: OpsArgs,
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_flag_is_well_formed() {
        use clap::CommandFactory;
        super::Config::command().debug_assert();
    }
}
