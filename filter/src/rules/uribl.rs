//! `uribl`: the body links to a domain on a URI blocklist.
//!
//! The domains linked from the text and HTML parts, reduced to their registrable domain and
//! capped at `max_lookups` per message ([`crate::gather::links`]), are asked of each zone
//! (`spam-shop.example.dbl.spamhaus.org`) before the rules run. Every zone that lists at least one
//! of them adds its weight once (a message with ten listed links is no more spam than one with
//! two); the reason names each listed domain with its zone and answer.
//!
//! What counts as listed: an answer in `127.0.0.0/8` except `127.0.0.1` (URIBL's and SURBL's
//! "your queries are refused": they answer it for every name to a blocked resolver),
//! `127.255.255.0/24` (Spamhaus's error codes) and addresses ending in `.255` (Spamhaus DBL's
//! `127.0.1.255`, "IP queries prohibited"). Anything else is "no answer".

use serde::{Deserialize, Serialize};

use super::dnsbl::Zone;
use super::{Hit, Inspection, Rule};

/// `[uribl]` in the rule file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UriblSettings {
    pub enabled: bool,
    /// The zones asked about every linked domain, each with the weight of a listing.
    pub zones: Vec<Zone>,
    /// Distinct linked domains looked up per message (the first ones in the message).
    pub max_lookups: usize,
}

impl Default for UriblSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            zones: vec![
                Zone::new("dbl.spamhaus.org", 5.0),
                Zone::new("multi.uribl.com", 3.0),
                Zone::new("multi.surbl.org", 3.0),
            ],
            max_lookups: 10,
        }
    }
}

pub struct Uribl {
    settings: UriblSettings,
}

impl Uribl {
    pub fn new(settings: UriblSettings) -> Self {
        Self { settings }
    }
}

impl Rule for Uribl {
    fn name(&self) -> &'static str {
        "uribl"
    }

    fn fingerprint(&self) -> String {
        serde_json::to_string(&self.settings).unwrap_or_default()
    }

    fn check(&self, input: &Inspection<'_>) -> Option<Hit> {
        let facts = input.facts.dns.uribl.as_ref()?;
        let mut score = 0.0;
        let mut reasons = Vec::new();
        for zone in &self.settings.zones {
            let listed: Vec<String> = facts
                .listed
                .iter()
                .filter(|l| l.zone == zone.zone)
                .map(|l| format!("{} ({})", l.domain, l.answer))
                .collect();
            if listed.is_empty() || zone.weight == 0.0 {
                continue;
            }
            score += zone.weight;
            reasons.push(format!("{} on {}", listed.join(", "), zone.zone));
        }
        (!reasons.is_empty()).then(|| Hit::new(score, format!("links to {}", reasons.join("; "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Facts;
    use crate::gather::{UriListing, UriblFacts};
    use crate::rules::test_support::envelope;

    fn listing(domain: &str, zone: &str) -> UriListing {
        UriListing {
            domain: domain.into(),
            zone: zone.into(),
            answer: [127, 0, 1, 2].into(),
        }
    }

    fn check(listed: Vec<UriListing>) -> Option<Hit> {
        let mut facts = Facts::default();
        facts.dns.uribl = Some(UriblFacts {
            checked: listed.len(),
            listed,
            unanswered: 0,
        });
        let env = envelope("a@b.example");
        Uribl::new(UriblSettings::default()).check(&Inspection {
            envelope: &env,
            message: None,
            raw: b"",
            facts: &facts,
        })
    }

    #[test]
    fn each_zone_counts_once_and_names_its_domains() {
        let hit = check(vec![
            listing("spam.example", "dbl.spamhaus.org"),
            listing("more-spam.example", "dbl.spamhaus.org"),
            listing("spam.example", "multi.surbl.org"),
        ])
        .unwrap();
        assert_eq!(hit.score, 8.0);
        assert_eq!(
            hit.reason,
            "links to spam.example (127.0.1.2), more-spam.example (127.0.1.2) on dbl.spamhaus.org; \
             spam.example (127.0.1.2) on multi.surbl.org"
        );
        assert_eq!(hit.block_client, None);
    }

    #[test]
    fn no_listing_no_hit() {
        assert_eq!(check(vec![]), None);
        assert_eq!(check(vec![listing("x.example", "other.zone")]), None);
    }
}
