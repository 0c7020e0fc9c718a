//! JSON events on the `VERDICTS` and `MAILBOX` streams.
//!
//! Every event carries `"v": 1`. A reader refuses a version it does not know (it is dead-lettered,
//! not misread); a new field that old readers may ignore does not need a new version. The files in
//! `contract/fixtures/` are the wire format as documented; the tests below keep them in step.

use serde::{Deserialize, Serialize};

use crate::id::MessageId;
use crate::mailbox::Mailbox;

/// The event version this build writes and reads.
pub const VERSION: u32 = 1;

/// One rule that contributed to a verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleHit {
    pub rule: String,
    pub score: f64,
    pub reason: String,
}

/// The filter's decision on one received message, on `maildrop.verdict.{accepted,rejected}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub v: u32,
    pub id: MessageId,
    /// Sequence of the raw message in the `RECEIVED` stream, for a direct get.
    pub received_seq: u64,
    pub mailboxes: Vec<Mailbox>,
    pub accepted: bool,
    pub score: f64,
    pub threshold: f64,
    pub hits: Vec<RuleHit>,
    /// Version (content hash) of the rule set that decided.
    pub ruleset: String,
    pub client_ip: String,
    pub mail_from: String,
    pub size: u64,
    pub received_ms: u64,
}

/// What a mailbox listing shows of one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageSummary {
    pub id: MessageId,
    pub mailbox: Mailbox,
    /// The `From` header as written, or the envelope sender when there is none.
    pub from: String,
    pub subject: String,
    /// The `Date` header as written, if any.
    pub date: Option<String>,
    pub received_ms: u64,
    pub size: u64,
}

/// An event about one mailbox, on `maildrop.mailbox.<box>.<type>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MailboxEvent {
    /// A message was stored.
    Stored {
        v: u32,
        mailbox: Mailbox,
        id: MessageId,
        summary: MessageSummary,
    },
    /// A message was deleted (by a reader, or evicted when the mailbox was full).
    Deleted {
        v: u32,
        mailbox: Mailbox,
        id: MessageId,
    },
    /// Every message of the mailbox went away at once: a reader emptied it, or (published as
    /// [`WithReason`], with a `reason`) the store-writer evicted it to stay under its byte cap.
    Cleared { v: u32, mailbox: Mailbox },
    /// The mailbox outlived its retention (no new message for `MAILDROP_MAILBOX_RETENTION`) and
    /// is gone; published once by the store-writer's sweeper.
    Expired { v: u32, mailbox: Mailbox },
}

/// Why a mailbox was emptied although no reader asked: the `reason` of such a `cleared` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClearReason {
    /// The store reached `MAILDROP_STORE_MAX_BYTES`; the least recently active mailboxes go first.
    StoreFull,
}

/// A mailbox event and the reason it happened: the event's JSON plus `"reason"`.
///
/// `reason` is not a field of [`MailboxEvent::Cleared`] so that every publisher of a reader's
/// `cleared` keeps compiling; a reader that decodes a plain [`MailboxEvent`] ignores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WithReason {
    #[serde(flatten)]
    pub event: MailboxEvent,
    pub reason: ClearReason,
}

impl MailboxEvent {
    pub fn mailbox(&self) -> &Mailbox {
        match self {
            Self::Stored { mailbox, .. }
            | Self::Deleted { mailbox, .. }
            | Self::Cleared { mailbox, .. }
            | Self::Expired { mailbox, .. } => mailbox,
        }
    }

    pub fn version(&self) -> u32 {
        match self {
            Self::Stored { v, .. }
            | Self::Deleted { v, .. }
            | Self::Cleared { v, .. }
            | Self::Expired { v, .. } => *v,
        }
    }

    pub fn kind(&self) -> crate::subject::MailboxEventKind {
        use crate::subject::MailboxEventKind as K;
        match self {
            Self::Stored { .. } => K::Stored,
            Self::Deleted { .. } => K::Deleted,
            Self::Cleared { .. } => K::Cleared,
            Self::Expired { .. } => K::Expired,
        }
    }

    /// The subject this event is published on.
    pub fn subject(&self) -> String {
        crate::subject::mailbox_event(self.mailbox(), self.kind())
    }

    /// A `Nats-Msg-Id` that makes a republished event a duplicate inside the stream's window.
    pub fn dedupe_id(&self) -> String {
        match self {
            Self::Stored { mailbox, id, .. } => format!("{id}.{mailbox}.stored"),
            Self::Deleted { mailbox, id, .. } => format!("{id}.{mailbox}.deleted"),
            Self::Cleared { mailbox, .. } => {
                format!("{}.{mailbox}.cleared", MessageId::new())
            }
            // Only the sweeper that unlists the mailbox publishes, so one id per publish is enough.
            Self::Expired { mailbox, .. } => {
                format!("{}.{mailbox}.expired", MessageId::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERDICT: &str = include_str!("../fixtures/verdict.v1.json");
    const STORED: &str = include_str!("../fixtures/mailbox-stored.v1.json");
    const DELETED: &str = include_str!("../fixtures/mailbox-deleted.v1.json");
    const CLEARED: &str = include_str!("../fixtures/mailbox-cleared.v1.json");
    const EXPIRED: &str = include_str!("../fixtures/mailbox-expired.v1.json");

    fn same_json(a: &str, b: &str) {
        let a: serde_json::Value = serde_json::from_str(a).unwrap();
        let b: serde_json::Value = serde_json::from_str(b).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn verdict_fixture_round_trips() {
        let v: Verdict = serde_json::from_str(VERDICT).unwrap();
        assert_eq!(v.v, VERSION);
        assert!(!v.accepted);
        assert_eq!(v.hits[0].rule, "blocked_sender");
        same_json(&serde_json::to_string(&v).unwrap(), VERDICT);
    }

    #[test]
    fn mailbox_event_fixtures_round_trip() {
        for fixture in [STORED, DELETED, EXPIRED] {
            let e: MailboxEvent = serde_json::from_str(fixture).unwrap();
            assert_eq!(e.version(), VERSION);
            assert_eq!(e.mailbox().as_str(), "bob");
            same_json(&serde_json::to_string(&e).unwrap(), fixture);
        }
    }

    #[test]
    fn a_cleared_event_with_a_reason_round_trips() {
        let e: WithReason = serde_json::from_str(CLEARED).unwrap();
        assert_eq!(e.reason, ClearReason::StoreFull);
        assert!(matches!(e.event, MailboxEvent::Cleared { .. }));
        same_json(&serde_json::to_string(&e).unwrap(), CLEARED);
        // Readers of plain events see a `cleared` and ignore the reason.
        let plain: MailboxEvent = serde_json::from_str(CLEARED).unwrap();
        assert_eq!(plain, e.event);
        // A reader's `cleared` has no reason.
        let plain = r#"{"type":"cleared","v":1,"mailbox":"bob"}"#;
        assert!(serde_json::from_str::<WithReason>(plain).is_err());
    }

    #[test]
    fn expired_events_have_their_own_subject() {
        let e: MailboxEvent = serde_json::from_str(EXPIRED).unwrap();
        assert_eq!(e.subject(), "maildrop.mailbox.bob.expired");
        assert!(e.dedupe_id().ends_with(".bob.expired"));
    }

    #[test]
    fn events_know_their_subject() {
        let e: MailboxEvent = serde_json::from_str(STORED).unwrap();
        assert_eq!(e.subject(), "maildrop.mailbox.bob.stored");
        assert!(e.dedupe_id().ends_with(".bob.stored"));
    }

    #[test]
    fn an_invalid_mailbox_in_an_event_is_refused() {
        let bad = STORED.replace("\"bob\"", "\"b b\"");
        assert!(serde_json::from_str::<MailboxEvent>(&bad).is_err());
    }
}
