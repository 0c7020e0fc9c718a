//! Ingest-time rejections: SMTP attempts refused before a message existed, on
//! `maildrop.rejected.ingest` (stream `REJECTED`).
//!
//! The filter's verdicts only see mail that reached `DATA`'s end. Most spam never gets that far: its
//! client is blocked at connect, greylisted, refused as a relay, or sends something too large or
//! malformed. The ingest publishes one [`IngestRejection`] per such refusal so research and the
//! reporter see every attempt. Publishing is best effort (a full buffer drops the event, never
//! slows the session), so these events are statistics, not a ledger.

use serde::{Deserialize, Serialize};

use crate::id::MessageId;

/// Why the ingest refused. Serialised in `snake_case`; a reader that does not know a newer reason
/// reads it as [`RejectReason::Other`] rather than refusing the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The client's address is in the blocked set (`554 5.7.1` at connect).
    BlockedIp,
    /// Too many connections, or connections too fast, from one client or in all (`421 4.7.0`).
    RateLimited,
    /// Greylisted: the client must come back later (`451 4.7.1` at `RCPT`).
    Greylisted,
    /// A recipient at a domain that is not ours (`550 5.7.1` at `RCPT`).
    RelayDenied,
    /// A recipient at our domain that is not a valid mailbox name (`553 5.1.3` at `RCPT`).
    InvalidRecipient,
    /// More recipients than allowed (`452 4.5.3`).
    TooManyRecipients,
    /// The message or its header block exceeded a size limit (`552 5.3.4`).
    TooLarge,
    /// The message body is malformed: bare CR or LF, NUL (`550 5.6.x`).
    BadInput,
    /// A reason this build does not know.
    #[serde(other)]
    Other,
}

impl RejectReason {
    pub const ALL: [RejectReason; 8] = [
        Self::BlockedIp,
        Self::RateLimited,
        Self::Greylisted,
        Self::RelayDenied,
        Self::InvalidRecipient,
        Self::TooManyRecipients,
        Self::TooLarge,
        Self::BadInput,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BlockedIp => "blocked_ip",
            Self::RateLimited => "rate_limited",
            Self::Greylisted => "greylisted",
            Self::RelayDenied => "relay_denied",
            Self::InvalidRecipient => "invalid_recipient",
            Self::TooManyRecipients => "too_many_recipients",
            Self::TooLarge => "too_large",
            Self::BadInput => "bad_input",
            Self::Other => "other",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One refused SMTP attempt, on `maildrop.rejected.ingest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestRejection {
    pub v: u32,
    /// A fresh id per event (time-ordered), also its `Nats-Msg-Id`.
    pub id: MessageId,
    pub client_ip: String,
    /// The `EHLO`/`HELO` name, if the client had greeted.
    pub helo: Option<String>,
    /// The reverse path of the transaction, if one was open (empty for `<>`).
    pub mail_from: Option<String>,
    /// The recipients involved: those accepted so far and, for a refused `RCPT`, the refused one
    /// last.
    pub rcpt: Vec<String>,
    pub reason: RejectReason,
    /// The SMTP reply code the client got (`550`, `421`, …).
    pub code: u16,
    /// The enhanced status code, `class.subject.detail`.
    pub enhanced: Option<String>,
    /// When it happened, ms since the epoch.
    pub time_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../fixtures/rejected-ingest.v1.json");

    #[test]
    fn fixture_round_trips() {
        let e: IngestRejection = serde_json::from_str(FIXTURE).unwrap();
        assert_eq!(e.v, crate::event::VERSION);
        assert_eq!(e.reason, RejectReason::RelayDenied);
        assert_eq!(e.rcpt, ["someone@elsewhere.example"]);
        let a: serde_json::Value = serde_json::to_value(&e).unwrap();
        let b: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn reasons_serialise_as_their_names_and_unknown_ones_are_other() {
        for r in RejectReason::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        let later = FIXTURE.replace("relay_denied", "dns_blocklisted");
        let e: IngestRejection = serde_json::from_str(&later).unwrap();
        assert_eq!(e.reason, RejectReason::Other);
    }
}
