//! `blocklist`: the message matches an entry of the run-time blocklists kept in Redis.
//!
//! Four lists, edited while the filter runs with `maildrop-filter block add|remove|list` (see
//! [`crate::admin`] and `maildrop_store::blocklist` for how each matches): envelope sender
//! address, sender domain (and every domain below it), client IP or CIDR network, and subject
//! (a case-folded substring). The lookups are made before evaluation and arrive here as
//! [`ListMatches`](crate::facts::ListMatches); this rule only weighs them. Each matching list adds
//! its weight; the reason names every entry that matched, so an operator sees which one to lift.
//!
//! Unlike the rule file's static `[blocked_sender]` list, these lists are not part of the rule
//! set's version: they change without a reload, and a replay sees them as they are now.

use serde::{Deserialize, Serialize};

use super::{Hit, Inspection, Rule};

/// `[blocklist]` in the rule file: a weight per list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlocklistSettings {
    pub enabled: bool,
    pub sender: f64,
    pub domain: f64,
    pub ip: f64,
    pub subject: f64,
}

impl Default for BlocklistSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            sender: 10.0,
            domain: 10.0,
            ip: 10.0,
            subject: 10.0,
        }
    }
}

pub struct Blocklist {
    settings: BlocklistSettings,
}

impl Blocklist {
    pub fn new(settings: BlocklistSettings) -> Self {
        Self { settings }
    }
}

impl Rule for Blocklist {
    fn name(&self) -> &'static str {
        "blocklist"
    }

    fn fingerprint(&self) -> String {
        serde_json::to_string(&self.settings).unwrap_or_default()
    }

    fn check(&self, input: &Inspection<'_>) -> Option<Hit> {
        let m = input.facts.lists.as_ref()?;
        let s = &self.settings;
        let found: Vec<(f64, String)> = [
            (s.sender, m.sender.as_ref().map(|e| format!("sender {e}"))),
            (s.domain, m.domain.as_ref().map(|e| format!("domain {e}"))),
            (s.ip, m.ip.as_ref().map(|e| format!("client {e}"))),
            (
                s.subject,
                m.subject.as_ref().map(|e| format!("subject {e:?}")),
            ),
        ]
        .into_iter()
        .filter_map(|(w, r)| Some((w, r?)))
        .collect();
        if found.is_empty() {
            return None;
        }
        let score = found.iter().fold(0.0, |acc, (w, _)| acc + w);
        let reason = found
            .into_iter()
            .map(|(_, r)| r)
            .collect::<Vec<_>>()
            .join(", ");
        Some(Hit::new(score, format!("blocked: {reason}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{Facts, ListMatches};
    use crate::rules::test_support::envelope;

    fn check(facts: &Facts) -> Option<Hit> {
        let env = envelope("a@example.org");
        Blocklist::new(BlocklistSettings::default()).check(&Inspection {
            envelope: &env,
            message: None,
            raw: b"",
            facts,
        })
    }

    #[test]
    fn nothing_looked_up_is_no_hit() {
        assert_eq!(check(&Facts::default()), None);
        let none = Facts {
            lists: Some(ListMatches::default()),
            ..Default::default()
        };
        assert_eq!(check(&none), None);
    }

    #[test]
    fn every_matching_list_adds_its_weight_and_is_named() {
        let facts = Facts {
            lists: Some(ListMatches {
                ip: Some("203.0.113.0/24".into()),
                subject: Some("cheap pills".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let hit = check(&facts).unwrap();
        assert_eq!(hit.score, 20.0);
        assert_eq!(
            hit.reason,
            "blocked: client 203.0.113.0/24, subject \"cheap pills\""
        );
    }
}
