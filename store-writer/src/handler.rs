//! The store-writer's consumer: one accepted verdict in, mailboxes written, events out, then ack.
//!
//! Order matters for "nothing lost, nothing twice": the Redis write comes first (idempotent on the
//! message id), the events second (deduplicated by the MAILBOX stream on `<id>.<box>.stored`), the
//! ack last. A crash anywhere in between redelivers the verdict and repeats only what is missing:
//! the store says `Duplicate { present: true }` and the `stored` event is published again, which
//! the stream drops if the first one got through.
//!
//! After the write, if all mailboxes together hold more than the byte cap, the least recently
//! active are emptied ([`Evictor`]). That is housekeeping, not this message's effect: if it fails
//! it is logged and the message is still acked, and the next store tries again.

use async_nats::jetstream::stream::{DirectGetErrorKind, RawMessageErrorKind};
use async_nats::jetstream::{self, message::StreamMessage};
use maildrop_contract::{Envelope, MailboxEvent, Verdict, event};
use maildrop_runtime::consume::{Failure, Handler};
use maildrop_store::{MailStore, StoreOutcome};

use crate::evict::Evictor;
use crate::prepare::{AttachmentPolicy, prepare};
use crate::publish::Publisher;

pub struct StoreHandler {
    received: jetstream::stream::Stream,
    store: MailStore,
    publisher: Publisher,
    policy: AttachmentPolicy,
    evictor: Evictor,
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

/// Why the raw message of a verdict could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Poison(#[from] Poison),
    #[error("cannot read raw message {seq} from RECEIVED: {source}")]
    Bus {
        seq: u64,
        #[source]
        source: jetstream::stream::DirectGetError,
    },
    #[error("cannot read raw message {seq} from RECEIVED's leader: {source}")]
    Leader {
        seq: u64,
        #[source]
        source: jetstream::stream::RawMessageError,
    },
}

/// Decodes a verdict of a version this build reads.
pub fn decode_verdict(payload: &[u8]) -> Result<Verdict, Poison> {
    let verdict: Verdict = serde_json::from_slice(payload)?;
    if verdict.v != event::VERSION {
        return Err(Poison::Version(verdict.v));
    }
    Ok(verdict)
}

/// The envelope and the raw message of `verdict` (its `payload`), by a direct get from `RECEIVED`.
pub async fn fetch_raw(
    received: &jetstream::stream::Stream,
    verdict: &Verdict,
) -> Result<(Envelope, StreamMessage), FetchError> {
    let seq = verdict.received_seq;
    let raw = match received.direct_get(seq).await {
        Ok(raw) => raw,
        // With replicas, any replica answers a direct get, and one that is behind (a node just
        // restarted, or a follower a moment late) has not got the message yet: only the stream
        // leader's answer can say it is gone. Found in the three-node fault test, where a
        // follower's "not found" had dead-lettered messages that had been acknowledged.
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => received
            .get_raw_message(seq)
            .await
            .map_err(|e| match e.kind() {
            RawMessageErrorKind::NoMessageFound => FetchError::Poison(Poison::RawGone(seq)),
            _ => FetchError::Leader { seq, source: e },
        })?,
        Err(e) => return Err(FetchError::Bus { seq, source: e }),
    };
    let envelope = Envelope::from_headers(&raw.headers).map_err(|_| Poison::NoEnvelope)?;
    Ok((envelope, raw))
}

impl StoreHandler {
    pub fn new(
        received: jetstream::stream::Stream,
        store: MailStore,
        publisher: Publisher,
        policy: AttachmentPolicy,
        evictor: Evictor,
    ) -> Self {
        Self {
            received,
            store,
            publisher,
            policy,
            evictor,
        }
    }
}

impl Handler for StoreHandler {
    async fn handle(&self, msg: &jetstream::Message) -> Result<(), Failure> {
        let verdict = decode_verdict(&msg.payload).map_err(Failure::poison)?;
        let Some(first) = verdict.mailboxes.first() else {
            return Ok(());
        };
        let (envelope, raw) = fetch_raw(&self.received, &verdict)
            .await
            .map_err(|e| match e {
                FetchError::Poison(p) => Failure::poison(p),
                bus @ (FetchError::Bus { .. } | FetchError::Leader { .. }) => {
                    Failure::transient(bus)
                }
            })?;
        let prepared = prepare(first, &envelope, &verdict, &raw.payload, &self.policy);
        let mut total_bytes = 0;
        for mailbox in &verdict.mailboxes {
            let doc = prepared.document(mailbox);
            let report = self
                .store
                .store(&doc, prepared.raw())
                .await
                .map_err(Failure::transient)?;
            total_bytes = total_bytes.max(report.total_bytes);
            let outcome = report.outcome;
            let (announce, evicted) = match &outcome {
                StoreOutcome::Stored { evicted } => (true, evicted.as_slice()),
                StoreOutcome::Duplicate { present } => (*present, &[][..]),
                StoreOutcome::TooOld | StoreOutcome::Expired => (false, &[][..]),
            };
            let counted = match &outcome {
                StoreOutcome::Stored { .. } => "stored",
                StoreOutcome::Duplicate { .. } => "duplicate",
                StoreOutcome::TooOld => "too_old",
                StoreOutcome::Expired => "expired",
            };
            metrics::counter!("maildrop_store_writer_messages_total", "outcome" => counted)
                .increment(1);
            if counted == "stored" {
                metrics::counter!("maildrop_store_writer_stored_bytes_total")
                    .increment(prepared.raw().len() as u64);
            }
            metrics::counter!("maildrop_store_writer_messages_evicted_total")
                .increment(evicted.len() as u64);
            if announce {
                self.publisher
                    .event(&MailboxEvent::Stored {
                        v: event::VERSION,
                        mailbox: mailbox.clone(),
                        id: verdict.id,
                        summary: doc.summary,
                    })
                    .await
                    .map_err(|e| e.into_failure())?;
            }
            for id in evicted {
                self.publisher
                    .event(&MailboxEvent::Deleted {
                        v: event::VERSION,
                        mailbox: mailbox.clone(),
                        id: *id,
                    })
                    .await
                    .map_err(|e| e.into_failure())?;
            }
            tracing::info!(msg_id = %verdict.id, mailbox = %mailbox, outcome = ?outcome, "Message stored.");
        }
        metrics::gauge!("maildrop_store_writer_store_bytes").set(total_bytes as f64);
        if total_bytes > self.evictor.max_bytes()
            && let Err(e) = self.evictor.enforce(&verdict.mailboxes).await
        {
            tracing::warn!(msg_id = %verdict.id, error = %e, "Could not evict mailboxes to stay under the byte cap; the next store tries again.");
        }
        Ok(())
    }
}
