//! The filter stage: reads every received message, decides accepted or rejected, publishes the
//! verdict.
//!
//! - [`rules`]: the rule engine. Each rule is a pure function over an [`Inspection`](rules::Inspection)
//!   (envelope plus parsed message) that may add a scored hit; a [`RuleSet`](rules::RuleSet) sums the
//!   hits, compares with its threshold and names its version.
//! - [`handler`]: the consumer's side: decode, inspect, publish the verdict, and only then ack.
//! - [`config`]: flags and `MAILDROP_*` variables.

pub mod config;
pub mod handler;
pub mod rules;

pub use config::Config;

use maildrop_contract::{consumer, subject};
use maildrop_runtime::consume::{self, ConsumerSpec};
use maildrop_runtime::{connect, streams};
use tokio_util::sync::CancellationToken;

/// The stage's name, in logs and dead-letter subjects.
pub const STAGE: &str = "filter";

/// Why the stage could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] connect::ConnectError),
    #[error(transparent)]
    Streams(#[from] streams::StreamError),
}

/// Runs the filter until `cancel` is cancelled.
pub async fn run(config: Config, cancel: CancellationToken) -> Result<(), Error> {
    let rules = config.rules.build();
    tracing::info!(ruleset = %rules.version(), rules = rules.len(), "Rule set loaded.");
    let client = connect::nats(&config.nats.url, "maildrop-filter", &cancel).await?;
    let js = async_nats::jetstream::new(client);
    streams::ensure_all(&js, &config.streams).await?;
    let spec = ConsumerSpec {
        stage: STAGE,
        stream: subject::RECEIVED_STREAM,
        durable: consumer::FILTER,
        filter_subject: None,
    };
    let handler = handler::FilterHandler::new(js.clone(), rules);
    consume::run(js, spec, config.consumer, cancel, handler).await;
    Ok(())
}
