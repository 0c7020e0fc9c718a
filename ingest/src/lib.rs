//! The ingest stage: the SMTP server that faces the internet.
//!
//! - [`smtp`]: the protocol as a state machine without I/O (every rule unit-tested, fuzzable);
//! - [`server`]: the listener and the per-connection loop that only moves bytes;
//! - [`publish`]: handing a finished message to JetStream; `250` only after its acknowledgement.

pub mod config;
pub mod publish;
pub mod server;
pub mod smtp;

use std::sync::Arc;

pub use config::Config;

use maildrop_runtime::{connect, streams};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const STAGE: &str = "ingest";

/// Room left in a NATS message for the envelope headers.
const HEADER_ROOM: usize = 64 * 1024;

/// Why the stage could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] connect::ConnectError),
    #[error(transparent)]
    Streams(#[from] streams::StreamError),
}

/// Serves SMTP on `listener` until `cancel` is cancelled.
pub async fn run(
    config: Config,
    listener: TcpListener,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let client = connect::nats(&config.nats.url, "maildrop-ingest", &cancel).await?;
    let mut js = async_nats::jetstream::new(client.clone());
    js.set_timeout(config.publish_timeout);
    streams::ensure_all(&js, &config.streams).await?;
    let max_payload = client.server_info().max_payload;
    let mut max_size = config.max_message_size;
    if max_size + HEADER_ROOM > max_payload {
        max_size = max_payload.saturating_sub(HEADER_ROOM);
        tracing::warn!(
            configured = config.max_message_size,
            nats_max_payload = max_payload,
            max_message_size = max_size,
            "MAILDROP_MAX_MESSAGE_SIZE does not fit in the NATS server's max_payload; lowered. Raise max_payload in the NATS server's configuration to accept larger messages."
        );
    }
    let shared = Arc::new(server::Shared {
        session: Arc::new(config.session(max_size)),
        js,
        idle_timeout: config.idle_timeout,
        session_timeout: config.session_timeout,
        publish_timeout: config.publish_timeout,
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, max_message_size = max_size, domains = ?config.domains.domains, "SMTP listening.");
    }
    server::serve(
        listener,
        shared,
        config.max_connections,
        config.shutdown_grace,
        cancel,
    )
    .await;
    Ok(())
}
