//! `flood`: one client IP, or one subject, sent more than its limit within the window, across all
//! mailboxes.
//!
//! A public inbox is a target for bulk senders that spray one message over many made-up
//! mailboxes. Per client IP and per subject, messages are counted over a sliding `window` in
//! Redis (`maildrop_store::flood`): the message that takes a count past its limit starts a ban
//! (`ip_ban` for the IP, `subject_ban` for the subject) during which every later message from
//! that IP, or with that subject, is over the limit too, whatever the count says. An IP over the
//! limit also asks to be refused at connect (see [`BlockClient`](super::BlockClient)) for
//! `ip_ban`: the ingest answers its next connection `554` before it can send anything.
//!
//! Counting happens before evaluation and arrives here as [`FloodFacts`](crate::facts::FloodFacts);
//! the counts are keyed by message id, so a redelivered message is not counted twice. Clients in
//! `exempt` (by default loopback, like the ingest's `MAILDROP_EXEMPT_NETWORKS`) are not counted
//! at all, and neither are messages with an empty subject for the per-subject limit (they would
//! lump unrelated mail together). The old service's defaults: 20 in 2 minutes, then a 5-minute IP
//! ban or a 1-hour subject ban.

use std::net::IpAddr;
use std::time::Duration;

use maildrop_runtime::cidr::Cidr;
use serde::{Deserialize, Serialize};

use super::{Hit, Inspection, Rule};
use crate::facts::FloodCount;

/// `[flood]` in the rule file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FloodSettings {
    pub enabled: bool,
    /// Score of a message over either limit.
    pub weight: f64,
    /// The sliding window the limits count over.
    #[serde(with = "super::duration")]
    pub window: Duration,
    /// Messages per client IP within the window; 0 turns the per-IP limit off.
    pub ip_limit: u64,
    /// How long an IP over its limit stays over it, and blocked at connect.
    #[serde(with = "super::duration")]
    pub ip_ban: Duration,
    /// Messages per subject within the window; 0 turns the per-subject limit off.
    pub subject_limit: u64,
    /// How long a subject over its limit stays over it.
    #[serde(with = "super::duration")]
    pub subject_ban: Duration,
    /// Client networks never counted (CIDRs).
    pub exempt: Vec<String>,
}

impl Default for FloodSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            weight: 10.0,
            window: Duration::from_secs(120),
            ip_limit: 20,
            ip_ban: Duration::from_secs(300),
            subject_limit: 20,
            subject_ban: Duration::from_secs(3600),
            exempt: vec!["127.0.0.0/8".into(), "::1/128".into()],
        }
    }
}

impl FloodSettings {
    /// Whether messages from `ip` are counted (the networks were checked when the rule set was
    /// built; one that does not parse here is ignored).
    pub fn counts(&self, ip: IpAddr) -> bool {
        !self
            .exempt
            .iter()
            .filter_map(|n| n.parse::<Cidr>().ok())
            .any(|n| n.contains(ip))
    }
}

pub struct Flood {
    settings: FloodSettings,
}

impl Flood {
    pub fn new(settings: FloodSettings) -> Self {
        Self { settings }
    }
}

/// Whether a message received at `at_ms` is over the limit, by its count or by a ban that began at
/// or before it.
fn over(count: &FloodCount, limit: u64, at_ms: u64) -> bool {
    (limit > 0 && count.count > limit) || count.banned_since_ms.is_some_and(|t| t <= at_ms)
}

impl Rule for Flood {
    fn name(&self) -> &'static str {
        "flood"
    }

    fn fingerprint(&self) -> String {
        serde_json::to_string(&self.settings).unwrap_or_default()
    }

    fn check(&self, input: &Inspection<'_>) -> Option<Hit> {
        let facts = input.facts.flood.as_ref()?;
        let s = &self.settings;
        let at = input.envelope.received_ms;
        let window = humantime::format_duration(s.window);
        let ip = facts
            .ip
            .as_ref()
            .filter(|c| over(c, s.ip_limit, at))
            .map(|c| {
                format!(
                    "client {} sent {} messages in {window} (limit {})",
                    input.envelope.client_ip, c.count, s.ip_limit
                )
            });
        let subject = facts
            .subject
            .as_ref()
            .filter(|c| over(c, s.subject_limit, at))
            .map(|c| {
                format!(
                    "{} messages with this subject in {window} (limit {})",
                    c.count, s.subject_limit
                )
            });
        let hit = match (&ip, subject) {
            (None, None) => return None,
            (Some(ip), None) => Hit::new(s.weight, ip.clone()),
            (None, Some(subject)) => Hit::new(s.weight, subject),
            (Some(ip), Some(subject)) => Hit::new(s.weight, format!("{ip}; {subject}")),
        };
        Some(if ip.is_some() {
            hit.blocking_client(s.ip_ban)
        } else {
            hit
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{Facts, FloodFacts};
    use crate::rules::test_support::envelope;

    fn check(ip: Option<FloodCount>, subject: Option<FloodCount>, at: u64) -> Option<Hit> {
        let mut env = envelope("a@example.org");
        env.received_ms = at;
        let facts = Facts {
            flood: Some(FloodFacts { ip, subject }),
            ..Default::default()
        };
        Flood::new(FloodSettings::default()).check(&Inspection {
            envelope: &env,
            message: None,
            raw: b"",
            facts: &facts,
        })
    }

    fn count(count: u64, banned_since_ms: Option<u64>) -> Option<FloodCount> {
        Some(FloodCount {
            count,
            banned_since_ms,
        })
    }

    #[test]
    fn up_to_the_limit_passes() {
        assert_eq!(check(count(20, None), count(20, None), 1_000), None);
    }

    #[test]
    fn an_ip_past_the_limit_is_rejected_and_blocked_for_the_ip_ban() {
        let hit = check(count(21, Some(1_000)), count(3, None), 1_000).unwrap();
        assert_eq!(hit.score, 10.0);
        assert_eq!(hit.block_client, Some(Duration::from_secs(300)));
        assert_eq!(
            hit.reason,
            "client 192.0.2.1 sent 21 messages in 2m (limit 20)"
        );
    }

    #[test]
    fn a_subject_past_the_limit_is_rejected_without_blocking_the_ip() {
        let hit = check(count(1, None), count(25, Some(900)), 1_000).unwrap();
        assert_eq!(hit.block_client, None);
        assert!(hit.reason.contains("25 messages with this subject"));
    }

    #[test]
    fn a_ban_covers_later_messages_only() {
        // The count fell back under the limit, but the ban began before this message.
        assert!(check(count(2, Some(500)), None, 1_000).is_some());
        // A message received before the ban began (handled late) is judged by its count.
        assert_eq!(check(count(2, Some(5_000)), None, 1_000), None);
    }

    #[test]
    fn loopback_is_exempt_by_default() {
        let s = FloodSettings::default();
        assert!(!s.counts("127.0.0.1".parse().unwrap()));
        assert!(!s.counts("::1".parse().unwrap()));
        assert!(s.counts("203.0.113.7".parse().unwrap()));
    }
}
