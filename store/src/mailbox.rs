//! Mailboxes in Redis: store, list, read, delete, clear.
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
//! script and returned, so the writer can announce them; every key of the mailbox gets its expiry
//! pushed to `retention` after the newest message.

use std::time::Duration;

use maildrop_contract::{Mailbox, MessageId, MessageSummary};
use redis::aio::ConnectionManager;

use crate::StoreError;
use crate::keys::MailboxKeys;
use crate::message::StoredMessage;

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
}

const STORE: &str = r#"
-- KEYS: index sums msgs raw seen
-- ARGV: id score summary detail raw max_messages ttl_secs seen_keep
if redis.call('ZSCORE', KEYS[5], ARGV[1]) then
  if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {3, {}} end
  return {0, {}}
end
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
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
    if id == ARGV[1] then status = 2 else table.insert(evicted, id) end
  end
end
for i = 1, 5 do redis.call('EXPIRE', KEYS[i], ARGV[7]) end
return {status, evicted}
"#;

const DELETE: &str = r#"
-- KEYS: index sums msgs raw
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return 1
"#;

const CLEAR: &str = r#"
-- KEYS: index sums msgs raw (seen stays, so a redelivery cannot bring a message back)
local n = redis.call('ZCARD', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return n
"#;

/// Reads and writes mailboxes.
#[derive(Clone)]
pub struct MailStore {
    conn: ConnectionManager,
    limits: Limits,
    store: redis::Script,
    delete: redis::Script,
    clear: redis::Script,
}

impl MailStore {
    pub fn new(conn: ConnectionManager, limits: Limits) -> Self {
        Self {
            conn,
            limits,
            store: redis::Script::new(STORE),
            delete: redis::Script::new(DELETE),
            clear: redis::Script::new(CLEAR),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Stores a message in its mailbox, once.
    pub async fn store(&self, msg: &StoredMessage, raw: &[u8]) -> Result<StoreOutcome, StoreError> {
        let keys = MailboxKeys::new(&msg.summary.mailbox);
        let summary =
            serde_json::to_string(&msg.summary).map_err(|source| StoreError::Corrupt {
                key: keys.sums.clone(),
                source,
            })?;
        let detail = serde_json::to_string(msg).map_err(|source| StoreError::Corrupt {
            key: keys.msgs.clone(),
            source,
        })?;
        let mut conn = self.conn.clone();
        let (status, evicted): (i64, Vec<String>) = self
            .store
            .key(&keys.index)
            .key(&keys.sums)
            .key(&keys.msgs)
            .key(&keys.raw)
            .key(&keys.seen)
            .arg(msg.summary.id.to_string())
            .arg(msg.summary.received_ms)
            .arg(summary)
            .arg(detail)
            .arg(raw)
            .arg(self.limits.max_messages)
            .arg(self.limits.retention.as_secs().max(1))
            .arg(SEEN_KEEP)
            .invoke_async(&mut conn)
            .await?;
        let evicted = evicted.iter().filter_map(|id| id.parse().ok()).collect();
        Ok(match status {
            0 => StoreOutcome::Duplicate { present: false },
            3 => StoreOutcome::Duplicate { present: true },
            2 => StoreOutcome::TooOld,
            _ => StoreOutcome::Stored { evicted },
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
            serde_json::from_str(&doc).map_err(|source| StoreError::Corrupt {
                key: keys.msgs.clone(),
                source,
            })
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

    /// Deletes one message; `false` if the mailbox did not have it.
    pub async fn delete(&self, mailbox: &Mailbox, id: &MessageId) -> Result<bool, StoreError> {
        let keys = MailboxKeys::new(mailbox);
        let mut conn = self.conn.clone();
        let n: i64 = self
            .delete
            .key(&keys.index)
            .key(&keys.sums)
            .key(&keys.msgs)
            .key(&keys.raw)
            .arg(id.to_string())
            .invoke_async(&mut conn)
            .await?;
        Ok(n == 1)
    }

    /// Empties a mailbox; returns how many messages it had.
    pub async fn clear(&self, mailbox: &Mailbox) -> Result<u64, StoreError> {
        let keys = MailboxKeys::new(mailbox);
        let mut conn = self.conn.clone();
        let n: u64 = self
            .clear
            .key(&keys.index)
            .key(&keys.sums)
            .key(&keys.msgs)
            .key(&keys.raw)
            .invoke_async(&mut conn)
            .await?;
        Ok(n)
    }

    /// Whether Redis answers (for readiness checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}
