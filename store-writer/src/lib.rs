//! The store-writer stage: puts accepted messages into their mailboxes and announces them.
//!
//! For each accepted verdict it fetches the raw message from `RECEIVED` by sequence (a direct get:
//! the verdict does not carry the bytes twice), turns it into a [`StoredMessage`](maildrop_store::StoredMessage)
//! ([`parse`]), stores it in every mailbox it was addressed to (atomic and idempotent, in
//! `maildrop-store`), then publishes `stored` (and `deleted` for messages evicted to make room) on
//! the mailbox's subject, and only then acks ([`handler`]).

pub mod config;
pub mod handler;
pub mod parse;

pub use config::Config;

use maildrop_contract::{consumer, subject};
use maildrop_runtime::consume::{self, ConsumerSpec};
use maildrop_runtime::{connect, streams};
use maildrop_store::MailStore;
use tokio_util::sync::CancellationToken;

pub const STAGE: &str = "store-writer";

/// Why the stage could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] connect::ConnectError),
    #[error(transparent)]
    Streams(#[from] streams::StreamError),
    #[error("cannot open the RECEIVED stream")]
    Received(#[source] async_nats::jetstream::context::GetStreamError),
}

/// Runs the store-writer until `cancel` is cancelled.
pub async fn run(config: Config, cancel: CancellationToken) -> Result<(), Error> {
    let client = connect::nats(&config.nats.url, "maildrop-store-writer", &cancel).await?;
    let js = async_nats::jetstream::new(client);
    streams::ensure_all(&js, &config.streams).await?;
    let redis = connect::redis(&config.redis.url, &cancel).await?;
    let store = MailStore::new(redis, config.limits());
    let received = js
        .get_stream(subject::RECEIVED_STREAM)
        .await
        .map_err(Error::Received)?;
    let spec = ConsumerSpec {
        stage: STAGE,
        stream: subject::VERDICTS_STREAM,
        durable: consumer::STORE_WRITER,
        filter_subject: Some(subject::VERDICT_ACCEPTED),
    };
    let handler = handler::StoreHandler::new(js.clone(), received, store);
    consume::run(js, spec, config.consumer, cancel, handler).await;
    Ok(())
}
