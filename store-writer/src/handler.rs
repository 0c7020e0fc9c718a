//! The store-writer's consumer: one accepted verdict in, mailboxes written, events out, then ack.
//!
//! Order matters for "nothing lost, nothing twice": the Redis write comes first (idempotent on the
//! message id), the events second (deduplicated by the MAILBOX stream on `<id>.<box>.stored`), the
//! ack last. A crash anywhere in between redelivers the verdict and repeats only what is missing:
//! the store says `Duplicate { present: true }` and the `stored` event is published again, which
//! the stream drops if the first one got through.

use async_nats::jetstream::{self, message::PublishMessage, stream::DirectGetErrorKind};
use maildrop_contract::envelope::header;
use maildrop_contract::{Envelope, MailboxEvent, Verdict, event};
use maildrop_runtime::consume::{Failure, Handler};
use maildrop_store::{MailStore, StoreOutcome};

use crate::parse::stored_message;

pub struct StoreHandler {
    js: jetstream::Context,
    received: jetstream::stream::Stream,
    store: MailStore,
}

/// Why a verdict cannot be stored, ever.
#[derive(Debug, thiserror::Error)]
pub enum Poison {
    #[error("verdict is not valid JSON: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("verdict version {0} is not supported")]
    Version(u32),
    #[error("raw message {0} is no longer in RECEIVED (past its retention?)")]
    RawGone(u64),
    #[error("raw message has no envelope headers")]
    NoEnvelope,
}

impl StoreHandler {
    pub fn new(
        js: jetstream::Context,
        received: jetstream::stream::Stream,
        store: MailStore,
    ) -> Self {
        Self {
            js,
            received,
            store,
        }
    }

    async fn publish(&self, event: &MailboxEvent) -> Result<(), Failure> {
        let payload = serde_json::to_vec(event).map_err(Failure::failed)?;
        let mut publish = PublishMessage::build()
            .payload(payload.into())
            .message_id(event.dedupe_id());
        if let MailboxEvent::Stored { id, .. } | MailboxEvent::Deleted { id, .. } = event {
            publish = publish.header(header::ID, id.to_string().as_str());
        }
        self.js
            .send_publish(event.subject(), publish)
            .await
            .map_err(Failure::transient)?
            .await
            .map_err(Failure::transient)?;
        Ok(())
    }
}

impl Handler for StoreHandler {
    async fn handle(&self, msg: &jetstream::Message) -> Result<(), Failure> {
        let verdict: Verdict =
            serde_json::from_slice(&msg.payload).map_err(|e| Failure::poison(Poison::Decode(e)))?;
        if verdict.v != event::VERSION {
            return Err(Failure::poison(Poison::Version(verdict.v)));
        }
        let raw = self
            .received
            .direct_get(verdict.received_seq)
            .await
            .map_err(|e| match e.kind() {
                DirectGetErrorKind::NotFound => {
                    Failure::poison(Poison::RawGone(verdict.received_seq))
                }
                _ => Failure::transient(e),
            })?;
        let envelope = Envelope::from_headers(&raw.headers)
            .map_err(|_| Failure::poison(Poison::NoEnvelope))?;
        for mailbox in &verdict.mailboxes {
            let doc = stored_message(mailbox, &envelope, &verdict, &raw.payload);
            let outcome = self
                .store
                .store(&doc, &raw.payload)
                .await
                .map_err(Failure::transient)?;
            let (announce, evicted) = match &outcome {
                StoreOutcome::Stored { evicted } => (true, evicted.as_slice()),
                StoreOutcome::Duplicate { present } => (*present, &[][..]),
                StoreOutcome::TooOld => (false, &[][..]),
            };
            if announce {
                self.publish(&MailboxEvent::Stored {
                    v: event::VERSION,
                    mailbox: mailbox.clone(),
                    id: verdict.id,
                    summary: doc.summary,
                })
                .await?;
            }
            for id in evicted {
                self.publish(&MailboxEvent::Deleted {
                    v: event::VERSION,
                    mailbox: mailbox.clone(),
                    id: *id,
                })
                .await?;
            }
            tracing::info!(msg_id = %verdict.id, mailbox = %mailbox, outcome = ?outcome, "Message stored.");
        }
        Ok(())
    }
}
