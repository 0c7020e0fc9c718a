//! Request rate limiting, shared by every gateway instance: one token bucket per client IP in Redis.
//!
//! The bucket holds `capacity` tokens and refills `capacity` per `period` (maildrop.cc's default:
//! 50 requests per 10 s). A request takes a token or is refused with the time until the next one.
//! The script reads Redis's own clock (`TIME`), so gateways with skewed clocks agree, and the key
//! expires once the bucket would be full again, so idle clients cost nothing.

use std::net::IpAddr;
use std::time::Duration;

use crate::Redis;

use crate::StoreError;
use crate::keys;

const TAKE: &str = r#"
-- KEYS: bucket   ARGV: capacity, period_ms
local capacity = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
local rate = capacity / period
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local allowed, retry = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], period + 1000)
return {allowed, retry}
"#;

/// A rate limit: `capacity` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub capacity: u32,
    pub period: Duration,
}

/// The outcome for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Refused; a token will be there after this long.
    Limited {
        retry_after: Duration,
    },
}

#[derive(Clone)]
pub struct RateLimiter {
    conn: Redis,
    rate: Rate,
    take: redis::Script,
}

impl RateLimiter {
    pub fn new(conn: Redis, rate: Rate) -> Self {
        Self {
            conn,
            rate,
            take: redis::Script::new(TAKE),
        }
    }

    /// Takes a token for `ip`.
    pub async fn take(&self, ip: IpAddr) -> Result<Decision, StoreError> {
        let mut conn = self.conn.clone();
        let (allowed, retry_ms): (i64, u64) = self
            .take
            .key(keys::rate_limit(ip))
            .arg(self.rate.capacity)
            .arg(self.rate.period.as_millis().max(1) as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(if allowed == 1 {
            Decision::Allowed
        } else {
            Decision::Limited {
                retry_after: Duration::from_millis(retry_ms),
            }
        })
    }
}
