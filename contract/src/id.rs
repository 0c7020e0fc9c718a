//! Message ids: one ULID per accepted SMTP transaction, made by ingest.
//!
//! The id is time-ordered (newest sorts last), so mailbox listings and replays can use it as a
//! cursor. It is the JetStream `Nats-Msg-Id` of the publish, which makes a retried publish a no-op
//! inside the stream's duplicate window, and every stage keys its idempotent effects on it. It is
//! never derived from the `Message-ID` header, which senders reuse and attackers can copy.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The id of one received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(ulid::Ulid);

impl MessageId {
    /// A fresh id for a message received now.
    pub fn new() -> Self {
        Self(ulid::Ulid::new())
    }

    /// Milliseconds since the epoch encoded in the id.
    pub fn timestamp_ms(&self) -> u64 {
        self.0.timestamp_ms()
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A string that is not a message id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a message id (expected a 26-character ULID)")]
pub struct InvalidMessageId;

impl FromStr for MessageId {
    type Err = InvalidMessageId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ulid::Ulid::from_string(s)
            .map(Self)
            .map_err(|_| InvalidMessageId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let id = MessageId::new();
        let parsed: MessageId = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
    }

    #[test]
    fn ids_sort_by_time_as_text_and_as_values() {
        let a = MessageId(ulid::Ulid::from_parts(1_000, u128::MAX >> 48));
        let b = MessageId(ulid::Ulid::from_parts(1_001, 0));
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
        assert_eq!(b.timestamp_ms(), 1_001);
    }

    #[test]
    fn rejects_garbage() {
        assert!("hello".parse::<MessageId>().is_err());
        assert!("".parse::<MessageId>().is_err());
    }
}
