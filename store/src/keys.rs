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
//!
//! All five keys of a mailbox expire together, `retention` after its newest message.

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

pub const STATS: &str = "md:stats";
pub const STATS_APPLIED: &str = "md:stats:applied";

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
}
