//! The reporter's settings.

use std::time::Duration;

use clap::{Parser, Subcommand};
use maildrop_runtime::args::{
    ConsumerArgs, LogArgs, NatsArgs, RedisArgs, StreamArgs, parse_duration,
};
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
    /// How long a message's first verdict (production or shadow) waits for the other filter's to
    /// be paired with; one small Redis key per verdict lives this long. See the shadow filter.
    #[arg(long, env = "MAILDROP_SHADOW_PAIR_TTL", default_value = "1d", value_parser = parse_duration)]
    pub shadow_pair_ttl: Duration,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub ops: OpsArgs,
    #[command(flatten)]
    pub reports: ReportArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do instead of (or before) counting.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Deletes every statistic (counters, series, top lists, active mailboxes) and the reporter's
    /// counting consumers, then counts the streams again from their start and goes on counting.
    /// Stop every other reporter first.
    Recount,
}

/// Spam-source reports: rejected messages and refused SMTP attempts, posted in JSON batches to a
/// webhook.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Where to POST spam-source reports (http or https). Unset: no reports.
    #[arg(long, env = "MAILDROP_REPORT_WEBHOOK_URL")]
    pub report_webhook_url: Option<reqwest::Url>,
    /// Reports per POST at most.
    #[arg(long, env = "MAILDROP_REPORT_BATCH", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub report_batch: u32,
    /// How long to wait for a batch to fill before posting what there is.
    #[arg(long, env = "MAILDROP_REPORT_MAX_WAIT", default_value = "10s", value_parser = parse_duration)]
    pub report_max_wait: Duration,
    /// How long one POST may take.
    #[arg(long, env = "MAILDROP_REPORT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub report_timeout: Duration,
    /// First retry delay after a failed POST; it doubles (with jitter) up to the maximum.
    #[arg(long, env = "MAILDROP_REPORT_RETRY_MIN", default_value = "1s", value_parser = parse_duration)]
    pub report_retry_min: Duration,
    /// Longest retry delay. A batch is retried until the webhook accepts it.
    #[arg(long, env = "MAILDROP_REPORT_RETRY_MAX", default_value = "5m", value_parser = parse_duration)]
    pub report_retry_max: Duration,
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_flag_is_well_formed() {
        use clap::CommandFactory;
        super::Config::command().debug_assert();
    }
}
