//! The contract between Maildrop's stages.
//!
//! Everything that crosses a process boundary is named here, once: the JetStream streams and their
//! subjects ([`subject`]), the consumer names ([`consumer`]), the NATS headers that carry the SMTP
//! envelope next to the raw message ([`envelope`]), the JSON events on the streams ([`event`],
//! [`rejection`] for what the ingest refused), and the
//! rules for mailbox names ([`mailbox`]) and message ids ([`id`]).
//!
//! If a type never goes over the wire, it does not belong here: the Redis layout lives in
//! `maildrop-store`, process plumbing in `maildrop-runtime`.

pub mod alias;
pub mod consumer;
pub mod envelope;
pub mod event;
pub mod id;
pub mod mailbox;
pub mod rejection;
pub mod subject;

pub use envelope::Envelope;
pub use event::{MailboxEvent, MessageSummary, RuleHit, Verdict};
pub use id::MessageId;
pub use mailbox::Mailbox;
pub use rejection::{IngestRejection, RejectReason};

/// Milliseconds since the Unix epoch, the one time format on the wire.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
