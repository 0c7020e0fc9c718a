//! The rule engine.
//!
//! A rule is a pure function over an [`Inspection`]: it looks at the envelope, the parsed message
//! and the [`Facts`] gathered for it, and returns a [`Hit`] (a score and a reason) or nothing. It
//! does no I/O: what a rule needs from outside (Redis lists, flood counts, DNS answers) is gathered
//! into the inspection's [`Facts`] before evaluation ([`crate::facts`]). That keeps every rule
//! testable on a message in memory, and lets the same rules run on live traffic and on a replay.
//!
//! A [`RuleSet`] runs every enabled rule, adds the scores, and rejects at or above its threshold.
//! It is built from a [`RuleSetFile`](crate::ruleset::RuleSetFile) (a TOML file, or the built-in
//! defaults); its version is a hash of the canonical configuration of its enabled rules, recorded
//! in every verdict, so a verdict can always be traced to the rules that made it.
//!
//! Adding a rule: a file in this folder with the rule and its settings struct (serde, `Default`
//! = the built-in default, `enabled` and its weights), a field in
//! [`RuleSetFile`](crate::ruleset::RuleSetFile), and a line in its `build`.

pub mod blocked_sender;
pub mod blocklist;
pub mod dkim;
pub mod dmarc;
pub mod dnsbl;
pub mod flood;
pub mod header_sanity;
pub mod rspamd;
pub mod spf;
pub mod uribl;

pub use blocked_sender::BlockedSender;

use std::time::Duration;

use maildrop_contract::{Envelope, RuleHit};

pub use crate::facts::Facts;

/// What a rule looks at.
pub struct Inspection<'a> {
    pub envelope: &'a Envelope,
    /// The parsed message; `None` when the bytes are not a message mail-parser can read (the
    /// message is still judged, on its envelope).
    pub message: Option<&'a mail_parser::Message<'a>>,
    pub raw: &'a [u8],
    /// What was looked up for this message before evaluation (Redis lists, flood counts, DNS).
    pub facts: &'a Facts,
}

/// A rule's finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub score: f64,
    pub reason: String,
    /// Ask for the client IP to be refused at connect for this long (see [`BlockClient`]).
    pub block_client: Option<Duration>,
}

impl Hit {
    pub fn new(score: f64, reason: impl Into<String>) -> Self {
        Self {
            score,
            reason: reason.into(),
            block_client: None,
        }
    }

    /// The hit also asks for the client IP to be blocked at connect for `ttl`.
    pub fn blocking_client(mut self, ttl: Duration) -> Self {
        self.block_client = Some(ttl);
        self
    }
}

pub trait Rule: Send + Sync {
    /// A stable name (`snake_case`), used in verdicts, statistics and as the rule file's section.
    fn name(&self) -> &'static str;
    /// A canonical description of the rule's configuration, hashed into the rule set's version.
    fn fingerprint(&self) -> String;
    fn check(&self, input: &Inspection<'_>) -> Option<Hit>;
}

/// Feedback to the ingest: refuse this message's client IP at connect, for `ttl`.
///
/// Only a *rejected* verdict carries it: a rule weighted so low that it cannot reject on its own
/// (a rule being tried out) does not block anybody either.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockClient {
    pub ttl: Duration,
    /// `<rule>: <reason>` of the hit that asked for the longest block; told to the client in the
    /// ingest's `554`.
    pub reason: String,
}

/// The outcome of a rule set over one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub accepted: bool,
    pub score: f64,
    pub hits: Vec<RuleHit>,
    pub block_client: Option<BlockClient>,
}

/// Rules, a threshold, and a version.
pub struct RuleSet {
    rules: Vec<Box<dyn Rule>>,
    threshold: f64,
    version: String,
    settings: crate::ruleset::RuleSetFile,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("version", &self.version)
            .field("threshold", &self.threshold)
            .field("rules", &self.names().collect::<Vec<_>>())
            .finish()
    }
}

impl RuleSet {
    /// A rule set of `rules`, remembering the `settings` they were built from (the facts
    /// gatherers read their settings there).
    pub fn new(
        rules: Vec<Box<dyn Rule>>,
        threshold: f64,
        settings: crate::ruleset::RuleSetFile,
    ) -> Self {
        let mut canonical = format!("threshold={threshold}\n");
        for rule in &rules {
            canonical.push_str(rule.name());
            canonical.push('=');
            canonical.push_str(&rule.fingerprint());
            canonical.push('\n');
        }
        Self {
            version: format!("{:016x}", fnv1a(canonical.as_bytes())),
            rules,
            threshold,
            settings,
        }
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The settings this set was built from (disabled rules included).
    pub fn settings(&self) -> &crate::ruleset::RuleSetFile {
        &self.settings
    }

    /// The names of the enabled rules, in evaluation order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.rules.iter().map(|r| r.name())
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn evaluate(&self, input: &Inspection<'_>) -> Decision {
        let mut block: Option<BlockClient> = None;
        let hits: Vec<RuleHit> = self
            .rules
            .iter()
            .filter_map(|rule| {
                let hit = rule.check(input)?;
                if let Some(ttl) = hit.block_client
                    && block.as_ref().is_none_or(|b| b.ttl < ttl)
                {
                    block = Some(BlockClient {
                        ttl,
                        reason: format!("{}: {}", rule.name(), hit.reason),
                    });
                }
                Some(RuleHit {
                    rule: rule.name().to_owned(),
                    score: hit.score,
                    reason: hit.reason,
                })
            })
            .collect();
        // A fold from +0.0: `sum()` of no floats is -0.0, which would show as "-0" in a verdict.
        let score = hits.iter().fold(0.0, |acc, h| acc + h.score);
        let accepted = score < self.threshold;
        Decision {
            accepted,
            score,
            hits,
            block_client: if accepted { None } else { block },
        }
    }
}

/// FNV-1a, 64 bits: a hash that stays the same across Rust versions and platforms, so a rule
/// set's version does not change with the compiler.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `serde` for a [`Duration`] written as people write it (`"2m"`, `"24h"`), via humantime.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use maildrop_contract::{Envelope, Mailbox, MessageId};

    pub fn envelope(mail_from: &str) -> Envelope {
        Envelope {
            id: MessageId::new(),
            client_ip: "192.0.2.1".parse().unwrap(),
            helo: "client.example".into(),
            mail_from: mail_from.into(),
            rcpt_to: vec!["bob@maildrop.localhost".into()],
            mailboxes: vec![Mailbox::parse("bob").unwrap()],
            received_ms: 0,
            size: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::envelope;
    use super::*;
    use crate::ruleset::{Context, RuleSetFile};

    fn rules(blocked: &[&str]) -> RuleSet {
        let mut file = RuleSetFile::default();
        file.blocked_sender.senders = blocked.iter().map(|s| s.to_string()).collect();
        file.build(&Context::default()).unwrap()
    }

    fn evaluate(rules: &RuleSet, from: &str, facts: &Facts) -> Decision {
        let env = envelope(from);
        rules.evaluate(&Inspection {
            envelope: &env,
            message: None,
            raw: b"",
            facts,
        })
    }

    #[test]
    fn a_blocked_sender_is_rejected_with_its_reason() {
        let d = evaluate(
            &rules(&["spam@example.com"]),
            "Spam@Example.com",
            &Facts::default(),
        );
        assert!(!d.accepted);
        assert!(d.hits.iter().any(|h| h.rule == "blocked_sender"));
    }

    #[test]
    fn other_senders_pass() {
        let d = evaluate(
            &rules(&["spam@example.com"]),
            "alice@example.org",
            &Facts::default(),
        );
        assert!(d.accepted);
        assert!(d.hits.iter().all(|h| h.rule != "blocked_sender"));
    }

    #[test]
    fn the_version_follows_the_configuration() {
        let a = rules(&["a@x"]);
        assert_eq!(a.version(), rules(&["a@x"]).version());
        assert_ne!(a.version(), rules(&["b@x"]).version());
        assert_eq!(a.version().len(), 16);
    }

    struct Fixed(f64, Option<Duration>);
    impl Rule for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        fn fingerprint(&self) -> String {
            String::new()
        }
        fn check(&self, _: &Inspection<'_>) -> Option<Hit> {
            let hit = Hit::new(self.0, "always");
            Some(match self.1 {
                Some(ttl) => hit.blocking_client(ttl),
                None => hit,
            })
        }
    }

    #[test]
    fn only_a_rejection_blocks_the_client_and_the_longest_block_wins() {
        let long = Duration::from_secs(3600);
        let set = RuleSet::new(
            vec![
                Box::new(Fixed(3.0, Some(Duration::from_secs(60)))),
                Box::new(Fixed(3.0, Some(long))),
            ],
            5.0,
            RuleSetFile::default(),
        );
        let d = evaluate(&set, "a@b.example", &Facts::default());
        assert!(!d.accepted);
        assert_eq!(d.block_client.unwrap().ttl, long);

        let low = RuleSet::new(
            vec![Box::new(Fixed(1.0, Some(long)))],
            5.0,
            RuleSetFile::default(),
        );
        let d = evaluate(&low, "a@b.example", &Facts::default());
        assert!(d.accepted);
        assert_eq!(d.block_client, None);
    }

    #[test]
    fn no_hits_score_positive_zero() {
        let set = RuleSet::new(vec![], 5.0, RuleSetFile::default());
        let d = evaluate(&set, "a@b.example", &Facts::default());
        assert!(d.score.is_sign_positive());
    }
}
