//! The filter's consumer: decode the envelope, judge the message, publish the verdict, then ack.
//!
//! A message whose headers are not a Maildrop envelope can never be judged and is dead-lettered.
//! A message whose body is not valid RFC 5322 is still judged, on its envelope: it is not the
//! filter's place to lose mail because it is malformed. The verdict is published with the message
//! id as `Nats-Msg-Id`, so a redelivered message yields one verdict in the stream.

use std::sync::Arc;

use async_nats::jetstream::{self, message::PublishMessage};
use maildrop_contract::envelope::header;
use maildrop_contract::{Envelope, Verdict, event, subject};
use maildrop_runtime::consume::{Failure, Handler};

use crate::rules::{Inspection, RuleSet};

pub struct FilterHandler {
    js: jetstream::Context,
    rules: Arc<RuleSet>,
}

impl FilterHandler {
    pub fn new(js: jetstream::Context, rules: RuleSet) -> Self {
        Self {
            js,
            rules: Arc::new(rules),
        }
    }
}

/// Judges one message: pure, so replays and tests call it directly.
pub fn judge(rules: &RuleSet, envelope: &Envelope, raw: &[u8], received_seq: u64) -> Verdict {
    let parsed = mail_parser::MessageParser::default().parse(raw);
    let decision = rules.evaluate(&Inspection {
        envelope,
        message: parsed.as_ref(),
        raw,
    });
    Verdict {
        v: event::VERSION,
        id: envelope.id,
        received_seq,
        mailboxes: envelope.mailboxes.clone(),
        accepted: decision.accepted,
        score: decision.score,
        threshold: rules.threshold(),
        hits: decision.hits,
        ruleset: rules.version().to_owned(),
        client_ip: envelope.client_ip.to_string(),
        mail_from: envelope.mail_from.clone(),
        size: envelope.size,
        received_ms: envelope.received_ms,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("message has no NATS headers, so no envelope")]
struct NoHeaders;

impl Handler for FilterHandler {
    async fn handle(&self, msg: &jetstream::Message) -> Result<(), Failure> {
        let headers = msg
            .headers
            .as_ref()
            .ok_or_else(|| Failure::poison(NoHeaders))?;
        let envelope = Envelope::from_headers(headers).map_err(Failure::poison)?;
        let seq = msg.info().map_err(Failure::failed)?.stream_sequence;
        let verdict = judge(&self.rules, &envelope, &msg.payload, seq);
        let payload = serde_json::to_vec(&verdict).map_err(Failure::failed)?;
        self.js
            .send_publish(
                subject::verdict(verdict.accepted),
                PublishMessage::build()
                    .payload(payload.into())
                    .message_id(envelope.id.to_string())
                    .header(header::ID, envelope.id.to_string().as_str()),
            )
            .await
            .map_err(Failure::transient)?
            .await
            .map_err(Failure::transient)?;
        tracing::info!(
            msg_id = %envelope.id,
            accepted = verdict.accepted,
            score = verdict.score,
            rules = ?verdict.hits.iter().map(|h| h.rule.as_str()).collect::<Vec<_>>(),
            "Verdict published."
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleArgs;
    use crate::rules::test_support::envelope;

    #[test]
    fn judging_records_the_ruleset_and_the_envelope() {
        let rules = RuleArgs {
            spam_threshold: 5.0,
            blocked_senders: vec!["@spam.example".into()],
            blocked_sender_score: 10.0,
        }
        .build();
        let env = envelope("x@spam.example");
        let v = judge(&rules, &env, b"Subject: hi\r\n\r\nbody\r\n", 7);
        assert!(!v.accepted);
        assert_eq!(v.received_seq, 7);
        assert_eq!(v.ruleset, rules.version());
        assert_eq!(v.mailboxes, env.mailboxes);
    }

    #[test]
    fn garbage_bytes_are_judged_not_dropped() {
        let rules = RuleArgs {
            spam_threshold: 5.0,
            blocked_senders: vec![],
            blocked_sender_score: 10.0,
        }
        .build();
        let env = envelope("a@b.example");
        let v = judge(&rules, &env, &[0xff, 0xfe, 0x00, b'\n'], 1);
        assert!(v.accepted);
    }
}
