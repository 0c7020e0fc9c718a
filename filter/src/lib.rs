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
use maildrop_runtime::streams;
use tokio_util::sync::CancellationToken;

/// The stage's name, in logs and dead-letter subjects.
pub const STAGE: &str = "filter";

/// Why the stage could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Setup(#[from] streams::SetupError),
}

/// Runs the filter until `cancel` is cancelled.
pub async fn run(config: Config, cancel: CancellationToken) -> Result<(), Error> {
    let rules = config.rules.build();
    tracing::info!(ruleset = %rules.version(), rules = rules.len(), "Rule set loaded.");
    let (_, js) =
        streams::connect(&config.nats, &config.streams, "maildrop-filter", &cancel).await?;
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
