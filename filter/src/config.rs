//! The filter's settings, and its admin subcommands.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};
use maildrop_runtime::args::{
    ConsumerArgs, DomainArgs, LogArgs, NatsArgs, RedisArgs, StreamArgs, parse_duration,
};

/// maildrop-filter: decides which received messages are accepted.
#[derive(Debug, Clone, Parser)]
#[command(name = "maildrop-filter", version, about)]
#[command(mut_arg(
    "ops_addr",
    maildrop_runtime::ops::default_at(maildrop_runtime::ops::DEFAULT_FILTER_ADDR)
))]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub streams: StreamArgs,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub domains: DomainArgs,
    #[command(flatten)]
    pub rules: RuleArgs,
    /// Shadow mode: judge every received message again with this instance's rule set (a candidate,
    /// given with --rules) under its own consumer, and publish the verdicts only to the research
    /// stream SHADOW (maildrop.shadow.verdict.*). Nothing acts on them: no mailbox, no blocked IP,
    /// no flood count (the flood rule has no counts to go by in shadow mode).
    #[arg(long, env = "MAILDROP_FILTER_SHADOW", value_parser = BoolishValueParser::new())]
    pub shadow: bool,
    #[command(flatten)]
    pub dns: crate::dns::DnsArgs,
    #[command(flatten)]
    pub rspamd: crate::rspamd::RspamdArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub ops: maildrop_runtime::ops::OpsArgs,
}

/// What to do instead of filtering.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Edit the run-time blocklists (sender, domain, ip, subject) in Redis.
    Block(crate::admin::BlockArgs),
    /// Judge the retained raw messages of a time window with a candidate rule set and show how its
    /// verdicts differ from the recorded ones. Reads the streams only: publishes and writes nothing.
    Replay(crate::replay::ReplayArgs),
    /// Write the retained raw messages of a time window, chosen by recorded verdict, as an mbox or a
    /// folder of .eml files.
    Export(crate::export::ExportArgs),
}

/// Where the rule set comes from and how the filter keeps it current.
#[derive(Debug, Clone, Args)]
pub struct RuleArgs {
    /// The rule set (TOML; see filter/rules.example.toml). Without it, the built-in rules.
    #[arg(long = "rules", env = "MAILDROP_RULES")]
    pub rules: Option<PathBuf>,
    /// How often the rule file is re-read (it is also re-read on SIGHUP); 0s: only on SIGHUP.
    #[arg(long, env = "MAILDROP_RULES_RELOAD_EVERY", default_value = "5s", value_parser = parse_duration)]
    pub rules_reload_every: Duration,
    /// How long the facts found about a client (IP and HELO: DNS blocklists, SPF) are reused for
    /// its next messages; 0s turns the cache off.
    #[arg(long, env = "MAILDROP_VERDICT_CACHE_TTL", default_value = "24h", value_parser = parse_duration)]
    pub verdict_cache_ttl: Duration,
}

impl RuleArgs {
    /// The reload period; `None` when only SIGHUP reloads.
    pub fn reload_every(&self) -> Option<Duration> {
        (!self.rules_reload_every.is_zero()).then_some(self.rules_reload_every)
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
    fn defaults_are_the_built_in_rules_reloaded_every_5s_and_a_day_of_cache() {
        let c = Config::try_parse_from(["maildrop-filter"]).unwrap();
        assert!(c.command.is_none());
        assert!(!c.shadow);
        assert_eq!(c.rules.rules, None);
        assert_eq!(c.rules.reload_every(), Some(Duration::from_secs(5)));
        assert_eq!(c.rules.verdict_cache_ttl, Duration::from_secs(86_400));
        let c = Config::try_parse_from(["maildrop-filter", "--rules-reload-every", "0s"]).unwrap();
        assert_eq!(c.rules.reload_every(), None);
        let c = Config::try_parse_from(["maildrop-filter", "--shadow"]).unwrap();
        assert!(c.shadow);
    }
}
