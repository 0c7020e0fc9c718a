//! What the counting and the webhook consumers share: opening their durable pull consumer (retried
//! until it exists), fetching
//! its next batch, and a pause that ends early on shutdown.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use maildrop_runtime::consume::retry_delay;
use tokio_util::sync::CancellationToken;

/// Waits `wait`; `false` if `cancel` fired first.
pub(crate) async fn sleep_or_cancel(cancel: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}

/// Creates (or finds) the explicit-ack durable `durable` on `stream`, filtered to
/// `filter_subject` (empty: every subject), retrying with a growing delay until it exists; `None`
/// once `cancel` fired.
pub(crate) async fn open(
    js: &jetstream::Context,
    stream: &str,
    durable: &str,
    filter_subject: &str,
    ack_wait: Duration,
    cancel: &CancellationToken,
) -> Option<jetstream::consumer::Consumer<pull::Config>> {
    let mut attempt = 0i64;
    loop {
        match open_once(js, stream, durable, filter_subject, ack_wait).await {
            Ok(consumer) => return Some(consumer),
            Err(e) => {
                attempt += 1;
                let wait = retry_delay(attempt);
                tracing::warn!(stream, durable, error = %e, retry_in = ?wait, "Cannot open the consumer yet.");
                if !sleep_or_cancel(cancel, wait).await {
                    return None;
                }
            }
        }
    }
}

async fn open_once(
    js: &jetstream::Context,
    stream: &str,
    durable: &str,
    filter_subject: &str,
    ack_wait: Duration,
) -> Result<jetstream::consumer::Consumer<pull::Config>, Box<dyn std::error::Error + Send + Sync>> {
    let stream = js.get_stream(stream).await?;
    Ok(stream
        .get_or_create_consumer(
            durable,
            pull::Config {
                durable_name: Some(durable.to_owned()),
                filter_subject: filter_subject.to_owned(),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait,
                ..Default::default()
            },
        )
        .await?)
}

/// The next batch of up to `max` messages of `consumer` (on `stream`), waiting at most `expires`
/// for them: empty when none came, or when the fetch failed (logged, after a pause of a second);
/// `None` once `cancel` fired.
pub(crate) async fn next_batch(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    max: usize,
    expires: Duration,
    stream: &str,
    cancel: &CancellationToken,
) -> Option<Vec<jetstream::Message>> {
    let batch = tokio::select! {
        _ = cancel.cancelled() => return None,
        b = consumer.batch().max_messages(max).expires(expires).messages() => b,
    };
    match batch {
        Ok(b) => Some(b.filter_map(|m| async move { m.ok() }).collect().await),
        Err(e) => {
            tracing::warn!(stream, error = %e, "Fetch failed; retrying.");
            sleep_or_cancel(cancel, Duration::from_secs(1))
                .await
                .then(Vec::new)
        }
    }
}
