//! The global view of the mailboxes: which hold bytes, how many, and when each last received mail.
//!
//! Why it exists: memory must stay bounded. The store-writer evicts the least recently active
//! mailboxes when the total passes `MAILDROP_STORE_MAX_BYTES`, and its sweeper announces the
//! mailboxes that outlived their retention. Both need an index over all mailboxes, which the
//! per-mailbox keys cannot give.
//!
//! **Two steps, two slots.** A mailbox's keys share the hash tag `{<box>}`; the usage keys share
//! `{@usage}`. In Redis Cluster those are different slots, so one script cannot update both. Every
//! write to a mailbox (a [`MailStore`](crate::MailStore) script) therefore returns the mailbox's
//! bytes, its newest receive time and a version, and is followed by a [`sync`](UsageIndex::sync) of
//! those absolute values here. Between the two steps, and if a writer dies between them, the
//! index is off for that one mailbox (briefly over- or under-counted); the next write to the
//! mailbox, a redelivered store, or the sweeper brings it back, because a sync sets values
//! rather than adding to them.
//!
//! **Versions.** Two writes to one mailbox can sync in the other order. Each mailbox write bumps
//! the mailbox's `ver` (at least the writer's clock in ms, always above the last one), and a sync
//! with a version at or below the last one applied for that mailbox is ignored. Applied versions
//! are kept 10 minutes (a sync is never that late), so the versions set stays small. One known
//! gap: when a mailbox's usage key is gone (expired, or a mailbox from before usage was kept), the
//! next write's version is the clock alone, and a write in the same millisecond as the previous
//! one ties with it and is ignored here until the mailbox's next write sets it right.
//!
//! **Invariant.** `md:{@usage}:boxes` and `md:{@usage}:box-bytes` hold exactly the mailboxes that
//! hold bytes, and `md:{@usage}:total` is the sum of `box-bytes`: the script keeps the three in
//! step atomically. A sync with zero bytes removes the mailbox; the caller that removed it is
//! told ([`Synced::unlisted`]), which makes "announce this eviction or expiry" happen once even
//! when several writers race.

use std::time::Duration;

use crate::Redis;
use maildrop_contract::Mailbox;

use crate::StoreError;
use crate::keys;

/// How long an applied version is remembered.
const KEEP_VERSIONS: Duration = Duration::from_secs(600);

const SYNC: &str = r#"
-- KEYS: boxes box-bytes versions total
-- ARGV: mailbox bytes newest_ms ver prune_before_ms
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[5])
local last = redis.call('ZSCORE', KEYS[3], ARGV[1])
if last and tonumber(last) >= tonumber(ARGV[4]) then
  return {0, tonumber(redis.call('GET', KEYS[4]) or '0'), 0}
end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
local old = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local new = tonumber(ARGV[2])
local total = redis.call('INCRBY', KEYS[4], new - old)
local unlisted = 0
if new > 0 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
  unlisted = redis.call('ZREM', KEYS[1], ARGV[1])
end
return {1, total, unlisted}
"#;

/// What a mailbox script reports about the mailbox after it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxUsage {
    /// Bytes the mailbox holds.
    pub bytes: u64,
    /// Receive time of its newest message ever stored (ms); the activity the index orders by.
    pub newest_ms: u64,
    /// The write's version.
    pub ver: u64,
}

/// What a sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    /// `false` if a newer write had synced already (nothing changed).
    pub applied: bool,
    /// Bytes held by all mailboxes, after the sync.
    pub total_bytes: u64,
    /// This sync removed the mailbox from the index (it holds nothing now).
    pub unlisted: bool,
}

/// One mailbox in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub mailbox: Mailbox,
    /// Receive time of its newest message (ms).
    pub last_activity_ms: u64,
    pub bytes: u64,
}

/// The global usage keys.
#[derive(Clone)]
pub struct UsageIndex {
    conn: Redis,
    sync: redis::Script,
}

impl UsageIndex {
    pub fn new(conn: Redis) -> Self {
        Self {
            conn,
            sync: redis::Script::new(SYNC),
        }
    }

    /// Records a mailbox's state as its last write reported it.
    pub async fn sync(
        &self,
        mailbox: &Mailbox,
        usage: MailboxUsage,
        now_ms: u64,
    ) -> Result<Synced, StoreError> {
        let mut conn = self.conn.clone();
        let prune_before = now_ms.saturating_sub(KEEP_VERSIONS.as_millis() as u64);
        let (applied, total, unlisted): (i64, i64, i64) = self
            .sync
            .key(keys::USAGE_BOXES)
            .key(keys::USAGE_BOX_BYTES)
            .key(keys::USAGE_VERSIONS)
            .key(keys::USAGE_TOTAL)
            .arg(mailbox.as_str())
            .arg(usage.bytes)
            .arg(usage.newest_ms)
            .arg(usage.ver)
            .arg(prune_before)
            .invoke_async(&mut conn)
            .await?;
        Ok(Synced {
            applied: applied == 1,
            total_bytes: total.max(0) as u64,
            unlisted: unlisted == 1,
        })
    }

    /// Bytes held by all mailboxes.
    pub async fn total_bytes(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let total: Option<i64> = redis::cmd("GET")
            .arg(keys::USAGE_TOTAL)
            .query_async(&mut conn)
            .await?;
        Ok(total.unwrap_or(0).max(0) as u64)
    }

    /// The `n` least recently active mailboxes, oldest first, with their bytes.
    pub async fn least_recent(&self, n: usize) -> Result<Vec<Tracked>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let ranked: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(keys::USAGE_BOXES)
            .arg(0)
            .arg(n - 1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        if ranked.is_empty() {
            return Ok(Vec::new());
        }
        let bytes: Vec<Option<u64>> = redis::cmd("HMGET")
            .arg(keys::USAGE_BOX_BYTES)
            .arg(ranked.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>())
            .query_async(&mut conn)
            .await?;
        Ok(ranked
            .into_iter()
            .zip(bytes)
            .filter_map(|((name, score), bytes)| {
                Some(Tracked {
                    mailbox: Mailbox::parse(&name).ok()?,
                    last_activity_ms: score as u64,
                    bytes: bytes.unwrap_or(0),
                })
            })
            .collect())
    }

    /// Up to `n` mailboxes whose newest message was received at or before `cutoff_ms`.
    pub async fn idle_since(&self, cutoff_ms: u64, n: usize) -> Result<Vec<Mailbox>, StoreError> {
        let mut conn = self.conn.clone();
        let names: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(keys::USAGE_BOXES)
            .arg("-inf")
            .arg(cutoff_ms)
            .arg("LIMIT")
            .arg(0)
            .arg(n)
            .query_async(&mut conn)
            .await?;
        Ok(names
            .iter()
            .filter_map(|n| Mailbox::parse(n).ok())
            .collect())
    }

    /// Whether `mailbox` is in the index (holds bytes, as last synced).
    pub async fn is_listed(&self, mailbox: &Mailbox) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(keys::USAGE_BOXES)
            .arg(mailbox.as_str())
            .query_async(&mut conn)
            .await?;
        Ok(score.is_some())
    }
}
