//! Facts: what is looked up about a message before its rules run.
//!
//! Rules are pure ([`crate::rules`]); whatever needs I/O is gathered first, into one [`Facts`]
//! value that travels in the [`Inspection`](crate::rules::Inspection). Each group is an `Option`:
//! `None` means "not looked up" (the rule that needs it is disabled, the client is exempt, or
//! this is a replay without Redis), and a rule that finds `None` has nothing to say. That keeps the
//! live path, a replay and a unit test on one code path with different facts.
//!
//! The Redis facts (run-time blocklists and flood counts) are gathered here by [`RedisFacts`];
//! DNS facts (blocklists, SPF, DKIM, DMARC) are gathered by [`crate::gather`] into
//! [`Facts::dns`]. A new group of facts is a field here, filled by its gatherer, read by its rules.

use std::net::IpAddr;

use maildrop_contract::Envelope;
use maildrop_store::StoreError;
use maildrop_store::blocklist::{BlocklistStore, Query};
use maildrop_store::flood::{FloodStore, Subject};

use crate::rules::RuleSet;

/// Everything gathered about one message before evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Entries of the run-time blocklists this message matches.
    pub lists: Option<ListMatches>,
    /// This message's place in the flood counts.
    pub flood: Option<FloodFacts>,
    /// What DNS says about the client, the sender and the links ([`crate::gather`]).
    pub dns: crate::gather::DnsFacts,
    /// rspamd's answer ([`crate::rspamd`]); `None` when not configured, off, or not answered.
    pub rspamd: Option<crate::rspamd::RspamdFacts>,
}

/// The run-time blocklist entries a message matched, as written in the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListMatches {
    pub sender: Option<String>,
    pub domain: Option<String>,
    /// The network (`203.0.113.0/24`) or address (`203.0.113.7/32`) that holds the client.
    pub ip: Option<String>,
    pub subject: Option<String>,
}

/// Flood counts of the message's client IP and subject; `None` where that limit is off, the
/// client is exempt, or the subject is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FloodFacts {
    pub ip: Option<FloodCount>,
    pub subject: Option<FloodCount>,
}

/// One flood count, as of this message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FloodCount {
    /// Messages in the window up to and including this one (by receive time).
    pub count: u64,
    /// When the running ban began (receive time, ms), if one is running.
    pub banned_since_ms: Option<u64>,
}

impl From<maildrop_store::flood::Count> for FloodCount {
    fn from(c: maildrop_store::flood::Count) -> Self {
        Self {
            count: c.count,
            banned_since_ms: c.banned_since_ms,
        }
    }
}

/// Gathers the facts kept in Redis: run-time blocklists and flood counts.
#[derive(Clone)]
pub struct RedisFacts {
    lists: BlocklistStore,
    flood: FloodStore,
    /// `false` for a shadow filter: flood counts are written as they are read, so it reads none.
    count_floods: bool,
}

impl RedisFacts {
    pub fn new(conn: maildrop_store::Redis) -> Self {
        Self {
            lists: BlocklistStore::new(conn.clone()),
            flood: FloodStore::new(conn),
            count_floods: true,
        }
    }

    /// With `false`, no flood count is taken (nor written): [`Facts::flood`] stays `None`.
    pub fn counting_floods(mut self, count: bool) -> Self {
        self.count_floods = count;
        self
    }

    /// Looks up and counts what the enabled rules of `rules` need. Counting is idempotent on the
    /// message id, so a redelivered message gathers the same counts again.
    pub async fn gather(
        &self,
        rules: &RuleSet,
        envelope: &Envelope,
        message: Option<&mail_parser::Message<'_>>,
        facts: &mut Facts,
    ) -> Result<(), StoreError> {
        let settings = rules.settings();
        let subject = message.and_then(|m| m.subject()).unwrap_or("");
        if settings.blocklist.enabled {
            let query = Query {
                sender: &envelope.mail_from,
                ip: envelope.client_ip,
                subject,
            };
            let found = self
                .lists
                .lookup(&query, maildrop_contract::now_ms())
                .await?;
            facts.lists = Some(ListMatches {
                sender: found.sender,
                domain: found.domain,
                ip: found.ip,
                subject: found.subject,
            });
        }
        let flood = &settings.flood;
        if self.count_floods && flood.enabled && flood.counts(envelope.client_ip) {
            facts.flood = Some(self.count(flood, envelope, subject).await?);
        }
        Ok(())
    }

    async fn count(
        &self,
        s: &crate::rules::flood::FloodSettings,
        envelope: &Envelope,
        subject: &str,
    ) -> Result<FloodFacts, StoreError> {
        let member = envelope.id.to_string();
        let at = envelope.received_ms;
        let ip = client_ip(envelope.client_ip);
        let ip = if s.ip_limit > 0 {
            let key = maildrop_store::flood::Dimension::Ip(ip);
            Some(
                self.flood
                    .count(&key, &member, at, s.window, s.ip_limit, s.ip_ban)
                    .await?
                    .into(),
            )
        } else {
            None
        };
        let subject = match Subject::new(subject) {
            Some(subject) if s.subject_limit > 0 => {
                let key = maildrop_store::flood::Dimension::Subject(subject);
                Some(
                    self.flood
                        .count(&key, &member, at, s.window, s.subject_limit, s.subject_ban)
                        .await?
                        .into(),
                )
            }
            _ => None,
        };
        Ok(FloodFacts { ip, subject })
    }
}

/// An IPv4 client reaching a dual-stack listener is counted as its IPv4 address.
fn client_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}
