//! Shadow-mode statistics: how a shadow filter's candidate rule set would have decided compared with
//! production, message by message. Written by the reporter, read by the gateway's `/api/stats`.
//!
//! The two verdicts of a message arrive in either order, from two streams (`VERDICTS` and
//! `SHADOW`). [`StatsStore::pair`] is one Lua script: the first side to arrive leaves its outcome
//! in a pending key (`md:{@stats}:shadow:pair:<id>`, TTL `MAILDROP_SHADOW_PAIR_TTL`); the other side
//! moves one of four counters in `md:{@stats}:shadow:counts` and turns the pending key into a
//! `paired` marker with the same TTL. The same side arriving again (a redelivery) finds its own
//! outcome or the marker and changes nothing, so pairing is idempotent within the TTL. Both keys
//! share the statistics' hash tag `{@stats}` (one cluster slot) and its `SCAN` pattern, so a recount
//! clears them.

use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::keys;
use crate::stats::StatsStore;

/// Which filter a verdict came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Production,
    Shadow,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Self::Production => "p",
            Self::Shadow => "s",
        }
    }
}

/// One verdict, as pairing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairing {
    /// The message id.
    pub id: String,
    pub side: Side,
    pub accepted: bool,
    /// The verdict's rule set version (the shadow's is shown beside the counts).
    pub ruleset: String,
}

/// How production and shadow verdicts compared, over every message both judged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowStats {
    pub agree_accepted: u64,
    pub agree_rejected: u64,
    /// Production accepted, the shadow rule set rejected.
    pub accepted_now_rejected: u64,
    /// Production rejected, the shadow rule set accepted.
    pub rejected_now_accepted: u64,
    /// The shadow's rule set version, as of its latest verdict; `null` before any.
    pub ruleset: Option<String>,
}

const PAIR: &str = r#"
-- KEYS: pending, counts
-- ARGV: side ('p'|'s') accepted ('1'|'0') ruleset ttl_ms
local side, accepted, ttl = ARGV[1], ARGV[2], ARGV[4]
if side == 's' then
  redis.call('HSET', KEYS[2], 'ruleset', ARGV[3])
end
local pending = redis.call('GET', KEYS[1])
if not pending then
  redis.call('SET', KEYS[1], side .. accepted, 'PX', ttl)
  return 0
end
if pending == 'paired' or string.sub(pending, 1, 1) == side then
  return 0
end
local other = string.sub(pending, 2, 2)
local production, shadow
if side == 'p' then production, shadow = accepted, other else production, shadow = other, accepted end
local field
if production == '1' and shadow == '1' then field = 'agree_accepted'
elseif production == '0' and shadow == '0' then field = 'agree_rejected'
elseif production == '1' then field = 'accepted_now_rejected'
else field = 'rejected_now_accepted' end
redis.call('HINCRBY', KEYS[2], field, 1)
redis.call('SET', KEYS[1], 'paired', 'PX', ttl)
return 1
"#;

impl StatsStore {
    /// Records one side's verdict of a message; `true` if it completed a pair (a counter moved).
    pub async fn pair(
        &self,
        pairing: &Pairing,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let paired: i64 = redis::Script::new(PAIR)
            .key(keys::shadow_pair(&pairing.id))
            .key(keys::SHADOW_COUNTS)
            .arg(pairing.side.as_str())
            .arg(if pairing.accepted { "1" } else { "0" })
            .arg(&pairing.ruleset)
            .arg(ttl_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(paired == 1)
    }

    /// The shadow-mode counts (all zero when no shadow filter ever ran).
    pub async fn shadow(&self) -> Result<ShadowStats, StoreError> {
        let mut conn = self.conn.clone();
        let fields: std::collections::BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(keys::SHADOW_COUNTS)
            .query_async(&mut conn)
            .await?;
        let n = |f: &str| fields.get(f).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(ShadowStats {
            agree_accepted: n("agree_accepted"),
            agree_rejected: n("agree_rejected"),
            accepted_now_rejected: n("accepted_now_rejected"),
            rejected_now_accepted: n("rejected_now_accepted"),
            ruleset: fields.get("ruleset").cloned(),
        })
    }
}
