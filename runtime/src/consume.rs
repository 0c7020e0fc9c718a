//! The one loop that runs a durable JetStream consumer for a stage.
//!
//! A stage supplies a [`Handler`]; this module pulls messages, runs up to `concurrency` of them at
//! once, and settles each by the outcome, following one rule: **the kind of an error decides the
//! ack**.
//!
//! | outcome | what happens |
//! |---|---|
//! | `Ok(())` | ack: the handler's effect is durable |
//! | [`FailureKind::Transient`] | a server we depend on is unavailable: nak with a growing delay, forever; an outage must not dead-letter the backlog |
//! | [`FailureKind::Failed`] | the handler failed for a reason that may pass: nak with a growing delay, dead-letter after `max_deliver` deliveries |
//! | [`FailureKind::Poison`] | the message can never be handled (undecodable, unknown version): dead-letter now |
//! | the handler panics | as `Failed`: the stage keeps running |
//!
//! A dead letter is a copy of the message, its headers and the reason, published on
//! `maildrop.deadletter.<stage>`; the original is terminated only after that publish was
//! acknowledged, so a message is never dropped without a trace.
//!
//! **Metrics** (labelled by the durable consumer's name): `maildrop_consumer_messages_total` by
//! `outcome` (`ack`, `nak_transient`, `nak_failed`, `dead_lettered`),
//! `maildrop_consumer_processing_seconds`, `maildrop_consumer_redeliveries_total`, and the lag,
//! `maildrop_consumer_pending_messages` (not yet delivered) and
//! `maildrop_consumer_ack_pending_messages` (delivered, not yet settled), polled from the
//! consumer's info every [`LAG_POLL_EVERY`] by [`watch_lag`].
//!
//! On shutdown the loop stops pulling, lets the messages in hand finish, and returns. Messages that
//! were fetched but not started are redelivered by JetStream after `ack_wait`.

use std::error::Error as StdError;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::{FutureExt, StreamExt};
use maildrop_contract::envelope::header;
use maildrop_contract::subject;
use tokio_util::sync::CancellationToken;

use crate::args::ConsumerArgs;

/// How often [`watch_lag`] reads a consumer's pending counts.
pub const LAG_POLL_EVERY: Duration = Duration::from_secs(5);

/// How a handler failed, which decides how the message is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Transient,
    Failed,
    Poison,
}

/// A handler's error: its kind and its cause.
#[derive(Debug)]
pub struct Failure {
    pub kind: FailureKind,
    pub source: Box<dyn StdError + Send + Sync>,
}

impl Failure {
    pub fn transient(e: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self {
            kind: FailureKind::Transient,
            source: e.into(),
        }
    }
    pub fn failed(e: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self {
            kind: FailureKind::Failed,
            source: e.into(),
        }
    }
    pub fn poison(e: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self {
            kind: FailureKind::Poison,
            source: e.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.source)?;
        let mut cause = self.source.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

/// What a stage does with one message.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, msg: &jetstream::Message) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// Which durable consumer to run.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// The stage's name, used for the dead-letter subject and in logs.
    pub stage: &'static str,
    pub stream: &'static str,
    pub durable: &'static str,
    /// Only messages on this subject (all of the stream's when `None`).
    pub filter_subject: Option<&'static str>,
}

/// How one message is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Ack,
    Nak(Duration),
    DeadLetter,
}

/// The settlement rule of the table above, as a pure function.
pub fn decide(outcome: Option<FailureKind>, delivered: i64, max_deliver: u32) -> Settle {
    match outcome {
        None => Settle::Ack,
        Some(FailureKind::Poison) => Settle::DeadLetter,
        Some(FailureKind::Failed) if delivered >= i64::from(max_deliver) => Settle::DeadLetter,
        Some(FailureKind::Failed | FailureKind::Transient) => Settle::Nak(retry_delay(delivered)),
    }
}

/// 1 s, 2 s, 4 s, … at most 30 s.
pub fn retry_delay(delivered: i64) -> Duration {
    let exp = delivered.clamp(1, 6) - 1;
    Duration::from_secs((1u64 << exp).min(30))
}

/// Runs the consumer until `cancel` is cancelled. While NATS is away, or the stream is missing, it
/// waits and tries again: a consumer never gives up on its own.
pub async fn run<H: Handler>(
    js: jetstream::Context,
    spec: ConsumerSpec,
    args: ConsumerArgs,
    cancel: CancellationToken,
    handler: H,
) {
    let handler = Arc::new(handler);
    let config = pull::Config {
        durable_name: Some(spec.durable.to_owned()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: args.ack_wait,
        // Redelivery is bounded by `decide`, not by the server: a Redis outage must not exhaust
        // the deliveries of every message in the backlog.
        max_deliver: -1,
        filter_subject: spec.filter_subject.unwrap_or_default().to_owned(),
        max_ack_pending: i64::from(args.concurrency) * 4,
        ..Default::default()
    };
    let lag_cancel = cancel.child_token();
    let _stop_lag = lag_cancel.clone().drop_guard();
    tokio::spawn(watch_lag(js.clone(), spec.stream, spec.durable, lag_cancel));
    let mut failures = 0u32;
    while !cancel.is_cancelled() {
        let messages = open(&js, &spec, &config, args.concurrency as usize).await;
        let messages = match messages {
            Ok(m) => {
                failures = 0;
                tracing::info!(stage = spec.stage, consumer = spec.durable, "Consuming.");
                m
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = retry_delay(i64::from(failures.min(6)));
                tracing::warn!(stage = spec.stage, consumer = spec.durable, error = %e, retry_in = ?wait, "Cannot consume yet.");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        messages
            .take_until(cancel.cancelled())
            .for_each_concurrent(args.concurrency as usize, |next| {
                let handler = handler.clone();
                let js = js.clone();
                let spec = &spec;
                let max_deliver = args.max_deliver;
                async move {
                    match next {
                        Ok(msg) => process(&js, spec, max_deliver, handler.as_ref(), msg).await,
                        Err(e) => tracing::warn!(stage = spec.stage, error = %e, "Pull from JetStream failed; continuing."),
                    }
                }
            })
            .await;
    }
    tracing::info!(
        stage = spec.stage,
        consumer = spec.durable,
        "Consumer stopped."
    );
}

type BoxError = Box<dyn StdError + Send + Sync>;

async fn open(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    config: &pull::Config,
    batch: usize,
) -> Result<pull::Stream, BoxError> {
    let stream = js.get_stream(spec.stream).await?;
    let consumer = stream
        .get_or_create_consumer(spec.durable, config.clone())
        .await?;
    Ok(consumer
        .stream()
        .max_messages_per_batch(batch)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await?)
}

fn message_id(msg: &jetstream::Message) -> String {
    msg.headers
        .as_ref()
        .and_then(|h| {
            h.get(header::ID)
                .or_else(|| h.get(async_nats::header::NATS_MESSAGE_ID))
        })
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default()
}

async fn process<H: Handler>(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    max_deliver: u32,
    handler: &H,
    msg: jetstream::Message,
) {
    let started = Instant::now();
    let outcome = AssertUnwindSafe(handler.handle(&msg))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(Failure::failed(format!("handler panicked: {what}")))
        });
    let consumer = spec.durable;
    metrics::histogram!("maildrop_consumer_processing_seconds", "consumer" => consumer)
        .record(started.elapsed().as_secs_f64());
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
    if delivered > 1 {
        metrics::counter!("maildrop_consumer_redeliveries_total", "consumer" => consumer)
            .increment(1);
    }
    let msg_id = message_id(&msg);
    let settle = decide(
        outcome.as_ref().err().map(|f| f.kind),
        delivered,
        max_deliver,
    );
    let mut counted = match (&settle, &outcome) {
        (Settle::Ack, _) => "ack",
        (Settle::Nak(_), Err(f)) if f.kind == FailureKind::Transient => "nak_transient",
        (Settle::Nak(_), _) => "nak_failed",
        (Settle::DeadLetter, _) => "dead_lettered",
    };
    let result = match (&settle, &outcome) {
        (Settle::Ack, _) => msg.ack().await,
        (Settle::Nak(delay), Err(failure)) => {
            tracing::warn!(stage = spec.stage, msg_id, delivered, retry_in = ?delay, error = %failure, "Message failed; will retry.");
            msg.ack_with(AckKind::Nak(Some(*delay))).await
        }
        (Settle::DeadLetter, Err(failure)) => {
            tracing::error!(stage = spec.stage, msg_id, delivered, error = %failure, "Message dead-lettered.");
            match dead_letter(js, spec.stage, &msg, failure).await {
                Ok(()) => msg.ack_with(AckKind::Term).await,
                Err(e) => {
                    tracing::error!(stage = spec.stage, msg_id, error = %e, "Dead-letter publish failed; will retry the message.");
                    counted = "nak_failed";
                    msg.ack_with(AckKind::Nak(Some(retry_delay(delivered))))
                        .await
                }
            }
        }
        (Settle::Nak(_) | Settle::DeadLetter, Ok(())) => {
            unreachable!("decide() acks every success")
        }
    };
    metrics::counter!("maildrop_consumer_messages_total", "consumer" => consumer, "outcome" => counted)
        .increment(1);
    if let Err(e) = result {
        // The message will be redelivered after ack_wait; every effect is idempotent.
        tracing::warn!(stage = spec.stage, msg_id, error = %e, "Could not settle message with JetStream.");
    }
}

/// Publishes a durable consumer's lag as gauges every [`LAG_POLL_EVERY`] until `cancel`: its
/// `num_pending` (in the stream, not yet delivered) and `num_ack_pending` (delivered, not yet
/// settled). Public for consumers that do not run in [`run`] (the reporter's). A failed read
/// leaves the last values and is logged at debug: the consumer's own loop reports outages.
pub async fn watch_lag(
    js: jetstream::Context,
    stream: &'static str,
    durable: &'static str,
    cancel: CancellationToken,
) {
    let pending = metrics::gauge!("maildrop_consumer_pending_messages", "consumer" => durable);
    let ack_pending =
        metrics::gauge!("maildrop_consumer_ack_pending_messages", "consumer" => durable);
    loop {
        let info = async {
            js.get_stream(stream)
                .await?
                .consumer_info(durable)
                .await
                .map_err(BoxError::from)
        };
        match info.await {
            Ok(info) => {
                pending.set(info.num_pending as f64);
                ack_pending.set(info.num_ack_pending as f64);
            }
            Err(e) => tracing::debug!(consumer = durable, error = %e, "Cannot read consumer lag."),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(LAG_POLL_EVERY) => {}
        }
    }
}

async fn dead_letter(
    js: &jetstream::Context,
    stage: &str,
    msg: &jetstream::Message,
    failure: &Failure,
) -> Result<(), BoxError> {
    let mut headers = msg.headers.clone().unwrap_or_default();
    headers.insert(header::DEADLETTER_STAGE, stage);
    headers.insert(
        header::DEADLETTER_REASON,
        sanitize(&failure.to_string()).as_str(),
    );
    headers.insert(header::DEADLETTER_SUBJECT, msg.subject.as_str());
    js.send_publish(
        subject::deadletter(stage),
        jetstream::message::PublishMessage::build()
            .payload(msg.payload.clone())
            .headers(headers),
    )
    .await?
    .await?;
    Ok(())
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1000)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_is_acked() {
        assert_eq!(decide(None, 7, 5), Settle::Ack);
    }

    #[test]
    fn poison_goes_to_the_dead_letters_at_once() {
        assert_eq!(decide(Some(FailureKind::Poison), 1, 5), Settle::DeadLetter);
    }

    #[test]
    fn failures_retry_until_max_deliver() {
        assert_eq!(
            decide(Some(FailureKind::Failed), 1, 5),
            Settle::Nak(Duration::from_secs(1))
        );
        assert_eq!(
            decide(Some(FailureKind::Failed), 4, 5),
            Settle::Nak(Duration::from_secs(8))
        );
        assert_eq!(decide(Some(FailureKind::Failed), 5, 5), Settle::DeadLetter);
    }

    #[test]
    fn outages_retry_forever_with_a_capped_delay() {
        assert_eq!(
            decide(Some(FailureKind::Transient), 10_000, 5),
            Settle::Nak(Duration::from_secs(30))
        );
    }
}
