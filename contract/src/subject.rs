//! JetStream streams and the subjects on them.
//!
//! | stream | subjects | what |
//! |---|---|---|
//! | `RECEIVED` | `maildrop.received` | raw RFC 5322 bytes, envelope in headers, one per SMTP transaction |
//! | `VERDICTS` | `maildrop.verdict.accepted`, `maildrop.verdict.rejected` | [`crate::Verdict`] JSON |
//! | `MAILBOX` | `maildrop.mailbox.<box>.stored` / `.deleted` / `.cleared` / `.expired` | [`crate::MailboxEvent`] JSON |
//! | `DEADLETTER` | `maildrop.deadletter.<stage>` | a message a stage gave up on, reason in headers |
//! | `REJECTED` | `maildrop.rejected.ingest` | [`crate::rejection::IngestRejection`] JSON: SMTP attempts the ingest refused |
//! | `SHADOW` | `maildrop.shadow.verdict.accepted`, `maildrop.shadow.verdict.rejected` | [`crate::Verdict`] JSON of a shadow filter (a candidate rule set on live traffic): research only, nothing acts on it |
//!
//! The `MAILBOX` stream republishes every event it stores on `maildrop.live.mailbox.<box>.<kind>`
//! with its stream sequence in the `Nats-Sequence` header. Live watchers (the gateway) subscribe
//! there: they see an event only once it is durable, exactly once however often it was published,
//! and with the sequence a reconnecting client resumes from.
//!
//! Subjects that depend on a mailbox are built only by the functions here, from a validated
//! [`Mailbox`], so no caller can build a subject with a stray `.` or wildcard in it.

use crate::mailbox::Mailbox;

pub const RECEIVED_STREAM: &str = "RECEIVED";
pub const RECEIVED: &str = "maildrop.received";

pub const VERDICTS_STREAM: &str = "VERDICTS";
pub const VERDICTS_ALL: &str = "maildrop.verdict.>";
pub const VERDICT_ACCEPTED: &str = "maildrop.verdict.accepted";
pub const VERDICT_REJECTED: &str = "maildrop.verdict.rejected";

pub const MAILBOX_STREAM: &str = "MAILBOX";
pub const MAILBOX_ALL: &str = "maildrop.mailbox.>";

/// Where the `MAILBOX` stream republishes what it stores.
pub const LIVE_MAILBOX_ALL: &str = "maildrop.live.mailbox.>";

/// The header carrying a republished event's stream sequence (set by JetStream).
pub const SEQUENCE_HEADER: &str = "Nats-Sequence";

pub const REJECTED_STREAM: &str = "REJECTED";
pub const REJECTED_ALL: &str = "maildrop.rejected.>";
/// SMTP attempts the ingest refused (blocked, greylisted, relay, too large, …).
pub const REJECTED_INGEST: &str = "maildrop.rejected.ingest";

pub const SHADOW_STREAM: &str = "SHADOW";
pub const SHADOW_ALL: &str = "maildrop.shadow.>";
pub const SHADOW_VERDICT_ACCEPTED: &str = "maildrop.shadow.verdict.accepted";
pub const SHADOW_VERDICT_REJECTED: &str = "maildrop.shadow.verdict.rejected";

pub const DEADLETTER_STREAM: &str = "DEADLETTER";
pub const DEADLETTER_ALL: &str = "maildrop.deadletter.>";

/// The subject a verdict is published on.
pub fn verdict(accepted: bool) -> &'static str {
    if accepted {
        VERDICT_ACCEPTED
    } else {
        VERDICT_REJECTED
    }
}

/// The subject a shadow filter publishes a verdict on (never one of [`VERDICTS_STREAM`]'s).
pub fn shadow_verdict(accepted: bool) -> &'static str {
    if accepted {
        SHADOW_VERDICT_ACCEPTED
    } else {
        SHADOW_VERDICT_REJECTED
    }
}

/// The kinds of event on a mailbox's subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxEventKind {
    Stored,
    Deleted,
    Cleared,
    Expired,
}

impl MailboxEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Deleted => "deleted",
            Self::Cleared => "cleared",
            Self::Expired => "expired",
        }
    }
}

/// `maildrop.mailbox.<box>.<kind>`: one event about one mailbox.
pub fn mailbox_event(mailbox: &Mailbox, kind: MailboxEventKind) -> String {
    format!(
        "maildrop.mailbox.{}.{}",
        mailbox.subject_token(),
        kind.as_str()
    )
}

/// `maildrop.mailbox.<box>.>`: every event about one mailbox (what a watcher subscribes to).
pub fn mailbox_events(mailbox: &Mailbox) -> String {
    format!("maildrop.mailbox.{}.>", mailbox.subject_token())
}

/// `maildrop.live.mailbox.<box>.>`: the durable events of one mailbox, with their sequence.
pub fn live_mailbox_events(mailbox: &Mailbox) -> String {
    format!("maildrop.live.mailbox.{}.>", mailbox.subject_token())
}

/// The mailbox a `maildrop.mailbox.<box>.<kind>` subject is about.
pub fn mailbox_of(subject: &str) -> Option<Mailbox> {
    let rest = subject.strip_prefix("maildrop.mailbox.")?;
    let (token, _kind) = rest.split_once('.')?;
    Mailbox::from_subject_token(token).ok()
}

/// `maildrop.deadletter.<stage>`.
pub fn deadletter(stage: &str) -> String {
    format!("maildrop.deadletter.{stage}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_subjects_escape_dots() {
        let mb = Mailbox::parse("a.b").unwrap();
        assert_eq!(
            mailbox_event(&mb, MailboxEventKind::Stored),
            "maildrop.mailbox.a%2Eb.stored"
        );
        assert_eq!(mailbox_events(&mb), "maildrop.mailbox.a%2Eb.>");
        assert_eq!(live_mailbox_events(&mb), "maildrop.live.mailbox.a%2Eb.>");
        assert_eq!(
            mailbox_of(&mailbox_event(&mb, MailboxEventKind::Deleted)),
            Some(mb)
        );
    }

    #[test]
    fn mailbox_of_refuses_other_subjects() {
        assert_eq!(mailbox_of("maildrop.received"), None);
        assert_eq!(mailbox_of("maildrop.mailbox.x"), None);
    }
}
