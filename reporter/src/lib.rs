//! The reporter stage: counts what flows through the streams into Redis, for `/api/stats`.
//!
//! - [`count`]: which counters one message moves (pure).
//! - [`counter`]: the loop that counts one stream exactly once, into the counters, the per-minute
//!   and per-hour series, the day's top rejected sources and the active mailboxes
//!   (`maildrop_store::series`), all keyed by the events' stream timestamps so that
//!   [`recount`] (delete, then count the streams again) gives the same numbers.
//! - Shadow mode: every production verdict (`VERDICTS`) and every shadow verdict (`SHADOW`) is
//!   also paired by message id (`maildrop_store::shadow`), into four counters of agreement and
//!   difference. Production verdicts are paired always, shadow filter or not: one small key per
//!   verdict that expires after `MAILDROP_SHADOW_PAIR_TTL`, and no race at a shadow's start.
//! - [`reports`] (pure) and [`webhook`]: spam-source reports, posted in batches to
//!   `MAILDROP_REPORT_WEBHOOK_URL` and acked only once the webhook accepted them.
//!
//! **Exactly-once counting without a set of seen ids.** Each stream has one durable consumer,
//! fetched in batches. A batch's increments and the highest sequence it contains are written to
//! Redis in one `MULTI`, and only then is the batch acked. A message that comes back after that
//! (the reporter died before its ack) has `delivered > 1` and a sequence at or below the recorded
//! mark, and is skipped. A message at or below the mark on its *first* delivery means the stream was
//! recreated (sequences restarted): it is counted, and the mark follows the new stream. If Redis is
//! down, the batch is retried in place until it is written: moving on to later messages first would
//! raise the mark past messages not yet counted. One reporter instance per stream is active at a time
//! (more instances share the consumer; the mark keeps their overlap from double counting only when
//! they do not interleave, so run one).

pub mod config;
pub mod count;
pub mod counter;
mod durable;
pub mod reports;
pub mod webhook;

pub use config::Config;

use maildrop_runtime::consume::watch_lag;
use maildrop_runtime::ops::{self, Readiness};
use maildrop_runtime::{connect, streams};
use maildrop_store::StatsStore;
use tokio_util::sync::CancellationToken;

pub const STAGE: &str = "reporter";

/// Why the stage could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] connect::ConnectError),
    #[error(transparent)]
    Setup(#[from] streams::SetupError),
    #[error(transparent)]
    Ops(#[from] ops::OpsError),
    #[error("cannot reset the statistics: {0}")]
    Reset(#[from] maildrop_store::StoreError),
    #[error("cannot find stream {stream}")]
    GetStream {
        stream: &'static str,
        #[source]
        source: async_nats::jetstream::context::GetStreamError,
    },
    #[error("cannot delete consumer {consumer}")]
    DeleteConsumer {
        consumer: &'static str,
        #[source]
        source: async_nats::jetstream::stream::ConsumerError,
    },
}

/// Deletes every statistic and the counting consumers, so that the next [`run`] counts every
/// stream again from its start (`maildrop-reporter recount`). Returns the Redis keys deleted. Run
/// it with no reporter counting: one that is would write into the emptied keys.
pub async fn recount(config: &Config, cancel: &CancellationToken) -> Result<u64, Error> {
    let (_, js) =
        streams::connect(&config.nats, &config.streams, "maildrop-reporter", cancel).await?;
    for source in count::Source::ALL {
        let stream = js
            .get_stream(source.stream())
            .await
            .map_err(|source_| Error::GetStream {
                stream: source.stream(),
                source: source_,
            })?;
        match stream.delete_consumer(source.durable()).await {
            Ok(_) => {}
            Err(e) if consumer_not_found(&e) => {}
            Err(e) => {
                return Err(Error::DeleteConsumer {
                    consumer: source.durable(),
                    source: e,
                });
            }
        }
    }
    let redis = connect::redis(&config.redis.url, cancel).await?;
    let deleted = StatsStore::new(redis).reset().await?;
    tracing::info!(
        keys = deleted,
        "Statistics reset; counting starts over from the streams."
    );
    Ok(deleted)
}

/// Runs the reporter until `cancel` is cancelled.
pub async fn run(config: Config, cancel: CancellationToken) -> Result<(), Error> {
    if matches!(config.command, Some(config::Command::Recount)) {
        recount(&config, &cancel).await?;
    }
    let readiness = Readiness::nats_and_redis();
    let _ops = ops::start(&config.ops, STAGE, readiness.clone(), &cancel).await?;
    let (client, js) =
        streams::connect(&config.nats, &config.streams, "maildrop-reporter", &cancel).await?;
    readiness.set_nats(&client);
    let redis = connect::redis(&config.redis.url, &cancel).await?;
    readiness.set_redis(&redis);
    for source in count::Source::ALL {
        tokio::spawn(watch_lag(
            js.clone(),
            source.stream(),
            source.durable(),
            cancel.child_token(),
        ));
    }
    let stats = StatsStore::new(redis);
    let tasks = count::Source::ALL.map(|source| {
        counter::run(
            js.clone(),
            stats.clone(),
            source,
            config.batch_size,
            config.consumer.ack_wait,
            config.shadow_pair_ttl,
            cancel.clone(),
        )
    });
    let reports = config.reports.report_webhook_url.clone().map(|url| {
        webhook::ReportSource::ALL.map(|source| {
            // A webhook that keeps failing shows as this consumer's growing lag.
            tokio::spawn(watch_lag(
                js.clone(),
                source.stream(),
                source.durable(),
                cancel.child_token(),
            ));
            tokio::spawn(webhook::run(
                js.clone(),
                url.clone(),
                config.reports.clone(),
                source,
                config.consumer.ack_wait,
                cancel.clone(),
            ))
        })
    });
    futures::future::join_all(tasks).await;
    for task in reports.into_iter().flatten() {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "A report task panicked.");
        }
    }
    Ok(())
}

fn consumer_not_found(e: &async_nats::jetstream::stream::ConsumerError) -> bool {
    matches!(
        e.kind(),
        async_nats::jetstream::stream::ConsumerErrorKind::JetStream(j)
            if j.error_code() == async_nats::jetstream::ErrorCode::CONSUMER_NOT_FOUND
    )
}
