//! The store-writer stage: puts accepted messages into their mailboxes and announces them, and
//! keeps the mailboxes within their bounds.
//!
//! For each accepted verdict it fetches the raw message from `RECEIVED` by sequence (a direct get:
//! the verdict does not carry the bytes twice), turns it into a [`StoredMessage`](maildrop_store::StoredMessage)
//! with the attachment policy applied ([`parse`], [`prepare`]), stores it in every mailbox it was
//! addressed to (atomic and idempotent, in `maildrop-store`), then publishes `stored` (and
//! `deleted` for messages evicted to make room) on the mailbox's subject ([`publish`]), and only
//! then acks ([`handler`]).
//!
//! Bounds: past `MAILDROP_STORE_MAX_BYTES` the least recently active mailboxes are emptied
//! ([`evict`]); every `MAILDROP_SWEEP_EVERY` the mailboxes past their retention are announced as
//! `expired` ([`sweep`]).
//!
//! `maildrop-store-writer rebuild` ([`rebuild()`]) rebuilds Redis from the streams instead of
//! consuming.

pub mod config;
pub mod evict;
pub mod handler;
pub mod parse;
pub mod prepare;
pub mod publish;
pub mod rebuild;
pub mod sweep;

pub use config::{Command, Config};
pub use rebuild::RebuildReport;

use maildrop_contract::{consumer, subject};
use maildrop_runtime::consume::{self, ConsumerSpec};
use maildrop_runtime::ops::{self, Readiness};
use maildrop_runtime::{connect, streams};
use maildrop_store::{MailStore, StoreError};
use tokio_util::sync::CancellationToken;

use crate::evict::Evictor;
use crate::publish::Publisher;

pub const STAGE: &str = "store-writer";

/// Why the stage could not start, or a rebuild stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] connect::ConnectError),
    #[error(transparent)]
    Setup(#[from] streams::SetupError),
    #[error(transparent)]
    Ops(#[from] ops::OpsError),
    #[error("cannot open the RECEIVED stream")]
    Received(#[source] async_nats::jetstream::context::GetStreamError),
    #[error("cannot replay the {stream} stream")]
    Replay {
        stream: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot fetch a raw message from RECEIVED")]
    Fetch(#[source] handler::FetchError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cleanup(#[from] sweep::CleanupError),
    #[error("interrupted by shutdown")]
    Interrupted,
}

/// Runs the store-writer (the consumer and the sweeper) until `cancel` is cancelled.
pub async fn run(config: Config, cancel: CancellationToken) -> Result<(), Error> {
    let readiness = Readiness::nats_and_redis();
    let _ops = ops::start(&config.ops, STAGE, readiness.clone(), &cancel).await?;
    let (client, js) = streams::connect(
        &config.nats,
        &config.streams,
        "maildrop-store-writer",
        &cancel,
    )
    .await?;
    readiness.set_nats(&client);
    let redis = connect::redis(&config.redis.url, &cancel).await?;
    readiness.set_redis(&redis);
    let store = MailStore::new(redis, config.limits());
    let received = js
        .get_stream(subject::RECEIVED_STREAM)
        .await
        .map_err(Error::Received)?;
    let publisher = Publisher::new(js.clone());
    let spec = ConsumerSpec {
        stage: STAGE,
        stream: subject::VERDICTS_STREAM,
        durable: consumer::STORE_WRITER,
        filter_subject: Some(subject::VERDICT_ACCEPTED),
    };
    let evictor = Evictor::new(store.clone(), publisher.clone(), config.store_max_bytes);
    let handler = handler::StoreHandler::new(
        received,
        store.clone(),
        publisher.clone(),
        config.attachment_policy(),
        evictor,
    );
    tokio::join!(
        consume::run(js, spec, config.consumer, cancel.clone(), handler),
        sweep::run(store, publisher, config.sweep_every, cancel),
    );
    Ok(())
}

/// Rebuilds the mailboxes in Redis from the retained streams, once (see [`mod@rebuild`]):
/// idempotent, safe while [`run`] runs, and silent (no `stored` events). Logs and returns what it
/// did.
pub async fn rebuild(config: Config, cancel: CancellationToken) -> Result<RebuildReport, Error> {
    let client = connect::nats(&config.nats.url, "maildrop-store-writer-rebuild", &cancel).await?;
    let js = async_nats::jetstream::new(client);
    let redis = connect::redis(&config.redis.url, &cancel).await?;
    let store = MailStore::new(redis, config.limits());
    let evictor = Evictor::new(
        store.clone(),
        Publisher::new(js.clone()),
        config.store_max_bytes,
    );
    rebuild::rebuild(
        &js,
        &store,
        &evictor,
        &config.attachment_policy(),
        config.rebuild_args().progress_every,
        &cancel,
    )
    .await
}
