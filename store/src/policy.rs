//! Connection policy kept in Redis: blocked client IPs and the greylist.
//!
//! Both are read by the ingest while an SMTP client waits, so every lookup is one key and one round
//! trip, and every entry carries its own expiry (Redis `PX`), so nothing here needs a sweeper:
//!
//! - **Blocked IPs** are written by the filter (spam sources) and by operators, and read by the
//!   ingest when a client connects. One string key per address, [`keys::blocked_ip`], holding the
//!   reason, with the block's lifetime as the key's TTL (none for a block until
//!   [`PolicyStore::unblock_ip`]). A key per entry rather than one sorted set gives an O(1) `GET`,
//!   per-entry expiry that Redis enforces by itself, and no hot key in a cluster. The reason is
//!   shown to the blocked client in the `554` reply, so it must not hold anything private.
//! - **The greylist** remembers (client network, HELO) pairs: the client's IPv4 `/24` or IPv6
//!   `/64` (big senders retry from another address of the same pool) and its `EHLO` name,
//!   lower-cased. [`PolicyStore::greylist`] is one Lua script, atomic across ingest instances: the
//!   first contact is recorded and deferred, a retry after `delay` passes and whitelists the pair,
//!   and a whitelisted pair passes at once. The caller supplies the time, so every rule can be
//!   tested with a fake clock, and every instance must use the same (wall) clock.
//!
//! Addresses are written in their canonical form (`::ffff:192.0.2.1` is `192.0.2.1`), so a
//! dual-stack listener and a writer that sees IPv4 agree on the key.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::Redis;

use crate::StoreError;
use crate::keys;

/// Longest reason kept with a block; the reason travels in an SMTP reply line.
pub const MAX_REASON: usize = 200;

/// What the greylist says about a (network, HELO) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greylist {
    /// Passed before and still whitelisted (its lifetime is renewed).
    Known,
    /// Came back after the delay: passes now and is whitelisted from here on.
    Passed,
    /// Not yet: try again in this long. `first_contact` is true when this call recorded the pair.
    Deferred {
        retry_in: Duration,
        first_contact: bool,
    },
}

impl Greylist {
    pub fn passes(self) -> bool {
        !matches!(self, Self::Deferred { .. })
    }
}

/// The greylisted pair: the client's network and its HELO name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreylistKey {
    /// `192.0.2.0/24` or `2001:db8::/64`.
    pub network: String,
    /// The `EHLO`/`HELO` argument, lower-cased.
    pub helo: String,
}

impl GreylistKey {
    pub fn new(client: IpAddr, helo: &str) -> Self {
        Self {
            network: greylist_network(client),
            helo: helo.trim().to_lowercase(),
        }
    }
}

/// The network a client is greylisted by: its IPv4 `/24` or its IPv6 `/64`.
pub fn greylist_network(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("{}/24", Ipv4Addr::from(u32::from(v4) & 0xffff_ff00)),
        IpAddr::V6(v6) => format!(
            "{}/64",
            Ipv6Addr::from(u128::from(v6) & !(u64::MAX as u128))
        ),
    }
}

const GREYLIST: &str = r#"
-- KEYS: the pair's key
-- ARGV: now_ms delay_ms expiry_ms
-- The value is the first contact's time in ms, or "pass" once the pair has passed.
-- Returns {status, retry_in_ms}: 0 deferred (first contact), 1 deferred (retry too early),
-- 2 passed now, 3 known.
local now = tonumber(ARGV[1])
local delay = tonumber(ARGV[2])
local value = redis.call('GET', KEYS[1])
if value == 'pass' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {3, 0}
end
if not value then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  return {0, delay}
end
local waited = now - tonumber(value)
if waited >= delay then
  redis.call('SET', KEYS[1], 'pass', 'PX', ARGV[3])
  return {2, 0}
end
return {1, delay - waited}
"#;

const EXTEND_BLOCK: &str = r#"
-- KEYS: the block key
-- ARGV: reason ttl_ms
-- Returns 1 if the block was written, 0 if a block at least as long was there already.
local left = redis.call('PTTL', KEYS[1])
if left == -1 or left >= tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#;

/// Reads and writes the connection policy.
#[derive(Clone)]
pub struct PolicyStore {
    conn: Redis,
    greylist: redis::Script,
    extend_block: redis::Script,
}

impl PolicyStore {
    pub fn new(conn: Redis) -> Self {
        Self {
            conn,
            greylist: redis::Script::new(GREYLIST),
            extend_block: redis::Script::new(EXTEND_BLOCK),
        }
    }

    /// Blocks `ip` for `ttl` (until unblocked when `None`), replacing any earlier block.
    pub async fn block_ip(
        &self,
        ip: IpAddr,
        reason: &str,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(keys::blocked_ip(ip)).arg(clean_reason(reason));
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl));
        }
        let mut conn = self.conn.clone();
        let _: () = cmd.query_async(&mut conn).await?;
        Ok(())
    }

    /// Blocks `ip` for at least `ttl`, never shortening a block already there (an operator's block
    /// without expiry stays as it is): what the filter's feedback uses, so that an automatic
    /// 5-minute ban cannot lift a longer one. `true` if this call wrote the block.
    pub async fn extend_block(
        &self,
        ip: IpAddr,
        reason: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let written: u8 = self
            .extend_block
            .key(keys::blocked_ip(ip))
            .arg(clean_reason(reason))
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await?;
        Ok(written == 1)
    }

    /// Lifts a block; `false` if `ip` was not blocked.
    pub async fn unblock_ip(&self, ip: IpAddr) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let n: u64 = redis::cmd("DEL")
            .arg(keys::blocked_ip(ip))
            .query_async(&mut conn)
            .await?;
        Ok(n > 0)
    }

    /// The reason `ip` is blocked, if it is.
    pub async fn is_blocked(&self, ip: IpAddr) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("GET")
            .arg(keys::blocked_ip(ip))
            .query_async(&mut conn)
            .await?)
    }

    /// Records a contact of `key` at `now_ms` and says whether it passes the greylist.
    ///
    /// A pair passes once it comes back at least `delay` after its first contact; an entry, pending
    /// or whitelisted, is forgotten `expiry` after it was last renewed (a pending entry is never
    /// renewed: its sender has `expiry` to come back).
    pub async fn greylist(
        &self,
        key: &GreylistKey,
        now_ms: u64,
        delay: Duration,
        expiry: Duration,
    ) -> Result<Greylist, StoreError> {
        let mut conn = self.conn.clone();
        let (status, retry_in): (u8, u64) = self
            .greylist
            .key(keys::greylist(&key.network, &key.helo))
            .arg(now_ms)
            .arg(millis(delay))
            .arg(millis(expiry))
            .invoke_async(&mut conn)
            .await?;
        let retry_in = Duration::from_millis(retry_in);
        Ok(match status {
            3 => Greylist::Known,
            2 => Greylist::Passed,
            0 => Greylist::Deferred {
                retry_in,
                first_contact: true,
            },
            _ => Greylist::Deferred {
                retry_in,
                first_contact: false,
            },
        })
    }
}

/// A reason fit for an SMTP reply line: no control characters, at most [`MAX_REASON`] characters.
fn clean_reason(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON)
        .collect()
}

/// Whole milliseconds, at least one (Redis refuses `PX 0`).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_clients_are_greylisted_by_their_slash_24() {
        assert_eq!(greylist_network(ip("192.0.2.77")), "192.0.2.0/24");
        assert_eq!(greylist_network(ip("::ffff:192.0.2.77")), "192.0.2.0/24");
    }

    #[test]
    fn ipv6_clients_are_greylisted_by_their_slash_64() {
        assert_eq!(
            greylist_network(ip("2001:db8:1:2:3:4:5:6")),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn the_helo_is_compared_without_case() {
        assert_eq!(
            GreylistKey::new(ip("192.0.2.1"), " MX.Example.ORG "),
            GreylistKey::new(ip("192.0.2.200"), "mx.example.org")
        );
    }

    #[test]
    fn only_deferrals_fail() {
        assert!(Greylist::Known.passes());
        assert!(Greylist::Passed.passes());
        assert!(
            !Greylist::Deferred {
                retry_in: Duration::ZERO,
                first_contact: false
            }
            .passes()
        );
    }

    #[test]
    fn px_is_never_zero() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
    }
}
