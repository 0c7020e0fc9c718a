//! Flood counts: messages per client IP and per subject over a sliding window, and the bans that
//! follow a count past its limit. Written and read by the filter.
//!
//! Each counted thing (a [`Dimension`]) has two keys under one hash tag ([`keys::flood`]), so one
//! Lua script sees both atomically on one cluster slot:
//!
//! - `…:seen`, a sorted set of message ids scored by their receive time (ms). Adding is `ZADD`,
//!   so a redelivered message is counted once: the count is the number of distinct ids received
//!   in the window up to and including this message's receive time. Counting by receive time, not
//!   by arrival at the filter, keeps the answer the same whichever instance handles a message and
//!   in whatever order. Entries older than two windows are pruned (messages are handled slightly
//!   out of order), the set is capped at `2 × limit + 64` entries (past the limit the exact count
//!   does not matter), and the key expires two windows after its last write.
//! - `…:ban`, the receive time of the message that first went past the limit, with the ban's
//!   length as its TTL. While it lives, every message received at or after that time is over the
//!   limit whatever its count. A message received earlier that is handled later still goes by its
//!   count (and may move the start earlier).

use std::net::IpAddr;
use std::time::Duration;

use crate::Redis;

use crate::StoreError;
use crate::keys;

/// A subject as the flood limit compares it: decoded, case-folded, white space folded; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject(String);

impl Subject {
    /// `None` for a subject that is empty once folded (those are not counted).
    pub fn new(subject: &str) -> Option<Self> {
        let folded = crate::blocklist::fold_subject(subject);
        (!folded.is_empty()).then_some(Self(folded))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What is counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dimension {
    Ip(IpAddr),
    Subject(Subject),
}

/// One count, as of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// Distinct messages received in `(at - window, at]`, this one included.
    pub count: u64,
    /// When the running ban began (receive time, ms), if one runs.
    pub banned_since_ms: Option<u64>,
}

const COUNT: &str = r#"
-- KEYS: seen, ban
-- ARGV: member at_ms window_ms limit ban_ms cap
local at = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], at, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (at - 2 * window))
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[6]) + 1))
redis.call('PEXPIRE', KEYS[1], 2 * window)
local count = redis.call('ZCOUNT', KEYS[1], '(' .. (at - window), at)
local ban = redis.call('GET', KEYS[2])
if count > limit then
  if not ban then
    redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[5])
    ban = ARGV[2]
  elseif tonumber(ban) > at then
    redis.call('SET', KEYS[2], ARGV[2], 'KEEPTTL')
    ban = ARGV[2]
  end
end
if ban then
  return {count, tonumber(ban)}
end
return {count, -1}
"#;

/// Counts messages per dimension.
#[derive(Clone)]
pub struct FloodStore {
    conn: Redis,
    count: redis::Script,
}

impl FloodStore {
    pub fn new(conn: Redis) -> Self {
        Self {
            conn,
            count: redis::Script::new(COUNT),
        }
    }

    /// Counts message `id`, received at `at_ms`, in `dimension`; starts a ban of `ban` when the
    /// count passes `limit`.
    pub async fn count(
        &self,
        dimension: &Dimension,
        id: &str,
        at_ms: u64,
        window: Duration,
        limit: u64,
        ban: Duration,
    ) -> Result<Count, StoreError> {
        let (seen, ban_key) = keys::flood(dimension);
        let mut conn = self.conn.clone();
        let (count, since): (u64, i64) = self
            .count
            .key(seen)
            .key(ban_key)
            .arg(id)
            .arg(at_ms)
            .arg(millis(window))
            .arg(limit)
            .arg(millis(ban))
            .arg(limit.saturating_mul(2).saturating_add(64))
            .invoke_async(&mut conn)
            .await?;
        Ok(Count {
            count,
            banned_since_ms: u64::try_from(since).ok(),
        })
    }

    /// Lifts a running ban (the counts stay).
    pub async fn unban(&self, dimension: &Dimension) -> Result<bool, StoreError> {
        let (_, ban) = keys::flood(dimension);
        let mut conn = self.conn.clone();
        let n: u64 = redis::cmd("DEL").arg(ban).query_async(&mut conn).await?;
        Ok(n > 0)
    }
}

/// Whole milliseconds, at least one (Redis refuses `PX 0`).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_subjects_are_not_counted_and_others_fold() {
        assert_eq!(Subject::new("  \t "), None);
        assert_eq!(Subject::new(" Win  BIG ").unwrap().as_str(), "win big");
    }
}
