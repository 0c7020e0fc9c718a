//! Handing a finished SMTP transaction to JetStream, and turning the outcome into the SMTP answer.
//!
//! The message gets its id here, and the id is the publish's `Nats-Msg-Id`: it belongs to this SMTP
//! transaction, never to the `Message-ID` header (which senders reuse and attackers can copy to
//! have someone else's mail dropped as a duplicate). `250` is answered only once JetStream has
//! acknowledged the message; a bus that is down, slow or refusing answers `451`, and the client
//! retries. Each connection awaits its own acknowledgement, so connections never wait for each
//! other.

use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, message::PublishMessage};
use maildrop_contract::{MessageId, now_ms, subject};

use crate::smtp::{DeliveryOutcome, Transaction};

/// Why a message was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("not connected to NATS")]
    Disconnected,
    #[error("publish failed: {0}")]
    Publish(#[from] jetstream::context::PublishError),
    #[error("no acknowledgement within {0:?}")]
    Timeout(Duration),
}

/// Publishes `tx` on `maildrop.received` and waits for the stream's acknowledgement.
pub async fn publish(
    js: &jetstream::Context,
    tx: Transaction,
    timeout: Duration,
) -> Result<MessageId, PublishError> {
    // While disconnected the client would buffer the publish and send it after reconnecting,
    // possibly after we had answered 451: the client's retry would then store the mail twice.
    if js.client().connection_state() != State::Connected {
        return Err(PublishError::Disconnected);
    }
    let id = MessageId::new();
    let started = std::time::Instant::now();
    let bytes = tx.body.len() as u64;
    let envelope = tx.envelope(id, now_ms());
    let message = PublishMessage::build()
        .payload(tx.body)
        .headers(envelope.to_headers())
        .message_id(id.to_string());
    let acked = async {
        js.send_publish(subject::RECEIVED, message).await?.await?;
        Ok::<_, PublishError>(())
    };
    let acked = tokio::time::timeout(timeout, acked)
        .await
        .map_err(|_| PublishError::Timeout(timeout))
        .and_then(|r| r);
    metrics::histogram!("maildrop_ingest_publish_seconds", "result" => if acked.is_ok() { "acked" } else { "failed" })
        .record(started.elapsed().as_secs_f64());
    acked?;
    metrics::counter!("maildrop_ingest_messages_accepted_total").increment(1);
    metrics::counter!("maildrop_ingest_accepted_bytes_total").increment(bytes);
    Ok(id)
}

/// The SMTP outcome of a publish, logged with the message id.
pub fn outcome(result: Result<MessageId, PublishError>, peer: std::net::IpAddr) -> DeliveryOutcome {
    match result {
        Ok(id) => {
            tracing::info!(msg_id = %id, %peer, "Message accepted.");
            DeliveryOutcome::Accepted { id }
        }
        Err(e) => {
            metrics::counter!("maildrop_ingest_messages_unacknowledged_total").increment(1);
            tracing::warn!(%peer, error = %e, "Message not acknowledged by JetStream; answered 451.");
            DeliveryOutcome::TemporaryFailure
        }
    }
}
