//! Every Redis key Maildrop uses.
//!
//! | key | type | what |
//! |---|---|---|
//! | `md:{<box>}:index` | sorted set | message id → received time (ms); the listing order |
//! | `md:{<box>}:sums` | hash | message id → [`MessageSummary`](maildrop_contract::MessageSummary) JSON |
//! | `md:{<box>}:msgs` | hash | message id → [`StoredMessage`](crate::StoredMessage) JSON |
//! | `md:{<box>}:raw` | hash | message id → raw RFC 5322 bytes |
//! | `md:{<box>}:seen` | sorted set | ids ever stored in the box (the newest 1,000): a redelivered or deleted message is not stored again |
//! | `md:{<box>}:usage` | hash | `bytes` the box holds (raw + document + summary of each message), `ver` of the last write (see [`crate::usage`]) |
//! | `md:{@usage}:boxes` | sorted set | mailbox → newest message's received time (ms), for every mailbox that holds bytes: eviction and expiry order |
//! | `md:{@usage}:box-bytes` | hash | mailbox → bytes it holds, as last synced |
//! | `md:{@usage}:total` | string | the sum of `box-bytes`, compared with `MAILDROP_STORE_MAX_BYTES` |
//! | `md:{@usage}:versions` | sorted set | mailbox → `ver` of the last sync applied (entries older than 10 min pruned): a late sync cannot undo a newer one |
//! | `md:{@stats}` | hash | counters (see [`crate::stats`]) |
//! | `md:{@stats}:applied` | hash | stream name → last stream sequence counted |
//! | `md:{@stats}:min:<t>`, `md:{@stats}:hour:<t>` | hash | the counters of one minute / hour (`<t>`: its start, Unix s); kept a day / a month (see [`crate::series`]) |
//! | `md:{@stats}:top:ip:<day>`, `md:{@stats}:top:domain:<day>` | sorted set | client IPs / sender domains of rejected mail and refused attempts → count, per UTC day; kept a month |
//! | `md:{@stats}:active:hour:<t>`, `md:{@stats}:active:day:<t>` | HyperLogLog | mailboxes that received mail in that hour / day; kept a month |
//! | `md:{@stats}:shadow:pair:<id>` | string | shadow mode: the first verdict of a message (`p`/`s` + `1`/`0`), then `paired`; TTL `MAILDROP_SHADOW_PAIR_TTL` (see [`crate::shadow`]) |
//! | `md:{@stats}:shadow:counts` | hash | shadow mode: `agree_accepted`, `agree_rejected`, `accepted_now_rejected`, `rejected_now_accepted`, and the shadow's `ruleset` |
//! | `md:alias:<alias>` | string | the mailbox an alias delivers to; expires unless revealed again |
//! | `md:rl:<ip>` | hash | the API rate-limit bucket of one client IP (`tokens`, `ts`); expires when full again |
//! | `md:{@block}:<list>` | sorted set | a run-time blocklist of the filter (`sender`, `domain`, `ip`, `subject`): entry → expiry ms (`+inf`: none); see [`crate::blocklist`] |
//! | `md:{flood:ip:<ip>}:seen`, `md:{flood:subj:<hash>}:seen` | sorted set | flood counts: message id → receive time (ms), the last two windows; see [`crate::flood`] |
//! | `md:{flood:ip:<ip>}:ban`, `md:{flood:subj:<hash>}:ban` | string | receive time (ms) at which a flood ban began; TTL the ban's length |
//! | `md:vcache:<ip>:<helo>` | string | the filter's verdict cache: client facts (JSON) of one client IP and HELO; TTL `MAILDROP_VERDICT_CACHE_TTL` |
//!
//! All six keys of a mailbox expire together, `retention` after its newest message's receive
//! time.
//!
//! **Hash tags (Redis Cluster).** A script or a pipeline must touch keys of one cluster slot, so
//! every group of keys used together shares a hash tag: a mailbox's six keys `{<box>}`; the usage
//! index `{@usage}`, synced by a second call after each mailbox script; every statistics key
//! `{@stats}`, so the reporter's `MULTI` of counters, buckets, tops and high-water marks is one
//! transaction on one slot, and a recount's `SCAN` walks one node; the four blocklists `{@block}`,
//! read in one pipeline; a flood dimension's two keys `{flood:…}`. The shared tags start with `@`,
//! which no mailbox name has, so no mailbox shares their keys or their recount's `SCAN` pattern.
//! The other keys are used one at a time.
//!
//! Until November 2026 these keys were `md:stats…` and `md:block:<list>`: after upgrading from
//! then, `maildrop-reporter recount` rebuilds the statistics, and blocklist entries must be added
//! again.

use std::net::IpAddr;

use maildrop_contract::Mailbox;

pub const PREFIX: &str = "md:";

/// The keys of one mailbox, in the order the store scripts take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxKeys {
    pub index: String,
    pub sums: String,
    pub msgs: String,
    pub raw: String,
    pub seen: String,
    pub usage: String,
}

impl MailboxKeys {
    pub fn new(mailbox: &Mailbox) -> Self {
        // The mailbox charset has no `{` or `}`, so the tag is exactly the name.
        let tag = format!("{PREFIX}{{{}}}", mailbox.as_str());
        Self {
            index: format!("{tag}:index"),
            sums: format!("{tag}:sums"),
            msgs: format!("{tag}:msgs"),
            raw: format!("{tag}:raw"),
            seen: format!("{tag}:seen"),
            usage: format!("{tag}:usage"),
        }
    }

    pub fn all(&self) -> [&str; 6] {
        [
            &self.index,
            &self.sums,
            &self.msgs,
            &self.raw,
            &self.seen,
            &self.usage,
        ]
    }
}

/// The global usage keys, in the order the usage script takes them; one hash tag, one slot.
pub const USAGE_BOXES: &str = "md:{@usage}:boxes";
pub const USAGE_BOX_BYTES: &str = "md:{@usage}:box-bytes";
pub const USAGE_VERSIONS: &str = "md:{@usage}:versions";
pub const USAGE_TOTAL: &str = "md:{@usage}:total";

/// `md:alias:<alias>`.
pub fn alias(alias: &Mailbox) -> String {
    format!("{PREFIX}alias:{}", alias.as_str())
}

/// `md:rl:<ip>`.
pub fn rate_limit(ip: std::net::IpAddr) -> String {
    format!("{PREFIX}rl:{ip}")
}

/// The hash tag of every statistics key (one cluster slot).
pub const STATS: &str = "md:{@stats}";
pub const STATS_APPLIED: &str = "md:{@stats}:applied";
/// Every statistics key (what a recount deletes); `{` is not special in a `SCAN` pattern.
pub const STATS_ALL: &str = "md:{@stats}*";

/// Shadow-mode counts; the statistics' hash tag, shared with the pending pairs, so the pairing
/// script is on one slot and a recount clears both.
pub const SHADOW_COUNTS: &str = "md:{@stats}:shadow:counts";

/// `md:{@stats}:shadow:pair:<id>`: one message's first verdict until the other side's arrives.
pub fn shadow_pair(id: &str) -> String {
    format!("{STATS}:shadow:pair:{id}")
}

/// `md:{@stats}:<min|hour>:<start>`: the counters of one time bucket (start in Unix seconds).
pub fn stats_bucket(resolution: &str, start: u64) -> String {
    format!("{STATS}:{resolution}:{start}")
}

/// `md:{@stats}:top:<ip|domain>:<day start>`: rejected sources of one day, by count.
pub fn stats_top(kind: &str, day: u64) -> String {
    format!("{STATS}:top:{kind}:{day}")
}

/// `md:{@stats}:active:<hour|day>:<start>`: a HyperLogLog of the mailboxes that received mail.
pub fn stats_active(resolution: &str, start: u64) -> String {
    format!("{STATS}:active:{resolution}:{start}")
}

/// The block entry of a client IP, in canonical form (an IPv4-mapped IPv6 address is its IPv4).
pub fn blocked_ip(ip: IpAddr) -> String {
    format!("{PREFIX}blocked:ip:{}", ip.to_canonical())
}

/// `md:{@block}:<list>`: one run-time blocklist of the filter; the four share one slot.
pub fn blocklist(list: &str) -> String {
    format!("{PREFIX}{{@block}}:{list}")
}

/// The flood keys of one dimension, `(seen, ban)`, under one hash tag. An IP in canonical form; a
/// subject by the FNV-1a hash of its folded text (a subject can hold anything, a key should not).
pub fn flood(dimension: &crate::flood::Dimension) -> (String, String) {
    let tag = match dimension {
        crate::flood::Dimension::Ip(ip) => format!("flood:ip:{}", ip.to_canonical()),
        crate::flood::Dimension::Subject(s) => format!("flood:subj:{:016x}", fnv1a(s.as_str())),
    };
    (
        format!("{PREFIX}{{{tag}}}:seen"),
        format!("{PREFIX}{{{tag}}}:ban"),
    )
}

/// `md:vcache:<ip>:<helo>`: the filter's cached client facts of one client IP and HELO (lower-cased).
pub fn verdict_cache(ip: IpAddr, helo: &str) -> String {
    format!(
        "{PREFIX}vcache:{}:{}",
        ip.to_canonical(),
        helo.trim().to_lowercase()
    )
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The greylist entry of a (network, HELO) pair. The network always ends in `/<prefix>` and has no
/// other `/`, so the pair is unambiguous even though both parts may hold `:`.
pub fn greylist(network: &str, helo: &str) -> String {
    format!("{PREFIX}grey:{network}:{helo}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mailbox_shares_one_hash_tag() {
        let keys = MailboxKeys::new(&Mailbox::parse("Bob.x").unwrap());
        for k in keys.all() {
            assert!(k.starts_with("md:{bob.x}:"), "{k}");
        }
    }

    #[test]
    fn the_usage_keys_share_a_tag_no_mailbox_can_have() {
        for k in [USAGE_BOXES, USAGE_BOX_BYTES, USAGE_VERSIONS, USAGE_TOTAL] {
            assert!(k.starts_with("md:{@usage}:"), "{k}");
        }
        assert!(Mailbox::parse("@usage").is_err());
    }

    #[test]
    fn keys_used_together_share_a_tag_no_mailbox_can_have() {
        use redis::cluster_routing::Slot;
        let stats = [
            STATS.to_owned(),
            STATS_APPLIED.to_owned(),
            SHADOW_COUNTS.to_owned(),
            shadow_pair("id"),
            stats_bucket("min", 60),
            stats_top("ip", 86_400),
            stats_active("day", 86_400),
        ];
        for k in &stats {
            assert!(k.starts_with("md:{@stats}"), "{k}");
            assert_eq!(Slot::for_key(k), Slot::for_key(STATS), "{k}");
        }
        for list in ["sender", "domain", "ip", "subject"] {
            assert_eq!(
                Slot::for_key(blocklist(list)),
                Slot::for_key(blocklist("ip"))
            );
        }
        assert!(Mailbox::parse("@stats").is_err() && Mailbox::parse("@block").is_err());
    }

    #[test]
    fn blocked_ips_are_keyed_in_canonical_form() {
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(blocked_ip(mapped), "md:blocked:ip:192.0.2.1");
        let v6: IpAddr = "2001:DB8::1".parse().unwrap();
        assert_eq!(blocked_ip(v6), "md:blocked:ip:2001:db8::1");
    }

    #[test]
    fn flood_keys_share_a_tag_per_dimension() {
        use crate::flood::{Dimension, Subject};
        let (seen, ban) = flood(&Dimension::Ip("::ffff:203.0.113.7".parse().unwrap()));
        assert_eq!(seen, "md:{flood:ip:203.0.113.7}:seen");
        assert_eq!(ban, "md:{flood:ip:203.0.113.7}:ban");
        let a = flood(&Dimension::Subject(Subject::new("Win BIG").unwrap()));
        let b = flood(&Dimension::Subject(Subject::new("win  big").unwrap()));
        assert_eq!(a, b);
        assert!(a.0.starts_with("md:{flood:subj:") && a.0.ends_with("}:seen"));
    }

    #[test]
    fn greylist_keys_name_network_and_helo() {
        assert_eq!(
            greylist("192.0.2.0/24", "mx.example.org"),
            "md:grey:192.0.2.0/24:mx.example.org"
        );
    }
}
