//! The reporter stage: counts what flows through the streams into Redis, for `/api/stats`.
//!
//! - [`count`]: which counters one message moves (pure).
//! - [`counter`]: the loop that counts one stream exactly once.
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
}

/// Runs the reporter until `cancel` is cancelled.
pub async fn run(config: Config, cancel: CancellationToken) -> Result<(), Error> {
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
            cancel.clone(),
        )
    });
    futures::future::join_all(tasks).await;
    Ok(())
}
