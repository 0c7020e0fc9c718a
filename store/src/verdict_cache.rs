//! The filter's verdict cache: what was found out about a client (IP and HELO), kept for a while
//! so that a repeat sender skips the expensive checks.
//!
//! One string key per pair ([`keys::verdict_cache`]) holding a JSON document whose shape is the
//! filter's business, with the cache's lifetime as the key's TTL. This module only stores and
//! fetches the text; the filter decides what goes in (see `maildrop_filter::verdict_cache`).

use std::net::IpAddr;
use std::time::Duration;

use crate::Redis;

use crate::StoreError;
use crate::keys;

#[derive(Clone)]
pub struct VerdictCacheStore {
    conn: Redis,
}

impl VerdictCacheStore {
    pub fn new(conn: Redis) -> Self {
        Self { conn }
    }

    /// The cached document of (`ip`, `helo`), if any.
    pub async fn get(&self, ip: IpAddr, helo: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("GET")
            .arg(keys::verdict_cache(ip, helo))
            .query_async(&mut conn)
            .await?)
    }

    /// Caches `document` for (`ip`, `helo`) for `ttl`, replacing what was there.
    pub async fn put(
        &self,
        ip: IpAddr,
        helo: &str,
        document: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let _: () = redis::cmd("SET")
            .arg(keys::verdict_cache(ip, helo))
            .arg(document)
            .arg("PX")
            .arg(ms)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}
