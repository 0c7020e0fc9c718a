//! Mailboxes in Redis: store, list, read, delete, clear, expire.
//!
//! Writes are Lua scripts over the keys of one mailbox (one hash tag, one cluster slot), so each is
//! atomic: a concurrent store and delete cannot interleave into a half-written mailbox, and there is
//! no read-modify-write from the client.
//!
//! **Idempotence.** Storing checks the mailbox's `seen` set first: a redelivered message (the
//! writer crashed after storing, before acking) is a no-op, and so is a message the reader has
//! already deleted, so a delete is never undone by a redelivery.
//!
//! **Limits.** After a store, the oldest messages beyond `max_messages` are evicted in the same
//! script and returned, so the writer can announce them. Every key of the mailbox expires
//! `retention` after the newest message's receive time, and a message already past that is not
//! stored at all ([`StoreOutcome::Expired`]): what is stored and when it goes depend only on the
//! messages, so a rebuild from the streams ends where the live writer did.
//!
//! **Usage.** Every script also keeps the mailbox's byte count (`md:{<box>}:usage`) and returns
//! it with a version; the method then syncs it into the global index ([`crate::usage`]), a second
//! step because the global keys live on another cluster slot. A failed sync after a delete or a
//! clear is logged, not returned: the reader's action happened, and the next write to the mailbox
//! corrects the index.

use std::time::Duration;

use crate::Redis;
use maildrop_contract::{Mailbox, MessageId, MessageSummary};

use crate::StoreError;
use crate::attachment::{self, AttachmentBody, StripReason};
use crate::keys::MailboxKeys;
use crate::message::StoredMessage;
use crate::usage::{MailboxUsage, Synced, UsageIndex};

/// How many ids a mailbox remembers for idempotence.
const SEEN_KEEP: usize = 1000;

/// Per-mailbox limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Messages kept per mailbox; the oldest go first.
    pub max_messages: usize,
    /// How long a mailbox lives after its newest message.
    pub retention: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_messages: 10,
            retention: Duration::from_secs(24 * 3600),
        }
    }
}

impl Limits {
    fn retention_ms(&self) -> u64 {
        u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether a message received at `received_ms` is past the retention at `now_ms` (and would
    /// be gone already had it been stored in time).
    pub fn expired(&self, received_ms: u64, now_ms: u64) -> bool {
        received_ms.saturating_add(self.retention_ms()) <= now_ms
    }

    /// A mailbox whose newest message was received at or before this time is past its retention.
    pub fn cutoff(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.retention_ms())
    }
}

/// What a store did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    /// The message is in the mailbox; these older ones were evicted to make room.
    Stored { evicted: Vec<MessageId> },
    /// The message was stored before: nothing changed. `present` says whether it is still in the
    /// mailbox (it may have been deleted or evicted since).
    Duplicate { present: bool },
    /// The message is older than every message the full mailbox keeps: it was not kept.
    TooOld,
    /// The message was received longer than the retention ago: it was not kept.
    Expired,
}

/// What a store did, and the bytes all mailboxes hold after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreReport {
    pub outcome: StoreOutcome,
    pub total_bytes: u64,
}

/// What emptying a mailbox for space or age did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    /// Messages removed.
    pub messages: u64,
    /// This call took the mailbox out of the usage index; of several racing callers exactly one
    /// sees `true`, and that one announces the removal.
    pub unlisted: bool,
}

/// What [`MailStore::expire`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// A message arrived after the cutoff: the mailbox stays (its index entry is refreshed).
    Active,
    Expired(Removal),
}

/// An attachment as the API serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentLookup {
    Found(AttachmentBody),
    /// Listed, but its body was not stored.
    Stripped(StripReason),
    /// No such message or attachment.
    NotFound,
}

/// Helpers shared by every mailbox script. KEYS: index sums msgs raw seen usage.
const PRELUDE: &str = r#"
local function size_of(id)
  return redis.call('HSTRLEN', KEYS[2], id) + redis.call('HSTRLEN', KEYS[3], id)
    + redis.call('HSTRLEN', KEYS[4], id)
end
-- The bytes the mailbox holds; counted once for a mailbox stored before usage was kept.
local function bytes_now()
  local b = redis.call('HGET', KEYS[6], 'bytes')
  if b then return tonumber(b) end
  local n = 0
  for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do n = n + size_of(id) end
  return n
end
local function newest()
  local top = redis.call('ZREVRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  if top[2] then return tonumber(top[2]) end
  return 0
end
local function remove(id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
end
-- Records the bytes under a new version, above the last one and at least `now`. Only a store
-- creates the usage key (it alone sets the expiry); the others update it if it is there.
local function record(bytes, now, create)
  if bytes < 0 then bytes = 0 end
  local ver = tonumber(redis.call('HGET', KEYS[6], 'ver') or '0') + 1
  if ver < now then ver = now end
  if create or redis.call('EXISTS', KEYS[6]) == 1 then
    redis.call('HSET', KEYS[6], 'bytes', bytes, 'ver', ver)
  end
  return {bytes, newest(), ver}
end
"#;

const STORE: &str = r#"
-- ARGV: id score summary detail raw max_messages retention_ms seen_keep now_ms
-- returns: status evicted bytes newest ver
local now = tonumber(ARGV[9])
if redis.call('ZSCORE', KEYS[5], ARGV[1]) then
  local status = 0
  if redis.call('ZSCORE', KEYS[1], ARGV[1]) then status = 3 end
  local u = record(bytes_now(), now, false)
  return {status, {}, u[1], u[2], u[3]}
end
if tonumber(ARGV[2]) + tonumber(ARGV[7]) <= now then
  local u = record(bytes_now(), now, false)
  return {4, {}, u[1], u[2], u[3]}
end
local bytes = bytes_now() + #ARGV[3] + #ARGV[4] + #ARGV[5]
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -(tonumber(ARGV[8]) + 1))
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[5])
local evicted = {}
local status = 1
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[6])
if excess > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, excess - 1)) do
    bytes = bytes - size_of(id)
    remove(id)
    if id == ARGV[1] then status = 2 else table.insert(evicted, id) end
  end
end
local u = record(bytes, now, true)
local at = u[2] + tonumber(ARGV[7])
for i = 1, 6 do redis.call('PEXPIREAT', KEYS[i], at) end
return {status, evicted, u[1], u[2], u[3]}
"#;

const DELETE: &str = r#"
-- ARGV: id now_ms; returns: deleted bytes newest ver
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {0, 0, 0, 0} end
local bytes = bytes_now() - size_of(ARGV[1])
remove(ARGV[1])
local u = record(bytes, tonumber(ARGV[2]), false)
return {1, u[1], u[2], u[3]}
"#;

const CLEAR: &str = r#"
-- ARGV: before_ms (or 'all') now_ms; returns: removed bytes newest ver
-- `seen` stays, so a redelivery cannot bring a message back.
local n
local bytes
if ARGV[1] == 'all' then
  n = redis.call('ZCARD', KEYS[1])
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  bytes = 0
else
  bytes = bytes_now()
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
  n = #ids
  for _, id in ipairs(ids) do
    bytes = bytes - size_of(id)
    remove(id)
  end
end
local u = record(bytes, tonumber(ARGV[2]), false)
return {n, u[1], u[2], u[3]}
"#;

const EXPIRE: &str = r#"
-- ARGV: cutoff_ms now_ms; returns: expired removed bytes newest ver
local now = tonumber(ARGV[2])
if newest() > tonumber(ARGV[1]) then
  local u = record(bytes_now(), now, false)
  return {0, 0, u[1], u[2], u[3]}
end
local n = redis.call('ZCARD', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
local u = record(0, now, false)
return {1, n, u[1], u[2], u[3]}
"#;

fn script(body: &str) -> redis::Script {
    redis::Script::new(&[PRELUDE, body].concat())
}

fn usage(bytes: i64, newest_ms: i64, ver: i64) -> MailboxUsage {
    MailboxUsage {
        bytes: bytes.max(0) as u64,
        newest_ms: newest_ms.max(0) as u64,
        ver: ver.max(0) as u64,
    }
}

/// Reads and writes mailboxes.
#[derive(Clone)]
pub struct MailStore {
    conn: Redis,
    limits: Limits,
    usage: UsageIndex,
    store: redis::Script,
    delete: redis::Script,
    clear: redis::Script,
    expire: redis::Script,
}

impl MailStore {
    pub fn new(conn: Redis, limits: Limits) -> Self {
        Self {
            usage: UsageIndex::new(conn.clone()),
            conn,
            limits,
            store: script(STORE),
            delete: script(DELETE),
            clear: script(CLEAR),
            expire: script(EXPIRE),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The global index of mailboxes by activity and bytes.
    pub fn usage(&self) -> &UsageIndex {
        &self.usage
    }

    fn invocation<'a>(
        script: &'a redis::Script,
        keys: &MailboxKeys,
    ) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        for key in keys.all() {
            invocation.key(key);
        }
        invocation
    }

    /// Stores a message in its mailbox, once, then syncs the mailbox's usage.
    pub async fn store(&self, msg: &StoredMessage, raw: &[u8]) -> Result<StoreReport, StoreError> {
        let mailbox = &msg.summary.mailbox;
        let keys = MailboxKeys::new(mailbox);
        let summary =
            serde_json::to_string(&msg.summary).map_err(|source| StoreError::Corrupt {
                key: keys.sums.clone(),
                source,
            })?;
        let detail = serde_json::to_string(msg).map_err(|source| StoreError::Corrupt {
            key: keys.msgs.clone(),
            source,
        })?;
        let now = maildrop_contract::now_ms();
        let mut conn = self.conn.clone();
        let (status, evicted, bytes, newest, ver): (i64, Vec<String>, i64, i64, i64) =
            Self::invocation(&self.store, &keys)
                .arg(msg.summary.id.to_string())
                .arg(msg.summary.received_ms)
                .arg(summary)
                .arg(detail)
                .arg(raw)
                .arg(self.limits.max_messages)
                .arg(self.limits.retention_ms().max(1))
                .arg(SEEN_KEEP)
                .arg(now)
                .invoke_async(&mut conn)
                .await?;
        let synced = self
            .usage
            .sync(mailbox, usage(bytes, newest, ver), now)
            .await?;
        let evicted = evicted.iter().filter_map(|id| id.parse().ok()).collect();
        let outcome = match status {
            0 => StoreOutcome::Duplicate { present: false },
            3 => StoreOutcome::Duplicate { present: true },
            2 => StoreOutcome::TooOld,
            4 => StoreOutcome::Expired,
            _ => StoreOutcome::Stored { evicted },
        };
        Ok(StoreReport {
            outcome,
            total_bytes: synced.total_bytes,
        })
    }

    /// The mailbox's messages, newest first.
    pub async fn list(&self, mailbox: &Mailbox) -> Result<Vec<MessageSummary>, StoreError> {
        let keys = MailboxKeys::new(mailbox);
        let mut conn = self.conn.clone();
        let ids: Vec<String> = redis::cmd("ZREVRANGE")
            .arg(&keys.index)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let docs: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&keys.sums)
            .arg(&ids)
            .query_async(&mut conn)
            .await?;
        docs.into_iter()
            .flatten()
            .map(|doc| {
                serde_json::from_str(&doc).map_err(|source| StoreError::Corrupt {
                    key: keys.sums.clone(),
                    source,
                })
            })
            .collect()
    }

    /// One message, if the mailbox has it.
    pub async fn get(
        &self,
        mailbox: &Mailbox,
        id: &MessageId,
    ) -> Result<Option<StoredMessage>, StoreError> {
        let keys = MailboxKeys::new(mailbox);
        let mut conn = self.conn.clone();
        let doc: Option<String> = redis::cmd("HGET")
            .arg(&keys.msgs)
            .arg(id.to_string())
            .query_async(&mut conn)
            .await?;
        doc.map(|doc| {
            let mut msg: StoredMessage =
                serde_json::from_str(&doc).map_err(|source| StoreError::Corrupt {
                    key: keys.msgs.clone(),
                    source,
                })?;
            msg.number_attachments();
            Ok(msg)
        })
        .transpose()
    }

    /// The raw bytes of one message, if the mailbox has it.
    pub async fn raw(
        &self,
        mailbox: &Mailbox,
        id: &MessageId,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let keys = MailboxKeys::new(mailbox);
        let mut conn = self.conn.clone();
        Ok(redis::cmd("HGET")
            .arg(&keys.raw)
            .arg(id.to_string())
            .query_async(&mut conn)
            .await?)
    }

    /// Attachment `index` of a message, decoded, unless its body was stripped.
    pub async fn attachment(
        &self,
        mailbox: &Mailbox,
        id: &MessageId,
        index: usize,
    ) -> Result<AttachmentLookup, StoreError> {
        let Some(doc) = self.get(mailbox, id).await? else {
            return Ok(AttachmentLookup::NotFound);
        };
        let Some(listed) = doc.attachments.get(index) else {
            return Ok(AttachmentLookup::NotFound);
        };
        if listed.stripped {
            return Ok(AttachmentLookup::Stripped(
                listed.stripped_reason.unwrap_or(StripReason::Policy),
            ));
        }
        let Some(raw) = self.raw(mailbox, id).await? else {
            return Ok(AttachmentLookup::NotFound);
        };
        Ok(attachment::extract(&raw, index)
            .map_or(AttachmentLookup::NotFound, AttachmentLookup::Found))
    }

    /// Syncs usage after a reader's delete or clear; a failure only delays the index.
    async fn sync_quietly(&self, mailbox: &Mailbox, usage: MailboxUsage, now: u64) {
        if let Err(e) = self.usage.sync(mailbox, usage, now).await {
            tracing::warn!(mailbox = %mailbox, error = %e, "Usage index not updated; the next write to the mailbox will.");
        }
    }

    /// Deletes one message; `false` if the mailbox did not have it.
    pub async fn delete(&self, mailbox: &Mailbox, id: &MessageId) -> Result<bool, StoreError> {
        let keys = MailboxKeys::new(mailbox);
        let now = maildrop_contract::now_ms();
        let mut conn = self.conn.clone();
        let (deleted, bytes, newest, ver): (i64, i64, i64, i64) =
            Self::invocation(&self.delete, &keys)
                .arg(id.to_string())
                .arg(now)
                .invoke_async(&mut conn)
                .await?;
        if deleted == 1 {
            self.sync_quietly(mailbox, usage(bytes, newest, ver), now)
                .await;
        }
        Ok(deleted == 1)
    }

    async fn clear_script(
        &self,
        mailbox: &Mailbox,
        before: Option<u64>,
        now: u64,
    ) -> Result<(u64, MailboxUsage), StoreError> {
        let keys = MailboxKeys::new(mailbox);
        let mut conn = self.conn.clone();
        let before = before.map_or_else(|| "all".to_owned(), |ms| ms.to_string());
        let (n, bytes, newest, ver): (i64, i64, i64, i64) = Self::invocation(&self.clear, &keys)
            .arg(before)
            .arg(now)
            .invoke_async(&mut conn)
            .await?;
        Ok((n.max(0) as u64, usage(bytes, newest, ver)))
    }

    /// Empties a mailbox; returns how many messages it had.
    pub async fn clear(&self, mailbox: &Mailbox) -> Result<u64, StoreError> {
        let now = maildrop_contract::now_ms();
        let (n, usage) = self.clear_script(mailbox, None, now).await?;
        self.sync_quietly(mailbox, usage, now).await;
        Ok(n)
    }

    /// Removes the messages received before `before_ms` (replaying a `cleared` event); returns
    /// how many there were.
    pub async fn clear_before(&self, mailbox: &Mailbox, before_ms: u64) -> Result<u64, StoreError> {
        let now = maildrop_contract::now_ms();
        let (n, usage) = self.clear_script(mailbox, Some(before_ms), now).await?;
        self.usage.sync(mailbox, usage, now).await?;
        Ok(n)
    }

    /// Empties a mailbox to make room (the byte cap), and takes it out of the usage index.
    pub async fn evict(&self, mailbox: &Mailbox) -> Result<Removal, StoreError> {
        let now = maildrop_contract::now_ms();
        let (messages, usage) = self.clear_script(mailbox, None, now).await?;
        let Synced { unlisted, .. } = self.usage.sync(mailbox, usage, now).await?;
        Ok(Removal { messages, unlisted })
    }

    /// Empties a mailbox whose newest message was received at or before `cutoff_ms`, and takes it
    /// out of the usage index; leaves it if a newer message arrived.
    pub async fn expire(&self, mailbox: &Mailbox, cutoff_ms: u64) -> Result<Expiry, StoreError> {
        let keys = MailboxKeys::new(mailbox);
        let now = maildrop_contract::now_ms();
        let mut conn = self.conn.clone();
        let (expired, n, bytes, newest, ver): (i64, i64, i64, i64, i64) =
            Self::invocation(&self.expire, &keys)
                .arg(cutoff_ms)
                .arg(now)
                .invoke_async(&mut conn)
                .await?;
        let synced = self
            .usage
            .sync(mailbox, usage(bytes, newest, ver), now)
            .await?;
        Ok(if expired == 1 {
            Expiry::Expired(Removal {
                messages: n.max(0) as u64,
                unlisted: synced.unlisted,
            })
        } else {
            Expiry::Active
        })
    }

    /// Whether Redis answers (for readiness checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_measured_from_the_receive_time() {
        let limits = Limits {
            max_messages: 10,
            retention: Duration::from_secs(60),
        };
        assert!(!limits.expired(1_000_000, 1_059_999));
        assert!(limits.expired(1_000_000, 1_060_000));
        assert_eq!(limits.cutoff(1_060_000), 1_000_000);
        assert_eq!(limits.cutoff(5), 0, "no underflow near the epoch");
        let forever = Limits {
            max_messages: 10,
            retention: Duration::MAX,
        };
        assert!(!forever.expired(u64::MAX - 1, u64::MAX - 1));
    }
}
