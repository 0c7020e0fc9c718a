//! Which counters one message moves. Pure: the counting loop decides *whether* to count.

use async_nats::HeaderMap;
use maildrop_contract::envelope::header;
use maildrop_contract::{MailboxEvent, Verdict, consumer, subject};
use maildrop_store::stats::Counter;

/// A stream the reporter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Received,
    Verdicts,
    Mailbox,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Received, Source::Verdicts, Source::Mailbox];

    pub fn stream(self) -> &'static str {
        match self {
            Self::Received => subject::RECEIVED_STREAM,
            Self::Verdicts => subject::VERDICTS_STREAM,
            Self::Mailbox => subject::MAILBOX_STREAM,
        }
    }

    pub fn durable(self) -> &'static str {
        match self {
            Self::Received => consumer::REPORTER_RECEIVED,
            Self::Verdicts => consumer::REPORTER_VERDICTS,
            Self::Mailbox => consumer::REPORTER_MAILBOX,
        }
    }
}

/// The counters `payload` (with `headers`) moves. An undecodable event moves none: it is the
/// writer's bug, not traffic.
pub fn counters(
    source: Source,
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Vec<(Counter, u64)> {
    match source {
        Source::Received => {
            let size = headers
                .and_then(|h| h.get(header::SIZE))
                .and_then(|v| v.as_str().parse().ok())
                .unwrap_or(payload.len() as u64);
            vec![(Counter::Received, 1), (Counter::BytesReceived, size)]
        }
        Source::Verdicts => match serde_json::from_slice::<Verdict>(payload) {
            Ok(v) if v.accepted => vec![(Counter::Accepted, 1)],
            Ok(v) => std::iter::once((Counter::Rejected, 1))
                .chain(v.hits.into_iter().map(|h| (Counter::RejectedBy(h.rule), 1)))
                .collect(),
            Err(_) => Vec::new(),
        },
        Source::Mailbox => match serde_json::from_slice::<MailboxEvent>(payload) {
            Ok(MailboxEvent::Stored { .. }) => vec![(Counter::Stored, 1)],
            Ok(MailboxEvent::Deleted { .. }) => vec![(Counter::Deleted, 1)],
            Ok(MailboxEvent::Cleared { .. }) => vec![(Counter::Cleared, 1)],
            Ok(MailboxEvent::Expired { .. }) => vec![(Counter::Expired, 1)],
            Err(_) => Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_counts_messages_and_bytes() {
        let mut h = HeaderMap::new();
        h.insert(header::SIZE, "1234");
        assert_eq!(
            counters(Source::Received, Some(&h), b"x"),
            vec![(Counter::Received, 1), (Counter::BytesReceived, 1234)]
        );
        assert_eq!(
            counters(Source::Received, None, b"xyz")[1],
            (Counter::BytesReceived, 3)
        );
    }

    #[test]
    fn rejections_count_by_rule() {
        let v = include_str!("../../contract/fixtures/verdict.v1.json");
        assert_eq!(
            counters(Source::Verdicts, None, v.as_bytes()),
            vec![
                (Counter::Rejected, 1),
                (Counter::RejectedBy("blocked_sender".into()), 1)
            ]
        );
    }

    #[test]
    fn mailbox_events_and_garbage() {
        let e = include_str!("../../contract/fixtures/mailbox-stored.v1.json");
        assert_eq!(
            counters(Source::Mailbox, None, e.as_bytes()),
            vec![(Counter::Stored, 1)]
        );
        assert!(counters(Source::Mailbox, None, b"{").is_empty());
    }
}
