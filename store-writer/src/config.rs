//! The store-writer's settings.
//!
//! Without a subcommand the binary runs the consumer (and the sweeper); `rebuild` replays the
//! streams into Redis once and exits. Flags go before the subcommand; the `MAILDROP_*` variables
//! work for both.

use std::time::Duration;

use clap::Parser;
use maildrop_runtime::args::{
    ConsumerArgs, LogArgs, NatsArgs, RedisArgs, StreamArgs, parse_duration,
};
use maildrop_runtime::ops::{self, OpsArgs};
use maildrop_store::Limits;

use crate::prepare::AttachmentPolicy;

/// `MAILDROP_STORE_MAX_BYTES` by default: 1 GiB.
pub const DEFAULT_STORE_MAX_BYTES: u64 = 1 << 30;
/// `MAILDROP_ATTACHMENT_MAX_SIZE` by default: 5 MiB.
pub const DEFAULT_ATTACHMENT_MAX_SIZE: u64 = 5 << 20;
/// `rebuild --progress-every` by default.
pub const DEFAULT_PROGRESS_EVERY: u64 = 1000;

/// maildrop-store-writer: stores accepted messages in their mailboxes.
#[derive(Debug, Clone, Parser)]
#[command(name = "maildrop-store-writer", version, about)]
#[command(mut_arg("ops_addr", ops::default_at(ops::DEFAULT_STORE_WRITER_ADDR)))]
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
    /// How long a mailbox lives after its newest message was received.
    #[arg(long, env = "MAILDROP_MAILBOX_RETENTION", default_value = "24h", value_parser = parse_duration)]
    pub mailbox_retention: Duration,
    /// Bytes all mailboxes may hold together (raw messages and their documents). Above it, whole
    /// mailboxes are emptied, least recently active first, each announced as `cleared`.
    #[arg(long, env = "MAILDROP_STORE_MAX_BYTES", default_value_t = DEFAULT_STORE_MAX_BYTES, value_parser = clap::value_parser!(u64).range(1..))]
    pub store_max_bytes: u64,
    /// How often the sweeper looks for mailboxes past their retention (and announces them as
    /// `expired`). Every instance sweeps; running several is harmless.
    #[arg(long, env = "MAILDROP_SWEEP_EVERY", default_value = "60s", value_parser = parse_interval)]
    pub sweep_every: Duration,
    /// Attachment bodies: `keep` them (up to `--attachment-max-size`), or `strip` them all. A
    /// stripped attachment stays listed, with its size, but cannot be downloaded.
    #[arg(long, env = "MAILDROP_ATTACHMENTS", value_enum, default_value_t = AttachmentMode::Keep)]
    pub attachments: AttachmentMode,
    /// Largest attachment (decoded bytes) whose body is kept; larger ones are stripped.
    #[arg(long, env = "MAILDROP_ATTACHMENT_MAX_SIZE", default_value_t = DEFAULT_ATTACHMENT_MAX_SIZE)]
    pub attachment_max_size: u64,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub ops: OpsArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do with attachment bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachmentMode {
    Keep,
    Strip,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Rebuild the mailboxes in Redis from the retained streams (after losing Redis, or to
    /// repair it), then exit. Safe to run twice and while the consumer runs; announces no
    /// `stored` events.
    Rebuild(RebuildArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct RebuildArgs {
    /// Log progress every this many verdicts.
    #[arg(long, env = "MAILDROP_REBUILD_PROGRESS_EVERY", default_value_t = DEFAULT_PROGRESS_EVERY, value_parser = clap::value_parser!(u64).range(1..))]
    pub progress_every: u64,
}

impl Default for RebuildArgs {
    fn default() -> Self {
        Self {
            progress_every: DEFAULT_PROGRESS_EVERY,
        }
    }
}

/// A duration that is not zero (a zero interval would spin).
fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

impl Config {
    pub fn limits(&self) -> Limits {
        Limits {
            max_messages: self.mailbox_max_messages as usize,
            retention: self.mailbox_retention,
        }
    }

    pub fn attachment_policy(&self) -> AttachmentPolicy {
        AttachmentPolicy {
            mode: self.attachments,
            max_size: self.attachment_max_size,
        }
    }

    /// The rebuild's settings: those of the subcommand, or the defaults when `rebuild` is called
    /// as a function with a config parsed without it.
    pub fn rebuild_args(&self) -> RebuildArgs {
        match &self.command {
            Some(Command::Rebuild(args)) => args.clone(),
            None => RebuildArgs::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_is_well_formed() {
        use clap::CommandFactory;
        Config::command().debug_assert();
    }

    #[test]
    fn no_subcommand_runs_the_consumer_and_rebuild_is_one() {
        let run = Config::try_parse_from(["x", "--nats-url", "nats://n:1"]).unwrap();
        assert!(run.command.is_none());
        assert_eq!(run.store_max_bytes, DEFAULT_STORE_MAX_BYTES);
        assert_eq!(run.attachments, AttachmentMode::Keep);
        assert_eq!(run.rebuild_args().progress_every, DEFAULT_PROGRESS_EVERY);
        let rebuild = Config::try_parse_from([
            "x",
            "--attachments",
            "strip",
            "rebuild",
            "--progress-every",
            "5",
        ])
        .unwrap();
        assert!(matches!(rebuild.command, Some(Command::Rebuild(_))));
        assert_eq!(rebuild.attachments, AttachmentMode::Strip);
        assert_eq!(rebuild.rebuild_args().progress_every, 5);
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            ["x", "--sweep-every", "0s"],
            ["x", "--store-max-bytes", "0"],
            ["x", "--attachments", "drop"],
        ] {
            assert!(Config::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
