//! The filter stage: reads every received message, decides accepted or rejected, publishes the
//! verdict, and tells the ingest which clients to refuse.
//!
//! - [`rules`]: the rule engine. Each rule (one file each) is a pure function over an
//!   [`Inspection`](rules::Inspection) (envelope, parsed message, gathered [`facts`]) that may add
//!   a scored hit; a [`RuleSet`](rules::RuleSet) sums the hits, compares with its threshold and
//!   names its version.
//! - [`ruleset`]: rule sets as data: the TOML rule file, its built-in defaults, [`ruleset::load`].
//! - [`reload`]: the rule set in force ([`reload::LiveRules`]), re-read on a timer and on SIGHUP.
//! - [`facts`]: what is looked up before the rules run (Redis lists and flood counts here; DNS
//!   facts beside them), so the rules stay pure.
//! - [`gather`]: the DNS facts (blocklists of the client IP and of linked domains, SPF, DKIM,
//!   DMARC), all of a message's lookups at once under one deadline, through [`dns`]: the one
//!   caching resolver every DNS rule shares (mail-auth included).
//! - [`rspamd`]: the optional rspamd backend (`MAILDROP_RSPAMD_URL`), asked beside the DNS facts;
//!   no answer in time is no fact, never a failed message.
//! - [`verdict_cache`]: client facts (per IP and HELO) reused for a repeat sender.
//! - [`feedback`]: a rejected client over a flood limit or on a blocklist goes into the ingest's
//!   blocked-IP set.
//! - [`handler`]: the consumer's side: decode, gather, judge, feed back, publish, and only then ack.
//!   With `--shadow` the same handler runs a candidate rule set on live traffic under its own
//!   consumer and publishes to the research stream `SHADOW` only, with no side effect production
//!   could see (no blocked IP, no flood count).
//! - [`admin`]: `maildrop-filter block …`, the run-time blocklists' command line.
//! - [`replay`] and [`export`]: `maildrop-filter replay|export`, research on the retained history
//!   through ephemeral consumers, never disturbing production.
//! - [`config`]: flags and `MAILDROP_*` variables.

pub mod admin;
pub mod config;
pub mod dns;
pub mod export;
pub mod facts;
pub mod feedback;
pub mod gather;
pub mod handler;
pub mod reload;
pub mod replay;
pub mod rspamd;
pub mod rules;
pub mod ruleset;
pub mod verdict_cache;

pub use config::Config;

use std::sync::Arc;

use maildrop_contract::{consumer, subject};
use maildrop_runtime::connect::{self, ConnectError};
use maildrop_runtime::consume::{self, ConsumerSpec};
use maildrop_runtime::streams;
use tokio_util::sync::CancellationToken;

use crate::reload::LiveRules;
use crate::ruleset::{Context, LoadError};
use crate::verdict_cache::VerdictCache;

/// The stage's name, in logs and dead-letter subjects.
pub const STAGE: &str = "filter";

/// Why the stage could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Rules(#[from] LoadError),
    #[error(transparent)]
    Redis(#[from] ConnectError),
    #[error(transparent)]
    Dns(#[from] dns::DnsSetupError),
    #[error(transparent)]
    Setup(#[from] streams::SetupError),
    #[error(transparent)]
    Ops(#[from] maildrop_runtime::ops::OpsError),
}

/// Runs the filter until `cancel` is cancelled.
pub async fn run(config: Config, cancel: CancellationToken) -> Result<(), Error> {
    let context = Context {
        domains: config.domains.domains.clone(),
    };
    let live = Arc::new(LiveRules::load(config.rules.rules.clone(), context)?);
    {
        let rules = live.current();
        tracing::info!(
            ruleset = %rules.version(),
            rules = ?rules.names().collect::<Vec<_>>(),
            threshold = rules.threshold(),
            file = ?config.rules.rules,
            "Rule set loaded."
        );
    }
    let readiness = maildrop_runtime::ops::Readiness::nats_and_redis();
    let _ops = maildrop_runtime::ops::start(&config.ops, STAGE, readiness.clone(), &cancel).await?;
    let redis = connect::redis(&config.redis.url, &cancel).await?;
    readiness.set_redis(&redis);
    let (client, js) =
        streams::connect(&config.nats, &config.streams, "maildrop-filter", &cancel).await?;
    readiness.set_nats(&client);
    tokio::spawn(reload::watch(
        live.clone(),
        config.rules.reload_every(),
        cancel.clone(),
    ));
    let spec = ConsumerSpec {
        stage: STAGE,
        stream: subject::RECEIVED_STREAM,
        durable: if config.shadow {
            consumer::FILTER_SHADOW
        } else {
            consumer::FILTER
        },
        filter_subject: None,
    };
    if config.shadow {
        tracing::info!(
            "Shadow mode: verdicts go to the SHADOW stream only; no blocks, no flood counts."
        );
    }
    let cache = VerdictCache::new(redis.clone(), config.rules.verdict_cache_ttl);
    let host = config
        .domains
        .domains
        .first()
        .map_or("localhost", String::as_str);
    let gatherer = gather::DnsGatherer::new(
        dns::Dns::from_args(&config.dns)?,
        cache,
        config.dns.dns_deadline,
        host,
    );
    let rspamd = rspamd::Rspamd::from_args(&config.rspamd);
    if let Some(r) = &rspamd {
        tracing::info!(rspamd = ?r, "rspamd is asked about every message.");
    }
    let handler = handler::FilterHandler::new(js.clone(), live, redis, gatherer)
        .with_rspamd(rspamd::RspamdGatherer::new(rspamd))
        .shadow(config.shadow);
    consume::run(js, spec, config.consumer, cancel, handler).await;
    Ok(())
}
