//! `blocked_sender`: the envelope sender is on a configured list of addresses or domains.
//!
//! The envelope sender (`MAIL FROM`), not the `From` header: it is what the sending system
//! committed to in the SMTP session, and what an operator sees in the logs.
//!
//! This list is static: part of the rule file, so it is versioned with the rule set and a replay
//! sees the same list. The lists an operator edits at run time (`maildrop-filter block …`) are
//! the [`blocklist`](super::blocklist) rule's, kept in Redis.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Hit, Inspection, Rule};

/// `[blocked_sender]` in the rule file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlockedSenderSettings {
    pub enabled: bool,
    /// Score of a blocked sender.
    pub weight: f64,
    /// `user@domain` or `@domain`, case-insensitive.
    pub senders: Vec<String>,
}

impl Default for BlockedSenderSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            weight: 10.0,
            senders: Vec::new(),
        }
    }
}

pub struct BlockedSender {
    addresses: BTreeSet<String>,
    /// Domains, without the `@`.
    domains: BTreeSet<String>,
    score: f64,
}

impl BlockedSender {
    /// `entries` are `user@domain` or `@domain`; blanks are ignored; matching is case-insensitive.
    pub fn new(entries: &[String], score: f64) -> Self {
        let mut addresses = BTreeSet::new();
        let mut domains = BTreeSet::new();
        for entry in entries.iter().map(|e| e.trim().to_ascii_lowercase()) {
            if let Some(domain) = entry.strip_prefix('@') {
                if !domain.is_empty() {
                    domains.insert(domain.to_owned());
                }
            } else if !entry.is_empty() {
                addresses.insert(entry);
            }
        }
        Self {
            addresses,
            domains,
            score,
        }
    }
}

impl Rule for BlockedSender {
    fn name(&self) -> &'static str {
        "blocked_sender"
    }

    fn fingerprint(&self) -> String {
        let addresses: Vec<&str> = self.addresses.iter().map(String::as_str).collect();
        let domains: Vec<&str> = self.domains.iter().map(String::as_str).collect();
        format!(
            "score={};addresses={};domains={}",
            self.score,
            addresses.join(","),
            domains.join(",")
        )
    }

    fn check(&self, input: &Inspection<'_>) -> Option<Hit> {
        let sender = input.envelope.mail_from.to_ascii_lowercase();
        let domain = sender.rsplit_once('@').map(|(_, d)| d)?;
        if self.addresses.contains(&sender) {
            return Some(Hit::new(self.score, format!("sender {sender} is blocked")));
        }
        if self.domains.contains(domain) {
            return Some(Hit::new(
                self.score,
                format!("sender domain {domain} is blocked"),
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::test_support::envelope;

    fn rule(entries: &[&str]) -> BlockedSender {
        BlockedSender::new(
            &entries.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            10.0,
        )
    }

    fn check(rule: &BlockedSender, from: &str) -> Option<Hit> {
        let env = envelope(from);
        rule.check(&Inspection {
            envelope: &env,
            message: None,
            raw: b"",
            facts: &crate::facts::Facts::default(),
        })
    }

    #[test]
    fn matches_whole_addresses_and_domains_case_insensitively() {
        let r = rule(&["spam@example.com", "@Bad.Example", " ", "@"]);
        assert!(check(&r, "SPAM@example.com").is_some());
        assert!(
            check(&r, "anyone@bad.example")
                .unwrap()
                .reason
                .contains("bad.example")
        );
        assert!(check(&r, "ham@example.com").is_none());
        assert!(check(&r, "x@notbad.example").is_none());
    }

    #[test]
    fn the_null_sender_is_never_blocked_by_address() {
        assert!(check(&rule(&["@example.com"]), "").is_none());
    }
}
