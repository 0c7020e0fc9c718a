//! What one message moves: counters, a rejected source, an active mailbox. Pure: the counting
//! loop decides *whether* to count.

use async_nats::HeaderMap;
use maildrop_contract::envelope::header;
use maildrop_contract::{IngestRejection, MailboxEvent, Verdict, consumer, subject};
use maildrop_store::shadow::{Pairing, Side};
use maildrop_store::stats::Counter;

/// A stream the reporter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Received,
    Verdicts,
    Mailbox,
    /// SMTP attempts the ingest refused.
    Rejected,
    /// A shadow filter's verdicts: paired with production's, counted nowhere else.
    Shadow,
}

impl Source {
    pub const ALL: [Source; 5] = [
        Source::Received,
        Source::Verdicts,
        Source::Mailbox,
        Source::Rejected,
        Source::Shadow,
    ];

    pub fn stream(self) -> &'static str {
        match self {
            Self::Received => subject::RECEIVED_STREAM,
            Self::Verdicts => subject::VERDICTS_STREAM,
            Self::Mailbox => subject::MAILBOX_STREAM,
            Self::Rejected => subject::REJECTED_STREAM,
            Self::Shadow => subject::SHADOW_STREAM,
        }
    }

    pub fn durable(self) -> &'static str {
        match self {
            Self::Received => consumer::REPORTER_RECEIVED,
            Self::Verdicts => consumer::REPORTER_VERDICTS,
            Self::Mailbox => consumer::REPORTER_MAILBOX,
            Self::Rejected => consumer::REPORTER_REJECTED,
            Self::Shadow => consumer::REPORTER_SHADOW,
        }
    }
}

/// What one message moves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    pub counters: Vec<(Counter, u64)>,
    /// A rejected message's or refused attempt's client IP and sender domain, for the top lists.
    pub rejected_source: Option<(String, Option<String>)>,
    /// The mailbox a message was stored in, for the active-mailbox count.
    pub stored_in: Option<String>,
    /// A verdict to pair with the other filter's (shadow mode, [`maildrop_store::shadow`]).
    pub pair: Option<Pairing>,
}

fn pairing(v: &Verdict, side: Side) -> Option<Pairing> {
    Some(Pairing {
        id: v.id.to_string(),
        side,
        accepted: v.accepted,
        ruleset: v.ruleset.clone(),
    })
}

/// The domain of an address (`MAIL FROM`), if it has one.
pub fn domain_of(address: &str) -> Option<String> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty())
}

/// What `payload` (with `headers`) moves. An undecodable event moves nothing: it is the writer's
/// bug, not traffic.
pub fn effects(source: Source, headers: Option<&HeaderMap>, payload: &[u8]) -> Effects {
    match source {
        Source::Received => {
            let size = headers
                .and_then(|h| h.get(header::SIZE))
                .and_then(|v| v.as_str().parse().ok())
                .unwrap_or(payload.len() as u64);
            Effects {
                counters: vec![(Counter::Received, 1), (Counter::BytesReceived, size)],
                ..Effects::default()
            }
        }
        Source::Verdicts => match serde_json::from_slice::<Verdict>(payload) {
            Ok(v) if v.accepted => Effects {
                counters: vec![(Counter::Accepted, 1)],
                pair: pairing(&v, Side::Production),
                ..Effects::default()
            },
            Ok(v) => Effects {
                pair: pairing(&v, Side::Production),
                counters: std::iter::once((Counter::Rejected, 1))
                    .chain(v.hits.into_iter().map(|h| (Counter::RejectedBy(h.rule), 1)))
                    .collect(),
                rejected_source: Some((v.client_ip, domain_of(&v.mail_from))),
                stored_in: None,
            },
            Err(_) => Effects::default(),
        },
        Source::Shadow => match serde_json::from_slice::<Verdict>(payload) {
            Ok(v) => Effects {
                pair: pairing(&v, Side::Shadow),
                ..Effects::default()
            },
            Err(_) => Effects::default(),
        },
        Source::Mailbox => match serde_json::from_slice::<MailboxEvent>(payload) {
            Ok(MailboxEvent::Stored { mailbox, .. }) => Effects {
                counters: vec![(Counter::Stored, 1)],
                stored_in: Some(mailbox.as_str().to_owned()),
                ..Effects::default()
            },
            Ok(e) => Effects {
                counters: vec![(
                    match e {
                        MailboxEvent::Deleted { .. } => Counter::Deleted,
                        MailboxEvent::Cleared { .. } => Counter::Cleared,
                        _ => Counter::Expired,
                    },
                    1,
                )],
                ..Effects::default()
            },
            Err(_) => Effects::default(),
        },
        Source::Rejected => match serde_json::from_slice::<IngestRejection>(payload) {
            Ok(r) => Effects {
                counters: vec![
                    (Counter::RejectedIngest, 1),
                    (Counter::RejectedIngestBy(r.reason.as_str().to_owned()), 1),
                ],
                rejected_source: Some((r.client_ip, r.mail_from.as_deref().and_then(domain_of))),
                ..Effects::default()
            },
            Err(_) => Effects::default(),
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
            effects(Source::Received, Some(&h), b"x").counters,
            vec![(Counter::Received, 1), (Counter::BytesReceived, 1234)]
        );
        assert_eq!(
            effects(Source::Received, None, b"xyz").counters[1],
            (Counter::BytesReceived, 3)
        );
    }

    #[test]
    fn rejections_count_by_rule_and_name_their_source() {
        let v = include_str!("../../contract/fixtures/verdict.v1.json");
        let e = effects(Source::Verdicts, None, v.as_bytes());
        assert_eq!(
            e.counters,
            vec![
                (Counter::Rejected, 1),
                (Counter::RejectedBy("blocked_sender".into()), 1)
            ]
        );
        assert_eq!(
            e.rejected_source,
            Some(("192.0.2.7".into(), Some("example.com".into())))
        );
    }

    #[test]
    fn verdicts_pair_as_production_and_shadow_verdicts_count_nothing_else() {
        let v = include_str!("../../contract/fixtures/verdict.v1.json");
        let production = effects(Source::Verdicts, None, v.as_bytes()).pair.unwrap();
        assert_eq!(production.side, Side::Production);
        assert!(!production.accepted);
        let shadow = effects(Source::Shadow, None, v.as_bytes());
        assert_eq!(
            shadow.pair,
            Some(Pairing {
                side: Side::Shadow,
                ..production
            })
        );
        assert!(shadow.counters.is_empty() && shadow.rejected_source.is_none());
        assert_eq!(effects(Source::Shadow, None, b"{"), Effects::default());
    }

    #[test]
    fn ingest_rejections_count_by_reason() {
        let r = include_str!("../../contract/fixtures/rejected-ingest.v1.json");
        let e = effects(Source::Rejected, None, r.as_bytes());
        assert_eq!(
            e.counters,
            vec![
                (Counter::RejectedIngest, 1),
                (Counter::RejectedIngestBy("relay_denied".into()), 1)
            ]
        );
        assert_eq!(
            e.rejected_source,
            Some(("192.0.2.7".into(), Some("example.com".into())))
        );
    }

    #[test]
    fn mailbox_events_and_garbage() {
        let e = include_str!("../../contract/fixtures/mailbox-stored.v1.json");
        let e = effects(Source::Mailbox, None, e.as_bytes());
        assert_eq!(e.counters, vec![(Counter::Stored, 1)]);
        assert_eq!(e.stored_in.as_deref(), Some("bob"));
        let d = include_str!("../../contract/fixtures/mailbox-deleted.v1.json");
        assert_eq!(
            effects(Source::Mailbox, None, d.as_bytes()).counters,
            vec![(Counter::Deleted, 1)]
        );
        assert_eq!(effects(Source::Mailbox, None, b"{"), Effects::default());
    }

    #[test]
    fn domains_of_senders() {
        assert_eq!(domain_of("a@B.example").as_deref(), Some("b.example"));
        assert_eq!(domain_of(""), None);
        assert_eq!(domain_of("postmaster"), None);
    }
}
