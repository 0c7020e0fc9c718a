//! Every Redis key Maildrop uses.
//!
//! | key | type | what |
//! |---|---|---|
//! | `md:{<box>}:index` | sorted set | message id → received time (ms); the listing order |
//! | `md:{<box>}:sums` | hash | message id → [`MessageSummary`](maildrop_contract::MessageSummary) JSON |
//! | `md:{<box>}:msgs` | hash | message id → [`StoredMessage`](crate::StoredMessage) JSON |
//! | `md:{<box>}:raw` | hash | message id → raw RFC 5322 bytes |
//! | `md:{<box>}:seen` | sorted set | ids ever stored in the box (the newest 1,000): a redelivered or deleted message is not stored again |
//! | `md:stats` | hash | counters (see [`crate::stats`]) |
//! | `md:stats:applied` | hash | stream name → last stream sequence counted |
//! | `md:alias:<alias>` | string | the mailbox an alias delivers to; expires unless revealed again |
//! | `md:rl:<ip>` | hash | the API rate-limit bucket of one client IP (`tokens`, `ts`); expires when full again |
//!
//! All five keys of a mailbox expire together, `retention` after its newest message.

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
        }
    }

    pub fn all(&self) -> [&str; 5] {
        [&self.index, &self.sums, &self.msgs, &self.raw, &self.seen]
    }
}

/// `md:alias:<alias>`.
pub fn alias(alias: &Mailbox) -> String {
    format!("{PREFIX}alias:{}", alias.as_str())
}

/// `md:rl:<ip>`.
pub fn rate_limit(ip: std::net::IpAddr) -> String {
    format!("{PREFIX}rl:{ip}")
}

pub const STATS: &str = "md:stats";
pub const STATS_APPLIED: &str = "md:stats:applied";

/// The block entry of a client IP, in canonical form (an IPv4-mapped IPv6 address is its IPv4).
pub fn blocked_ip(ip: IpAddr) -> String {
    format!("{PREFIX}blocked:ip:{}", ip.to_canonical())
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
    fn blocked_ips_are_keyed_in_canonical_form() {
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(blocked_ip(mapped), "md:blocked:ip:192.0.2.1");
        let v6: IpAddr = "2001:DB8::1".parse().unwrap();
        assert_eq!(blocked_ip(v6), "md:blocked:ip:2001:db8::1");
    }

    #[test]
    fn greylist_keys_name_network_and_helo() {
        assert_eq!(
            greylist("192.0.2.0/24", "mx.example.org"),
            "md:grey:192.0.2.0/24:mx.example.org"
        );
    }
}
