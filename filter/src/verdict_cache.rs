//! The verdict cache: what was found out about a *client* (its IP and HELO), reused for its next
//! messages so a repeat sender skips the expensive checks.
//!
//! **What is cached** is exactly the facts that depend on nothing but the client IP and the HELO
//! name: DNS blocklist listings of the IP, and the SPF answer for the HELO identity. Never anything
//! that depends on the message (its sender's SPF, DKIM, DMARC, URIs in the body, the subject), and
//! never the Redis facts (run-time blocklists, flood counts), which must be live. Rules still run
//! on every message: the cache saves lookups, not judgement, so a cached client can still be
//! rejected for what it sends, and a rule set with other weights weighs the same cached facts
//! anew.
//!
//! **How a gatherer uses it**: ask [`VerdictCache::get`] first, with a `settings` string that
//! names whatever shaped the facts (the DNS zones queried, say); on a miss, look up and
//! [`VerdictCache::put`] the result with the same string. An entry written under other settings
//! is a miss, so a changed zone list is never answered from the cache. The document is JSON of
//! the gatherer's own type, kept in Redis (`maildrop_store::verdict_cache`) for
//! `MAILDROP_VERDICT_CACHE_TTL` (24 h, like the old service; `0s` turns the cache off).
//!
//! The cache is an optimisation: a Redis error is logged and counts as a miss (on `get`) or is
//! dropped (on `put`); it never fails a message.

use std::net::IpAddr;
use std::time::Duration;

use maildrop_store::verdict_cache::VerdictCacheStore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Clone)]
pub struct VerdictCache {
    store: Option<VerdictCacheStore>,
    ttl: Duration,
}

#[derive(Serialize, Deserialize)]
struct Cached<T> {
    settings: String,
    facts: T,
}

impl VerdictCache {
    /// A cache in Redis keeping entries for `ttl`; off when `ttl` is zero.
    pub fn new(conn: maildrop_store::Redis, ttl: Duration) -> Self {
        Self {
            store: (!ttl.is_zero()).then(|| VerdictCacheStore::new(conn)),
            ttl,
        }
    }

    /// No cache: every `get` misses, every `put` is dropped (replays, tests).
    pub fn off() -> Self {
        Self {
            store: None,
            ttl: Duration::ZERO,
        }
    }

    pub fn is_on(&self) -> bool {
        self.store.is_some()
    }

    /// The facts cached for (`ip`, `helo`) under the same `settings`, if any.
    pub async fn get<T: DeserializeOwned>(
        &self,
        ip: IpAddr,
        helo: &str,
        settings: &str,
    ) -> Option<T> {
        let store = self.store.as_ref()?;
        let text = match store.get(ip, helo).await {
            Ok(text) => text?,
            Err(e) => {
                tracing::warn!(client_ip = %ip, error = %e, "Verdict cache not read; looking up anew.");
                return None;
            }
        };
        match serde_json::from_str::<Cached<T>>(&text) {
            Ok(cached) if cached.settings == settings => Some(cached.facts),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(client_ip = %ip, error = %e, "Verdict cache entry of another shape; ignored.");
                None
            }
        }
    }

    /// Caches `facts` for (`ip`, `helo`) under `settings`.
    pub async fn put<T: Serialize>(&self, ip: IpAddr, helo: &str, settings: &str, facts: &T) {
        let Some(store) = self.store.as_ref() else {
            return;
        };
        let document = match serde_json::to_string(&Cached {
            settings: settings.to_owned(),
            facts,
        }) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "Verdict cache entry not serialisable; not cached.");
                return;
            }
        };
        if let Err(e) = store.put(ip, helo, &document, self.ttl).await {
            tracing::warn!(client_ip = %ip, error = %e, "Verdict cache not written.");
        }
    }
}
