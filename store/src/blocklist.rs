//! Run-time blocklists: sender addresses, sender domains, client networks and subjects that the
//! filter rejects, edited by operators while it runs (`maildrop-filter block …`).
//!
//! One sorted set per list ([`keys::blocklist`]), member = the entry in its canonical form, score
//! = its expiry in ms since the epoch (`+inf` for none). A sorted set rather than a key per entry
//! because operators list them, and because one message is checked against all four lists in one
//! round trip (a pipeline of `ZMSCORE`s and one `ZRANGEBYSCORE`). An entry whose expiry has
//! passed is ignored at once and pruned at the next write to its list.
//!
//! How each list matches (entries are canonicalised by [`Entry::parse`], so what an operator
//! types and what a message holds meet in one form):
//!
//! | list | entry | matches |
//! |---|---|---|
//! | `sender` | `user@domain`, lower-cased | the envelope sender (`MAIL FROM`), exactly, without case |
//! | `domain` | `domain`, lower-cased, no trailing dot | the envelope sender's domain, or any domain below it (`example.com` blocks `mx.example.com`) |
//! | `ip` | a network `addr/prefix` (a bare address is `/32` or `/128`), canonical (`::ffff:192.0.2.1` is `192.0.2.1`) | the client IP, in that network |
//! | `subject` | lower-cased, runs of white space as one space, trimmed | the decoded `Subject` contains it, compared the same way (a substring, so `cheap pills` catches `Re: CHEAP  pills!!`) |
//!
//! Subjects are substrings because spam campaigns vary the rest of the subject line; an exact
//! match would be dodged by a counter. They are checked one by one, so the list is meant to be
//! short (an operator's list, not a feed; feeds belong in DNS blocklists).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use crate::Redis;

use crate::StoreError;
use crate::keys;

/// Longest subject entry, in characters.
pub const MAX_SUBJECT: usize = 200;

/// One of the four lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum List {
    Sender,
    Domain,
    Ip,
    Subject,
}

impl List {
    pub const ALL: [List; 4] = [List::Sender, List::Domain, List::Ip, List::Subject];

    pub fn as_str(self) -> &'static str {
        match self {
            List::Sender => "sender",
            List::Domain => "domain",
            List::Ip => "ip",
            List::Subject => "subject",
        }
    }
}

impl fmt::Display for List {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for List {
    type Err = EntryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        List::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| EntryError::List(s.to_owned()))
    }
}

/// Why an entry cannot go on a list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("{0:?} is not a list (sender, domain, ip or subject)")]
    List(String),
    #[error("{0:?} is not an address like user@example.com")]
    Sender(String),
    #[error("{0:?} is not a domain name")]
    Domain(String),
    #[error("{0:?} is not an IP address or a network like 192.0.2.0/24")]
    Ip(String),
    #[error("{0:?} has bits set after its prefix (did you mean {1}?)")]
    HostBits(String, String),
    #[error("a subject entry must have 1 to {MAX_SUBJECT} characters")]
    Subject,
}

/// An entry of one list, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    list: List,
    value: String,
}

impl Entry {
    pub fn parse(list: List, value: &str) -> Result<Self, EntryError> {
        let value = match list {
            List::Sender => {
                let v = value.trim().to_lowercase();
                match v.rsplit_once('@') {
                    Some((local, domain)) if !local.is_empty() && valid_domain(domain) => v,
                    _ => return Err(EntryError::Sender(value.to_owned())),
                }
            }
            List::Domain => {
                let v = value
                    .trim()
                    .trim_start_matches('@')
                    .trim_end_matches('.')
                    .to_lowercase();
                if !valid_domain(&v) {
                    return Err(EntryError::Domain(value.to_owned()));
                }
                v
            }
            List::Ip => parse_network(value.trim())?,
            List::Subject => {
                let v = fold_subject(value);
                if v.is_empty() || v.chars().count() > MAX_SUBJECT {
                    return Err(EntryError::Subject);
                }
                v
            }
        };
        Ok(Self { list, value })
    }

    pub fn list(&self) -> List {
        self.list
    }

    pub fn value(&self) -> &str {
        &self.value
    }
}

/// An entry as listed: its value and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub value: String,
    /// ms since the epoch; `None` for an entry that stays until removed.
    pub expires_ms: Option<u64>,
}

/// What one message is checked for.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    /// The envelope sender; empty for the null sender (matches nothing).
    pub sender: &'a str,
    pub ip: IpAddr,
    /// The decoded subject; empty matches nothing.
    pub subject: &'a str,
}

/// The entries a message matched, one per list at most.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matches {
    pub sender: Option<String>,
    pub domain: Option<String>,
    pub ip: Option<String>,
    pub subject: Option<String>,
}

/// Reads and edits the run-time blocklists.
#[derive(Clone)]
pub struct BlocklistStore {
    conn: Redis,
}

impl BlocklistStore {
    pub fn new(conn: Redis) -> Self {
        Self { conn }
    }

    /// Adds (or renews) `entry` for `ttl` (until removed when `None`); prunes expired entries
    /// of its list.
    pub async fn add(
        &self,
        entry: &Entry,
        ttl: Option<Duration>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let key = keys::blocklist(entry.list.as_str());
        let score = match ttl {
            Some(ttl) => {
                let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                now_ms.saturating_add(ms.max(1)).to_string()
            }
            None => "+inf".to_owned(),
        };
        let mut conn = self.conn.clone();
        let _: () = redis::pipe()
            .atomic()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now_ms)
            .ignore()
            .cmd("ZADD")
            .arg(&key)
            .arg(score)
            .arg(&entry.value)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Removes `entry`; `false` if it was not listed.
    pub async fn remove(&self, entry: &Entry) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let n: u64 = redis::cmd("ZREM")
            .arg(keys::blocklist(entry.list.as_str()))
            .arg(&entry.value)
            .query_async(&mut conn)
            .await?;
        Ok(n > 0)
    }

    /// The live entries of `list`, in order of value.
    pub async fn list(&self, list: List, now_ms: u64) -> Result<Vec<Listed>, StoreError> {
        let mut conn = self.conn.clone();
        let rows: Vec<(String, f64)> = redis::cmd("ZRANGEBYSCORE")
            .arg(keys::blocklist(list.as_str()))
            .arg(format!("({now_ms}"))
            .arg("+inf")
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        let mut listed: Vec<Listed> = rows
            .into_iter()
            .map(|(value, score)| Listed {
                value,
                expires_ms: score.is_finite().then_some(score as u64),
            })
            .collect();
        listed.sort_by(|a, b| a.value.cmp(&b.value));
        Ok(listed)
    }

    /// Which lists the message matches, in one round trip.
    pub async fn lookup(&self, q: &Query<'_>, now_ms: u64) -> Result<Matches, StoreError> {
        let sender = q.sender.trim().to_lowercase();
        let domains: Vec<String> = match sender.rsplit_once('@') {
            Some((_, domain)) => parent_domains(domain.trim_end_matches('.')),
            None => Vec::new(),
        };
        let networks = networks_of(q.ip);
        let mut pipe = redis::pipe();
        // ZMSCORE needs at least one member; the empty string is never an entry.
        pipe.cmd("ZMSCORE")
            .arg(keys::blocklist(List::Sender.as_str()))
            .arg(&sender);
        pipe.cmd("ZMSCORE")
            .arg(keys::blocklist(List::Domain.as_str()))
            .arg(if domains.is_empty() {
                vec![String::new()]
            } else {
                domains.clone()
            });
        pipe.cmd("ZMSCORE")
            .arg(keys::blocklist(List::Ip.as_str()))
            .arg(&networks);
        pipe.cmd("ZRANGEBYSCORE")
            .arg(keys::blocklist(List::Subject.as_str()))
            .arg(format!("({now_ms}"))
            .arg("+inf");
        let mut conn = self.conn.clone();
        #[allow(clippy::type_complexity)]
        let (s, d, n, subjects): (
            Vec<Option<f64>>,
            Vec<Option<f64>>,
            Vec<Option<f64>>,
            Vec<String>,
        ) = pipe.query_async(&mut conn).await?;
        let live = |score: &Option<f64>| score.is_some_and(|s| s > now_ms as f64);
        let first = |scores: &[Option<f64>], names: &[String]| {
            scores
                .iter()
                .zip(names)
                .find(|(score, _)| live(score))
                .map(|(_, name)| name.clone())
        };
        let subject = fold_subject(q.subject);
        Ok(Matches {
            sender: (!sender.is_empty())
                .then(|| first(&s, std::slice::from_ref(&sender)))
                .flatten(),
            domain: first(&d, &domains),
            ip: first(&n, &networks),
            subject: (!subject.is_empty())
                .then(|| subjects.into_iter().find(|e| subject.contains(e.as_str())))
                .flatten(),
        })
    }
}

/// Lower-case, white space folded to single spaces, trimmed: how subjects are compared.
pub fn fold_subject(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn valid_domain(d: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b >= 0x80)
    };
    !d.is_empty() && d.len() <= 253 && d.split('.').all(label_ok)
}

/// `mx.example.com` → `mx.example.com`, `example.com`, `com`: the most specific first.
fn parent_domains(domain: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = domain;
    while !rest.is_empty() {
        out.push(rest.to_owned());
        rest = rest.split_once('.').map_or("", |(_, r)| r);
    }
    out
}

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & keep))
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & keep))
        }
    }
}

/// A network in canonical `addr/prefix` form; a bare address is a host network.
fn parse_network(s: &str) -> Result<String, EntryError> {
    let bad = || EntryError::Ip(s.to_owned());
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip = addr.parse::<IpAddr>().map_err(|_| bad())?.to_canonical();
    let max = max_prefix(ip);
    let prefix = match prefix {
        // A mapped address with an IPv6 prefix (`::ffff:192.0.2.0/120`) keeps its IPv4 meaning.
        Some(p) => {
            let p: u8 = p.parse().map_err(|_| bad())?;
            let p = if addr.parse::<IpAddr>().is_ok_and(|a| a.is_ipv6()) && ip.is_ipv4() {
                p.checked_sub(96).ok_or_else(bad)?
            } else {
                p
            };
            if p > max {
                return Err(bad());
            }
            p
        }
        None => max,
    };
    let network = mask(ip, prefix);
    if network != ip {
        return Err(EntryError::HostBits(
            s.to_owned(),
            format!("{network}/{prefix}"),
        ));
    }
    Ok(format!("{network}/{prefix}"))
}

/// Every network that holds `ip`, from the host itself to `/0`, in canonical form. Asked for every
/// message, so an IPv4 client's 33 are written by hand: `Ipv4Addr`'s `Display` was an eighth of
/// the filter's instructions per message (callgrind).
fn networks_of(ip: IpAddr) -> Vec<String> {
    let ip = ip.to_canonical();
    (0..=max_prefix(ip))
        .rev()
        .map(|p| match mask(ip, p) {
            IpAddr::V4(net) => {
                let mut s = String::with_capacity(18);
                for (i, octet) in net.octets().into_iter().enumerate() {
                    if i > 0 {
                        s.push('.');
                    }
                    push_decimal(&mut s, octet);
                }
                s.push('/');
                push_decimal(&mut s, p);
                s
            }
            net => format!("{net}/{p}"),
        })
        .collect()
}

fn push_decimal(s: &mut String, n: u8) {
    if n >= 100 {
        s.push(char::from(b'0' + n / 100));
    }
    if n >= 10 {
        s.push(char::from(b'0' + n / 10 % 10));
    }
    s.push(char::from(b'0' + n % 10));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(list: List, v: &str) -> Result<String, EntryError> {
        Entry::parse(list, v).map(|e| e.value)
    }

    #[test]
    fn entries_are_canonical() {
        assert_eq!(
            entry(List::Sender, " Spam@Example.COM ").unwrap(),
            "spam@example.com"
        );
        assert!(entry(List::Sender, "example.com").is_err());
        assert!(entry(List::Sender, "@example.com").is_err());
        assert_eq!(entry(List::Domain, "@Example.com.").unwrap(), "example.com");
        assert!(entry(List::Domain, "a..b").is_err());
        assert_eq!(entry(List::Ip, "192.0.2.7").unwrap(), "192.0.2.7/32");
        assert_eq!(entry(List::Ip, "::ffff:192.0.2.7").unwrap(), "192.0.2.7/32");
        assert_eq!(entry(List::Ip, "192.0.2.0/24").unwrap(), "192.0.2.0/24");
        assert_eq!(entry(List::Ip, "2001:DB8::/32").unwrap(), "2001:db8::/32");
        assert_eq!(
            entry(List::Ip, "192.0.2.1/24"),
            Err(EntryError::HostBits(
                "192.0.2.1/24".into(),
                "192.0.2.0/24".into()
            ))
        );
        assert!(entry(List::Ip, "192.0.2.0/33").is_err());
        assert!(entry(List::Ip, "nope").is_err());
        assert_eq!(
            entry(List::Subject, "  Cheap \t PILLS ").unwrap(),
            "cheap pills"
        );
        assert_eq!(entry(List::Subject, " "), Err(EntryError::Subject));
        assert!("spam".parse::<List>().is_err());
        assert_eq!("ip".parse::<List>().unwrap(), List::Ip);
    }

    #[test]
    fn a_client_is_looked_up_in_every_network_that_holds_it() {
        let n = networks_of("192.0.2.7".parse().unwrap());
        assert_eq!(n.len(), 33);
        assert_eq!(n[0], "192.0.2.7/32");
        assert!(n.contains(&"192.0.2.0/24".to_owned()));
        assert_eq!(n[32], "0.0.0.0/0");
        assert_eq!(networks_of("2001:db8::1".parse().unwrap()).len(), 129);
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.99.100",
            "192.0.2.7",
            "::ffff:8.9.10.11",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let expected: Vec<String> = (0..=32u8)
                .rev()
                .map(|p| format!("{}/{p}", mask(ip.to_canonical(), p)))
                .collect();
            assert_eq!(networks_of(ip), expected, "{ip}");
        }
    }

    #[test]
    fn a_domain_is_looked_up_with_its_parents() {
        assert_eq!(
            parent_domains("mx.example.com"),
            ["mx.example.com", "example.com", "com"]
        );
    }

    #[test]
    fn subjects_fold_case_and_space() {
        assert_eq!(fold_subject("Re:  CHEAP\tPills!!"), "re: cheap pills!!");
    }
}
