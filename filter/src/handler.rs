//! The filter's consumer: decode the envelope, gather facts, judge the message, apply feedback,
//! publish the verdict, then ack.
//!
//! A message whose headers are not a Maildrop envelope can never be judged and is dead-lettered.
//! A message whose body is not valid RFC 5322 is still judged, on its envelope: it is not the
//! filter's place to lose mail because it is malformed. The verdict is published with the message
//! id as `Nats-Msg-Id`, so a redelivered message yields one verdict in the stream.
//!
//! Each message is judged by the rule set in force when it is taken up ([`LiveRules::current`]),
//! from gathering to verdict, so a reload in the middle cannot mix two sets. Redis being down while
//! facts are gathered or feedback is written is transient (nak and retry): flood counts are
//! idempotent on the message id, and a block only ever lengthens, so a retry repeats nothing.
//!
//! A shadow handler ([`FilterHandler::shadow`]) publishes to `maildrop.shadow.verdict.*` instead,
//! writes no block, and counts no flood: the flood counts and bans are Redis state production
//! reads, and a candidate's different limits would start bans production would then enforce. Its
//! flood rule therefore has no counts and never hits; the run-time blocklists (read only) and DNS
//! facts (the shared verdict cache holds facts, not verdicts) are gathered as in production.

use std::sync::Arc;

use async_nats::jetstream::{self, message::PublishMessage};
use maildrop_contract::envelope::header;
use maildrop_contract::{Envelope, Verdict, event, subject};
use maildrop_runtime::consume::{Failure, Handler};
use maildrop_store::PolicyStore;

use crate::facts::{Facts, RedisFacts};
use crate::feedback;
use crate::gather::DnsGatherer;
use crate::reload::LiveRules;
use crate::rspamd::RspamdGatherer;
use crate::rules::{BlockClient, Inspection, RuleSet};

pub struct FilterHandler {
    js: jetstream::Context,
    rules: Arc<LiveRules>,
    redis: RedisFacts,
    policy: PolicyStore,
    /// DNS facts, through the shared resolver and the verdict cache.
    dns: DnsGatherer,
    /// rspamd's answer, when an rspamd is configured.
    rspamd: RspamdGatherer,
    /// Shadow mode: publish to the research subjects only, with no side effects.
    shadow: bool,
}

impl FilterHandler {
    pub fn new(
        js: jetstream::Context,
        rules: Arc<LiveRules>,
        redis: maildrop_store::Redis,
        dns: DnsGatherer,
    ) -> Self {
        Self {
            js,
            rules,
            redis: RedisFacts::new(redis.clone()),
            policy: PolicyStore::new(redis),
            dns,
            rspamd: RspamdGatherer::off(),
            shadow: false,
        }
    }

    /// Shadow mode (`--shadow`): verdicts to `maildrop.shadow.verdict.*` only, no block written,
    /// no flood counted.
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self.redis = self.redis.counting_floods(!shadow);
        self
    }

    /// Also asks rspamd about every message (its answer is gathered beside the DNS facts).
    pub fn with_rspamd(mut self, rspamd: RspamdGatherer) -> Self {
        self.rspamd = rspamd;
        self
    }
}

/// A verdict and the feedback that goes with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    /// Refuse the client at connect (only ever on a rejection).
    pub block_client: Option<BlockClient>,
}

/// Judges one message on the facts gathered for it: pure, so replays and tests call it directly.
pub fn judge(
    rules: &RuleSet,
    envelope: &Envelope,
    message: Option<&mail_parser::Message<'_>>,
    raw: &[u8],
    received_seq: u64,
    facts: &Facts,
) -> Judgement {
    let decision = rules.evaluate(&Inspection {
        envelope,
        message,
        raw,
        facts,
    });
    Judgement {
        verdict: Verdict {
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
        },
        block_client: decision.block_client,
    }
}

/// Parses `raw` and judges it with no gathered facts (what a replay without Redis or DNS sees).
pub fn judge_raw(rules: &RuleSet, envelope: &Envelope, raw: &[u8], received_seq: u64) -> Verdict {
    let parsed = mail_parser::MessageParser::default().parse(raw);
    judge(
        rules,
        envelope,
        parsed.as_ref(),
        raw,
        received_seq,
        &Facts::default(),
    )
    .verdict
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
        let rules = self.rules.current();
        let parsed = mail_parser::MessageParser::default().parse(&msg.payload[..]);

        let mut facts = Facts::default();
        // Redis, DNS and rspamd at once; DNS and rspamd never fail (what they cannot answer by
        // their deadline or timeout is left out), Redis being down is transient.
        let mut dns = Facts::default();
        let (redis, (), rspamd) = tokio::join!(
            self.redis
                .gather(&rules, &envelope, parsed.as_ref(), &mut facts),
            self.dns
                .gather(&rules, &envelope, &msg.payload, parsed.as_ref(), &mut dns),
            self.rspamd.gather(&rules, &envelope, &msg.payload),
        );
        redis.map_err(Failure::transient)?;
        facts.dns = dns.dns;
        facts.rspamd = rspamd;

        let Judgement {
            verdict,
            block_client,
        } = judge(
            &rules,
            &envelope,
            parsed.as_ref(),
            &msg.payload,
            seq,
            &facts,
        );
        if let Some(block) = block_client.as_ref().filter(|_| !self.shadow) {
            feedback::block_client(&self.policy, envelope.client_ip, block)
                .await
                .map_err(Failure::transient)?;
        }
        let payload = serde_json::to_vec(&verdict).map_err(Failure::failed)?;
        let subject = if self.shadow {
            subject::shadow_verdict(verdict.accepted)
        } else {
            subject::verdict(verdict.accepted)
        };
        self.js
            .send_publish(
                subject,
                PublishMessage::build()
                    .payload(payload.into())
                    .message_id(envelope.id.to_string())
                    .header(header::ID, envelope.id.to_string().as_str()),
            )
            .await
            .map_err(Failure::transient)?
            .await
            .map_err(Failure::transient)?;
        let decided = if verdict.accepted {
            "accepted"
        } else {
            "rejected"
        };
        metrics::counter!("maildrop_filter_verdicts_total", "verdict" => decided).increment(1);
        for hit in &verdict.hits {
            metrics::counter!("maildrop_filter_rule_hits_total", "rule" => hit.rule.clone())
                .increment(1);
        }
        tracing::info!(
            shadow = self.shadow,
            msg_id = %envelope.id,
            accepted = verdict.accepted,
            score = verdict.score,
            ruleset = %verdict.ruleset,
            rules = ?verdict.hits.iter().map(|h| h.rule.as_str()).collect::<Vec<_>>(),
            "Verdict published."
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::test_support::envelope;
    use crate::ruleset::{Context, RuleSetFile};

    fn rules(blocked: &[&str]) -> RuleSet {
        let mut file = RuleSetFile::default();
        file.blocked_sender.senders = blocked.iter().map(|s| s.to_string()).collect();
        file.build(&Context::default()).unwrap()
    }

    #[test]
    fn judging_records_the_ruleset_and_the_envelope() {
        let rules = rules(&["@spam.example"]);
        let env = envelope("x@spam.example");
        let v = judge_raw(&rules, &env, b"Subject: hi\r\n\r\nbody\r\n", 7);
        assert!(!v.accepted);
        assert_eq!(v.received_seq, 7);
        assert_eq!(v.ruleset, rules.version());
        assert_eq!(v.mailboxes, env.mailboxes);
    }

    #[test]
    fn garbage_bytes_are_judged_not_dropped() {
        let rules = rules(&[]);
        let env = envelope("a@b.example");
        let v = judge_raw(&rules, &env, &[0xff, 0xfe, 0x00, b'\n'], 1);
        assert!(v.accepted);
    }
}
