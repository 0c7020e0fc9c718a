//! Making sure the JetStream streams exist, with the limits from [`StreamArgs`].
//!
//! Every stage calls [`ensure_all`] at start: creating a stream that exists is an update with the
//! same settings, so stages can start in any order.

use async_nats::jetstream::{self, stream};
use maildrop_contract::subject;

use crate::args::StreamArgs;

/// A stream could not be created or updated.
#[derive(Debug, thiserror::Error)]
#[error("cannot create or update stream {stream}")]
pub struct StreamError {
    pub stream: &'static str,
    #[source]
    pub source: jetstream::context::CreateStreamError,
}

/// The stream specs as built, in one place.
pub fn configs(args: &StreamArgs) -> Vec<stream::Config> {
    let base = |name: &str, subjects: &[&str]| stream::Config {
        name: name.to_owned(),
        subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        duplicate_window: args.duplicate_window,
        num_replicas: args.stream_replicas as usize,
        allow_direct: true,
        max_age: args.events_max_age,
        ..Default::default()
    };
    vec![
        stream::Config {
            description: Some("Raw messages as received by SMTP; envelope in headers.".into()),
            max_age: args.received_max_age,
            max_bytes: args.received_max_bytes,
            ..base(subject::RECEIVED_STREAM, &[subject::RECEIVED])
        },
        stream::Config {
            description: Some("The filter's verdicts.".into()),
            ..base(subject::VERDICTS_STREAM, &[subject::VERDICTS_ALL])
        },
        stream::Config {
            description: Some("Mailbox events: stored, deleted, cleared.".into()),
            // Live watchers subscribe to the republished copy: durable, deduplicated, sequenced.
            republish: Some(stream::Republish {
                source: subject::MAILBOX_ALL.to_owned(),
                destination: subject::LIVE_MAILBOX_ALL.to_owned(),
                headers_only: false,
            }),
            ..base(subject::MAILBOX_STREAM, &[subject::MAILBOX_ALL])
        },
        stream::Config {
            description: Some("Messages a stage gave up on, with the reason.".into()),
            ..base(subject::DEADLETTER_STREAM, &[subject::DEADLETTER_ALL])
        },
        stream::Config {
            description: Some(
                "SMTP attempts the ingest refused, for research and statistics.".into(),
            ),
            ..base(subject::REJECTED_STREAM, &[subject::REJECTED_ALL])
        },
        stream::Config {
            description: Some(
                "A shadow filter's verdicts (a candidate rule set on live traffic), research only."
                    .into(),
            ),
            ..base(subject::SHADOW_STREAM, &[subject::SHADOW_ALL])
        },
    ]
}

/// Creates or updates every stream.
pub async fn ensure_all(js: &jetstream::Context, args: &StreamArgs) -> Result<(), StreamError> {
    for config in configs(args) {
        let name = static_name(&config.name);
        // Stages start together: another one may create the stream between our update (not
        // found) and our create (already exists). The next attempt then updates it.
        let mut attempt = 0;
        loop {
            match js.create_or_update_stream(config.clone()).await {
                Ok(_) => break,
                Err(source) if attempt >= 4 => {
                    return Err(StreamError {
                        stream: name,
                        source,
                    });
                }
                Err(e) => {
                    attempt += 1;
                    tracing::debug!(stream = name, error = %e, attempt, "Stream set-up raced another stage; retrying.");
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
            }
        }
        tracing::debug!(stream = name, "Stream ready.");
    }
    Ok(())
}

fn static_name(name: &str) -> &'static str {
    [
        subject::RECEIVED_STREAM,
        subject::VERDICTS_STREAM,
        subject::MAILBOX_STREAM,
        subject::DEADLETTER_STREAM,
        subject::REJECTED_STREAM,
        subject::SHADOW_STREAM,
    ]
    .into_iter()
    .find(|n| *n == name)
    .unwrap_or("unknown")
}

/// Why a stage could not reach JetStream with its streams in place.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Connect(#[from] crate::connect::ConnectError),
    #[error(transparent)]
    Streams(#[from] StreamError),
}

/// Every stage's first step: connect to NATS as `name` (retrying until it answers) and make sure
/// the streams exist.
pub async fn connect(
    nats: &crate::args::NatsArgs,
    streams: &StreamArgs,
    name: &str,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(async_nats::Client, jetstream::Context), SetupError> {
    let client = crate::connect::nats(&nats.url, name, cancel).await?;
    let js = jetstream::new(client.clone());
    ensure_all(&js, streams).await?;
    Ok((client, js))
}
