//! `header_sanity`: the message's own headers are missing, malformed, repeated, or forged.
//!
//! Bulk spam software is sloppy where real mail systems are not: it leaves out `Date` or
//! `Message-ID`, writes a `From` nobody can parse, repeats headers RFC 5322 §3.6 allows once, or
//! claims to come from the very domain it is sending to. Each finding adds its own weight; the rule
//! reports one hit with all of them, so a verdict says everything that was wrong at once.
//!
//! - **Missing**: `Date`, `Message-ID`, `From` (RFC 5322 requires `Date` and `From`; every real
//!   mail system adds `Message-ID`).
//! - **Malformed**: a `From` without one parseable `user@domain` address; a `Date` that is not an
//!   RFC 5322 date (mail-parser could not read it, or it names an impossible day or time).
//! - **Repeated**: any of the headers RFC 5322 allows at most once (`Date`, `From`, `Sender`,
//!   `Reply-To`, `To`, `Cc`, `Bcc`, `Message-ID`, `In-Reply-To`, `References`, `Subject`) found
//!   twice or more; each counts once, however often it repeats.
//! - **Forged**: the `From` address is in one of our own domains (`MAILDROP_DOMAINS`) or below
//!   one. Maildrop never sends mail, so no honest message claims to come from it.
//! - A message mail-parser cannot read at all gets only the `unparseable` weight: nothing else can
//!   be said about it.

use std::collections::BTreeMap;

use mail_parser::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::{Hit, Inspection, Rule};

/// `[header_sanity]` in the rule file: one weight per finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeaderSanitySettings {
    pub enabled: bool,
    pub missing_date: f64,
    pub missing_message_id: f64,
    pub missing_from: f64,
    pub malformed_from: f64,
    pub malformed_date: f64,
    /// Added once per single-instance header that appears more than once.
    pub duplicate_header: f64,
    /// `From` in one of our own domains.
    pub forged_from: f64,
    /// The bytes are not a message at all.
    pub unparseable: f64,
}

impl Default for HeaderSanitySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            missing_date: 1.0,
            missing_message_id: 1.0,
            missing_from: 2.0,
            malformed_from: 2.0,
            malformed_date: 1.0,
            duplicate_header: 1.0,
            forged_from: 5.0,
            unparseable: 2.0,
        }
    }
}

/// Headers RFC 5322 §3.6 allows at most once.
const SINGLE: [(&str, HeaderName<'static>); 11] = [
    ("Date", HeaderName::Date),
    ("From", HeaderName::From),
    ("Sender", HeaderName::Sender),
    ("Reply-To", HeaderName::ReplyTo),
    ("To", HeaderName::To),
    ("Cc", HeaderName::Cc),
    ("Bcc", HeaderName::Bcc),
    ("Message-ID", HeaderName::MessageId),
    ("In-Reply-To", HeaderName::InReplyTo),
    ("References", HeaderName::References),
    ("Subject", HeaderName::Subject),
];

pub struct HeaderSanity {
    settings: HeaderSanitySettings,
    /// Our domains, lower-case.
    own_domains: Vec<String>,
}

impl HeaderSanity {
    pub fn new(settings: HeaderSanitySettings, own_domains: &[String]) -> Self {
        let mut own_domains: Vec<String> =
            own_domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        own_domains.sort();
        own_domains.dedup();
        Self {
            settings,
            own_domains,
        }
    }

    fn is_own(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.own_domains.iter().any(|own| {
            domain == *own
                || domain
                    .strip_suffix(own.as_str())
                    .is_some_and(|rest| rest.ends_with('.'))
        })
    }
}

impl Rule for HeaderSanity {
    fn name(&self) -> &'static str {
        "header_sanity"
    }

    fn fingerprint(&self) -> String {
        format!(
            "{};own={}",
            serde_json::to_string(&self.settings).unwrap_or_default(),
            self.own_domains.join(",")
        )
    }

    fn check(&self, input: &Inspection<'_>) -> Option<Hit> {
        let s = &self.settings;
        let Some(message) = input.message else {
            return (s.unparseable != 0.0)
                .then(|| Hit::new(s.unparseable, "not a parseable message"));
        };
        let mut findings: Vec<(f64, String)> = Vec::new();

        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for header in message.headers() {
            if let Some((name, _)) = SINGLE.iter().find(|(_, h)| *h == header.name) {
                *counts.entry(name).or_default() += 1;
            }
        }
        let count = |name: &str| counts.get(name).copied().unwrap_or(0);

        match message.header(HeaderName::Date) {
            None => findings.push((s.missing_date, "no Date".into())),
            Some(HeaderValue::DateTime(dt)) if dt.is_valid() => {}
            Some(_) => findings.push((s.malformed_date, "Date does not parse".into())),
        }
        if message.message_id().is_none_or(|id| id.trim().is_empty()) {
            findings.push((s.missing_message_id, "no Message-ID".into()));
        }
        if count("From") == 0 {
            findings.push((s.missing_from, "no From".into()));
        } else {
            let addresses: Vec<&str> = message
                .from()
                .map(|from| from.iter().filter_map(|a| a.address()).collect())
                .unwrap_or_default();
            let parsed: Vec<&str> = addresses
                .iter()
                .copied()
                .filter(|a| {
                    a.rsplit_once('@')
                        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
                })
                .collect();
            if parsed.is_empty() {
                findings.push((s.malformed_from, "From does not parse".into()));
            }
            if let Some(forged) = parsed
                .iter()
                .find(|a| a.rsplit_once('@').is_some_and(|(_, d)| self.is_own(d)))
            {
                findings.push((
                    s.forged_from,
                    format!("From {forged} claims our own domain"),
                ));
            }
        }
        for (name, n) in &counts {
            if *n > 1 {
                findings.push((s.duplicate_header, format!("{name} appears {n} times")));
            }
        }

        findings.retain(|(weight, _)| *weight != 0.0);
        if findings.is_empty() {
            return None;
        }
        let score = findings.iter().fold(0.0, |acc, (w, _)| acc + w);
        let reason = findings
            .into_iter()
            .map(|(_, r)| r)
            .collect::<Vec<_>>()
            .join("; ");
        Some(Hit::new(score, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Facts;
    use crate::rules::test_support::envelope;

    fn rule() -> HeaderSanity {
        HeaderSanity::new(
            HeaderSanitySettings::default(),
            &["maildrop.test".to_owned()],
        )
    }

    fn check(raw: &[u8]) -> Option<Hit> {
        let env = envelope("a@example.org");
        let parsed = mail_parser::MessageParser::default().parse(raw);
        rule().check(&Inspection {
            envelope: &env,
            message: parsed.as_ref(),
            raw,
            facts: &Facts::default(),
        })
    }

    #[test]
    fn a_complete_message_passes() {
        let raw = b"From: Alice <alice@example.org>\r\nTo: bob@maildrop.test\r\n\
            Date: Fri, 29 Nov 2024 18:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\
            Subject: hi\r\n\r\nhello\r\n";
        assert_eq!(check(raw), None);
    }

    #[test]
    fn missing_headers_each_add_their_weight() {
        let hit = check(b"From: alice@example.org\r\nSubject: hi\r\n\r\nhello\r\n").unwrap();
        assert_eq!(hit.score, 2.0);
        assert_eq!(hit.reason, "no Date; no Message-ID");
    }

    #[test]
    fn malformed_from_and_date() {
        let hit = check(
            b"From: not an address\r\nDate: yesterday-ish\r\nMessage-ID: <1@x.example>\r\n\r\nx\r\n",
        )
        .unwrap();
        assert_eq!(hit.score, 3.0);
        assert!(hit.reason.contains("Date does not parse"), "{}", hit.reason);
        assert!(hit.reason.contains("From does not parse"), "{}", hit.reason);
    }

    #[test]
    fn our_own_domain_in_from_is_forged_and_so_is_a_subdomain() {
        for from in ["admin@maildrop.test", "x@MX.Maildrop.Test"] {
            let raw = format!(
                "From: {from}\r\nDate: Fri, 29 Nov 2024 18:00:00 +0000\r\nMessage-ID: <1@x.example>\r\n\r\nx\r\n"
            );
            let hit = check(raw.as_bytes()).unwrap();
            assert_eq!(hit.score, 5.0, "{from}");
            assert!(hit.reason.contains("claims our own domain"));
        }
        let raw = b"From: x@notmaildrop.test\r\nDate: Fri, 29 Nov 2024 18:00:00 +0000\r\nMessage-ID: <1@x.example>\r\n\r\nx\r\n";
        assert_eq!(check(raw), None);
    }

    #[test]
    fn a_repeated_single_header_counts_once() {
        let raw = b"From: a@example.org\r\nSubject: one\r\nSubject: two\r\nSubject: three\r\n\
            Date: Fri, 29 Nov 2024 18:00:00 +0000\r\nMessage-ID: <1@x.example>\r\n\r\nx\r\n";
        let hit = check(raw).unwrap();
        assert_eq!(hit.score, 1.0);
        assert_eq!(hit.reason, "Subject appears 3 times");
    }

    #[test]
    fn a_zero_weight_is_no_finding() {
        let r = HeaderSanity::new(
            HeaderSanitySettings {
                missing_date: 0.0,
                missing_message_id: 0.0,
                ..Default::default()
            },
            &[],
        );
        let env = envelope("a@example.org");
        let raw = b"From: alice@example.org\r\n\r\nhello\r\n";
        let parsed = mail_parser::MessageParser::default().parse(&raw[..]);
        assert_eq!(
            r.check(&Inspection {
                envelope: &env,
                message: parsed.as_ref(),
                raw,
                facts: &Facts::default(),
            }),
            None
        );
    }
}
