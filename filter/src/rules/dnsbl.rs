//! `dnsbl`: the client IP is on a DNS blocklist.
//!
//! Each configured zone is asked about the client IP (IPv4 as reversed octets,
//! `7.113.0.203.zen.spamhaus.org`; IPv6 as 32 reversed nibbles) before the rules run
//! ([`crate::gather`]); a zone that lists it adds its weight, and the reason names every zone
//! and its answer (`127.0.0.2`: the answer says *why*, in each list's own code). A listed
//! client whose message is rejected is also refused at connect for `block_for` (see
//! [`BlockClient`](super::BlockClient)): its next connection gets `554` before it can send
//! anything, and the lists are not asked again meanwhile.
//!
//! What counts as listed: an answer in `127.0.0.0/8` other than `127.255.255.0/24`, which is
//! Spamhaus's range for errors (`127.255.255.254`: "you query through an open resolver",
//! `127.255.255.252`: "typo in the zone name"), not listings. Answers outside `127.0.0.0/8` (an
//! ISP resolver's "NXDOMAIN redirect" to an advertising host, say) are not listings either; both
//! count as "no answer". Private, loopback and link-local clients are not looked up at all unless
//! `check_private` is set: no public list knows them, and asking leaks internal addresses.
//!
//! The old service's zones are the default, with weights chosen so that Spamhaus ZEN alone (the
//! most careful list) rejects and any other list needs a second opinion (two lists, or one list
//! and another finding).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Hit, Inspection, Rule};

/// A DNS zone to ask, and what a listing on it weighs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub zone: String,
    pub weight: f64,
}

impl Zone {
    pub fn new(zone: &str, weight: f64) -> Self {
        Self {
            zone: zone.to_owned(),
            weight,
        }
    }
}

/// `[dnsbl]` in the rule file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsblSettings {
    pub enabled: bool,
    /// The zones asked about every client IP, each with the weight of a listing.
    pub zones: Vec<Zone>,
    /// How long a listed client whose message is rejected is refused at connect; `0s`: never.
    #[serde(with = "super::duration")]
    pub block_for: Duration,
    /// Also look up private, loopback and link-local client addresses.
    pub check_private: bool,
}

impl Default for DnsblSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            zones: vec![
                Zone::new("zen.spamhaus.org", 5.0),
                Zone::new("bl.mailspike.net", 2.5),
                Zone::new("bb.barracudacentral.org", 2.5),
                Zone::new("psbl.surriel.com", 2.5),
                Zone::new("dnsbl.sorbs.net", 2.5),
                Zone::new("bl.score.senderscore.com", 2.5),
            ],
            block_for: Duration::from_secs(3600),
            check_private: false,
        }
    }
}

impl DnsblSettings {
    /// What shaped the gathered listings (the zones asked and whether private clients are),
    /// for the verdict cache: listings gathered under other settings are not reused.
    pub fn cache_key(&self) -> String {
        let zones: Vec<&str> = self.zones.iter().map(|z| z.zone.as_str()).collect();
        format!("dnsbl:{};private={}", zones.join(","), self.check_private)
    }
}

pub struct Dnsbl {
    settings: DnsblSettings,
}

impl Dnsbl {
    pub fn new(settings: DnsblSettings) -> Self {
        Self { settings }
    }
}

impl Rule for Dnsbl {
    fn name(&self) -> &'static str {
        "dnsbl"
    }

    fn fingerprint(&self) -> String {
        serde_json::to_string(&self.settings).unwrap_or_default()
    }

    fn check(&self, input: &Inspection<'_>) -> Option<Hit> {
        let facts = input.facts.dns.dnsbl.as_ref()?;
        let mut score = 0.0;
        let mut reasons = Vec::new();
        for listing in &facts.listed {
            let Some(zone) = self.settings.zones.iter().find(|z| z.zone == listing.zone) else {
                continue;
            };
            if zone.weight == 0.0 {
                continue;
            }
            score += zone.weight;
            reasons.push(format!("{} ({})", listing.zone, listing.answer));
        }
        if reasons.is_empty() {
            return None;
        }
        let hit = Hit::new(
            score,
            format!(
                "client {} listed on {}",
                input.envelope.client_ip,
                reasons.join(", ")
            ),
        );
        Some(if self.settings.block_for.is_zero() {
            hit
        } else {
            hit.blocking_client(self.settings.block_for)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Facts;
    use crate::gather::{DnsblFacts, Listing};
    use crate::rules::test_support::envelope;

    fn check(settings: DnsblSettings, listed: &[(&str, [u8; 4])]) -> Option<Hit> {
        let mut facts = Facts::default();
        facts.dns.dnsbl = Some(DnsblFacts {
            listed: listed
                .iter()
                .map(|(zone, answer)| Listing {
                    zone: (*zone).to_owned(),
                    answer: (*answer).into(),
                })
                .collect(),
            unanswered: vec![],
        });
        let env = envelope("a@b.example");
        Dnsbl::new(settings).check(&Inspection {
            envelope: &env,
            message: None,
            raw: b"",
            facts: &facts,
        })
    }

    #[test]
    fn each_listing_adds_its_zone_s_weight_and_names_it() {
        let hit = check(
            DnsblSettings::default(),
            &[
                ("zen.spamhaus.org", [127, 0, 0, 2]),
                ("psbl.surriel.com", [127, 0, 0, 2]),
            ],
        )
        .unwrap();
        assert_eq!(hit.score, 7.5);
        assert_eq!(
            hit.reason,
            "client 192.0.2.1 listed on zen.spamhaus.org (127.0.0.2), psbl.surriel.com (127.0.0.2)"
        );
        assert_eq!(hit.block_client, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn nothing_listed_or_not_looked_up_is_no_hit() {
        assert_eq!(check(DnsblSettings::default(), &[]), None);
        let env = envelope("a@b.example");
        let none = Dnsbl::new(DnsblSettings::default()).check(&Inspection {
            envelope: &env,
            message: None,
            raw: b"",
            facts: &Facts::default(),
        });
        assert_eq!(none, None);
    }

    #[test]
    fn zones_no_longer_configured_or_weighted_zero_do_not_count() {
        let settings = DnsblSettings {
            zones: vec![Zone::new("a.test", 0.0), Zone::new("b.test", 3.0)],
            block_for: Duration::ZERO,
            ..DnsblSettings::default()
        };
        let hit = check(
            settings,
            &[
                ("a.test", [127, 0, 0, 2]),
                ("b.test", [127, 0, 0, 4]),
                ("gone.test", [127, 0, 0, 2]),
            ],
        )
        .unwrap();
        assert_eq!(hit.score, 3.0);
        assert!(hit.reason.ends_with("listed on b.test (127.0.0.4)"));
        assert_eq!(hit.block_client, None);
    }

    #[test]
    fn the_cache_key_follows_the_zones() {
        let a = DnsblSettings::default();
        let mut b = a.clone();
        b.zones[0].weight = 1.0;
        assert_eq!(
            a.cache_key(),
            b.cache_key(),
            "weights do not change what was asked"
        );
        b.zones.pop();
        assert_ne!(a.cache_key(), b.cache_key());
    }
}
