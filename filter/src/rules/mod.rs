//! The rule engine.
//!
//! A rule is a pure function over an [`Inspection`]: it looks at the envelope and the parsed
//! message and returns a [`Hit`] (a score and a reason) or nothing. It does no I/O; what a rule needs
//! from outside (lists, DNS answers) is given to it when the rule set is built or gathered into the
//! inspection beforehand. That keeps every rule testable on a message in memory, and lets the same
//! rules run on live traffic and on a replay.
//!
//! A [`RuleSet`] runs every rule, adds the scores, and rejects at or above its threshold. Its
//! version is a hash of its whole configuration, recorded in every verdict, so a verdict can always
//! be traced to the rules that made it. New rules are a file in this folder and a line in
//! [`RuleArgs::build`].

mod blocked_sender;

pub use blocked_sender::BlockedSender;

use clap::Args;
use maildrop_contract::{Envelope, RuleHit};

/// What a rule looks at.
pub struct Inspection<'a> {
    pub envelope: &'a Envelope,
    /// The parsed message; `None` when the bytes are not a message mail-parser can read (the
    /// message is still judged, on its envelope).
    pub message: Option<&'a mail_parser::Message<'a>>,
    pub raw: &'a [u8],
}

/// A rule's finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub score: f64,
    pub reason: String,
}

pub trait Rule: Send + Sync {
    /// A stable name (`snake_case`), used in verdicts and statistics.
    fn name(&self) -> &'static str;
    /// A canonical description of the rule's configuration, hashed into the rule set's version.
    fn fingerprint(&self) -> String;
    fn check(&self, input: &Inspection<'_>) -> Option<Hit>;
}

/// The outcome of a rule set over one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub accepted: bool,
    pub score: f64,
    pub hits: Vec<RuleHit>,
}

/// Rules, a threshold, and a version.
pub struct RuleSet {
    rules: Vec<Box<dyn Rule>>,
    threshold: f64,
    version: String,
}

impl RuleSet {
    pub fn new(rules: Vec<Box<dyn Rule>>, threshold: f64) -> Self {
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
        }
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn evaluate(&self, input: &Inspection<'_>) -> Decision {
        let hits: Vec<RuleHit> = self
            .rules
            .iter()
            .filter_map(|rule| {
                rule.check(input).map(|hit| RuleHit {
                    rule: rule.name().to_owned(),
                    score: hit.score,
                    reason: hit.reason,
                })
            })
            .collect();
        // A fold from +0.0: `sum()` of no floats is -0.0, which would show as "-0" in a verdict.
        let score = hits.iter().fold(0.0, |acc, h| acc + h.score);
        Decision {
            accepted: score < self.threshold,
            score,
            hits,
        }
    }
}

/// FNV-1a, 64 bits: a hash that stays the same across Rust versions and platforms, so a rule
/// set's version does not change with the compiler.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The rule set's settings.
#[derive(Debug, Clone, Args)]
pub struct RuleArgs {
    /// Score at or above which a message is rejected.
    #[arg(long, env = "MAILDROP_SPAM_THRESHOLD", default_value_t = 5.0)]
    pub spam_threshold: f64,
    /// Blocked envelope senders, comma-separated: whole addresses (`spam@example.com`) or whole
    /// domains (`@example.com`), case-insensitive.
    #[arg(long, env = "MAILDROP_BLOCKED_SENDERS", value_delimiter = ',', num_args = 0..)]
    pub blocked_senders: Vec<String>,
    /// Score a blocked sender adds.
    #[arg(long, env = "MAILDROP_BLOCKED_SENDER_SCORE", default_value_t = 10.0)]
    pub blocked_sender_score: f64,
}

impl RuleArgs {
    pub fn build(&self) -> RuleSet {
        RuleSet::new(
            vec![Box::new(BlockedSender::new(
                &self.blocked_senders,
                self.blocked_sender_score,
            ))],
            self.spam_threshold,
        )
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

    fn args(blocked: &[&str]) -> RuleArgs {
        RuleArgs {
            spam_threshold: 5.0,
            blocked_senders: blocked.iter().map(|s| s.to_string()).collect(),
            blocked_sender_score: 10.0,
        }
    }

    #[test]
    fn a_blocked_sender_is_rejected_with_its_reason() {
        let rules = args(&["spam@example.com"]).build();
        let env = envelope("Spam@Example.com");
        let d = rules.evaluate(&Inspection {
            envelope: &env,
            message: None,
            raw: b"",
        });
        assert!(!d.accepted);
        assert_eq!(d.score, 10.0);
        assert_eq!(d.hits[0].rule, "blocked_sender");
    }

    #[test]
    fn other_senders_pass() {
        let rules = args(&["spam@example.com"]).build();
        let env = envelope("alice@example.org");
        let d = rules.evaluate(&Inspection {
            envelope: &env,
            message: None,
            raw: b"",
        });
        assert!(d.accepted);
        assert!(d.hits.is_empty());
    }

    #[test]
    fn the_version_follows_the_configuration() {
        let a = args(&["a@x"]).build();
        assert_eq!(a.version(), args(&["a@x"]).build().version());
        assert_ne!(a.version(), args(&["b@x"]).build().version());
        assert_eq!(a.version().len(), 16);
    }
}
