//! Publishing mailbox events on the `MAILBOX` stream, waiting until the stream has them.
//!
//! One place for it because three tasks publish: the consumer (`stored`, `deleted`), the byte cap
//! (`cleared` with a reason) and the sweeper (`expired`).

use async_nats::jetstream::{self, message::PublishMessage};
use maildrop_contract::MailboxEvent;
use maildrop_contract::envelope::header;
use maildrop_contract::event::WithReason;
use maildrop_runtime::consume::Failure;

/// An event did not reach the stream.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot encode the event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the MAILBOX stream did not take the event: {0}")]
    Bus(#[from] jetstream::context::PublishError),
}

impl PublishError {
    /// How the consumer settles a message whose event could not be published.
    pub fn into_failure(self) -> Failure {
        match self {
            Self::Encode(e) => Failure::failed(e),
            Self::Bus(e) => Failure::transient(e),
        }
    }
}

#[derive(Clone)]
pub struct Publisher {
    js: jetstream::Context,
}

impl Publisher {
    pub fn new(js: jetstream::Context) -> Self {
        Self { js }
    }

    /// Publishes `event`, deduplicated by its [`MailboxEvent::dedupe_id`].
    pub async fn event(&self, event: &MailboxEvent) -> Result<(), PublishError> {
        self.send(event, serde_json::to_vec(event)?).await
    }

    /// Publishes an event with its reason (the event's JSON plus `"reason"`).
    pub async fn with_reason(&self, event: &WithReason) -> Result<(), PublishError> {
        self.send(&event.event, serde_json::to_vec(event)?).await
    }

    async fn send(&self, event: &MailboxEvent, payload: Vec<u8>) -> Result<(), PublishError> {
        let mut publish = PublishMessage::build()
            .payload(payload.into())
            .message_id(event.dedupe_id());
        if let MailboxEvent::Stored { id, .. } | MailboxEvent::Deleted { id, .. } = event {
            publish = publish.header(header::ID, id.to_string().as_str());
        }
        self.js
            .send_publish(event.subject(), publish)
            .await?
            .await?;
        Ok(())
    }
}
