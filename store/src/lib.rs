//! The Redis layout of Maildrop's views, and the only code that reads or writes it.
//!
//! Redis is a view: JetStream holds the truth, and every key here can be rebuilt by replaying the
//! streams. The store-writer and the reporter write through this crate; the gateway reads through
//! it. Nobody else builds a Redis key.
//!
//! - [`conn`]: [`Redis`], one connection type for a single server and a Redis Cluster, chosen by
//!   the URL.
//! - [`keys`]: every key name, in one module. All keys of one mailbox share the hash tag `{<box>}`,
//!   so a mailbox lives on one Redis Cluster slot and its scripts stay atomic there; so do the
//!   usage index, the statistics and the blocklists, each under its own tag.
//! - [`mailbox`]: [`MailStore`], storing, listing, reading and deleting messages; writes are Lua
//!   scripts, atomic and idempotent on the message id.
//! - [`message`]: [`StoredMessage`], what is kept of a message (the API's message document).
//! - [`attachment`]: which parts are attachments and in what order, extracting one by index (for
//!   the gateway), and stripping bodies before storing (for the store-writer).
//! - [`usage`]: the global index of mailboxes by last activity and the bytes they hold, kept by
//!   [`MailStore`] after every write; the store-writer's byte cap and sweeper read it.
//! - [`stats`]: the counters the reporter keeps and `/api/stats` shows.
//! - [`shadow`]: shadow mode's comparison of production and candidate verdicts, paired by id.
//! - [`series`]: per-minute and per-hour buckets of those counters, the day's top rejected
//!   sources and the active mailboxes, written with the counters.
//! - [`policy`]: [`PolicyStore`], the blocked client IPs (written by the filter and operators) and the
//!   greylist, both read by the ingest while an SMTP client waits.
//! - [`blocklist`]: the filter's run-time blocklists (sender, domain, IP/CIDR, subject), edited by
//!   operators while it runs.
//! - [`flood`]: the filter's flood counts per client IP and per subject, and the bans they start.
//! - [`verdict_cache`]: the filter's cache of client facts per client IP and HELO.
//! - [`alias`]: the `alias → mailbox` table.
//! - [`ratelimit`]: the API's per-IP token buckets, shared by every gateway.

pub mod alias;
pub mod attachment;
pub mod blocklist;
pub mod conn;
pub mod flood;
pub mod keys;
pub mod mailbox;
pub mod message;
pub mod policy;
pub mod ratelimit;
pub mod series;
pub mod shadow;
pub mod stats;
pub mod usage;
pub mod verdict_cache;

pub use alias::AliasStore;
pub use conn::{Redis, RedisTarget};
pub use mailbox::{
    AttachmentLookup, Expiry, Limits, MailStore, Removal, StoreOutcome, StoreReport,
};
pub use message::{Attachment, Headers, StoredEnvelope, StoredMessage, StoredVerdict};
pub use policy::{Greylist, GreylistKey, PolicyStore};
pub use stats::{Stats, StatsStore};

/// A Redis operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis did not answer or refused: worth retrying later.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A stored document could not be decoded (written by an incompatible version).
    #[error("stored document for {key} is not valid: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}
