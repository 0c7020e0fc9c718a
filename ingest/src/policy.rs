//! The ingest's side of the connection policy kept in Redis: is this client blocked, and does it
//! pass the greylist. The layout and the scripts are `maildrop_store::policy`'s; this module adds
//! what an SMTP server waiting on them needs.
//!
//! **Redis never holds mail hostage: every check fails open.** The blocklist and the greylist are
//! defences, not the record of what was received; refusing or delaying all mail because a view
//! store is down would turn a Redis outage into a mail outage. So:
//!
//! - Redis is connected in the background. The ingest starts, and accepts mail, before Redis
//!   answers; until it does, checks are skipped.
//! - Every check is bounded by `MAILDROP_POLICY_TIMEOUT` (default 500 ms). An error or a timeout
//!   lets the client in (not blocked; greylist passed) and logs a warning, at most one per
//!   [`WARN_EVERY`] with the count of the others, so an outage does not flood the log.
//!
//! The price is that a blocked client gets in while Redis is away; the filter still judges
//! everything it sends.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use maildrop_contract::{Mailbox, alias};
use maildrop_runtime::connect;
use maildrop_store::{AliasStore, Greylist, GreylistKey, PolicyStore, StoreError};
use tokio_util::sync::CancellationToken;

use crate::smtp::ClientVerdict;

/// The shortest time between two fail-open warnings of one kind.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Greylisting settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreylistSettings {
    /// How long after its first contact a client is accepted.
    pub delay: Duration,
    /// How long an entry lives without contact (a pending one is never renewed).
    pub expiry: Duration,
}

/// The Redis URL does not parse.
#[derive(Debug, thiserror::Error)]
#[error("MAILDROP_REDIS_URL: {0}")]
pub struct RedisUrlError(#[source] redis::RedisError);

/// Aliases could not be resolved (Redis unavailable).
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve aliases")]
pub struct AliasUnavailable(#[source] Unavailable);

/// Blocked-IP and greylist checks that fail open, and alias resolution that does not.
pub struct Policy {
    store: Arc<OnceLock<PolicyStore>>,
    aliases: Arc<OnceLock<AliasStore>>,
    timeout: Duration,
    greylist: Option<GreylistSettings>,
    blocklist_warnings: Throttle,
    greylist_warnings: Throttle,
}

/// Why a check could not be made.
#[derive(Debug, thiserror::Error)]
enum Unavailable {
    #[error("not connected to Redis yet")]
    NotConnected,
    #[error("no answer from Redis within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Policy {
    /// Starts connecting to Redis at `url` in the background (until `cancel`). A URL that cannot
    /// be a Redis URL is an error now, not a warning forever.
    pub fn connect(
        url: &str,
        timeout: Duration,
        greylist: Option<GreylistSettings>,
        cancel: &CancellationToken,
    ) -> Result<Self, RedisUrlError> {
        maildrop_store::RedisTarget::parse(url).map_err(RedisUrlError)?;
        let store = Arc::new(OnceLock::new());
        let aliases = Arc::new(OnceLock::new());
        let (cell, alias_cell, url, cancel) = (
            store.clone(),
            aliases.clone(),
            url.to_owned(),
            cancel.clone(),
        );
        tokio::spawn(async move {
            match connect::redis(&url, &cancel).await {
                Ok(conn) => {
                    let _ = alias_cell.set(AliasStore::new(conn.clone()));
                    let _ = cell.set(PolicyStore::new(conn));
                }
                Err(e) => tracing::debug!(error = %e, "Gave up connecting to Redis."),
            }
        });
        Ok(Self::with_store(store, aliases, timeout, greylist))
    }

    fn with_store(
        store: Arc<OnceLock<PolicyStore>>,
        aliases: Arc<OnceLock<AliasStore>>,
        timeout: Duration,
        greylist: Option<GreylistSettings>,
    ) -> Self {
        Self {
            store,
            aliases,
            timeout,
            greylist,
            blocklist_warnings: Throttle::default(),
            greylist_warnings: Throttle::default(),
        }
    }

    pub fn greylisting(&self) -> bool {
        self.greylist.is_some()
    }

    /// The reason `ip` is blocked, if it is and Redis answers in time.
    pub async fn blocked(&self, ip: IpAddr) -> Option<String> {
        let check = async {
            let store = self.store.get().ok_or(Unavailable::NotConnected)?;
            Ok::<_, Unavailable>(store.is_blocked(ip).await?)
        };
        match self.bounded(check).await {
            Ok(reason) => reason,
            Err(e) => {
                if let Some(suppressed) = self.blocklist_warnings.allow() {
                    tracing::warn!(client_ip = %ip, error = %e, suppressed, "Blocked-IP check failed; letting the client in.");
                }
                None
            }
        }
    }

    /// Whether `ip` greeting as `helo` may send mail now. Accept when greylisting is off.
    pub async fn greylist(&self, ip: IpAddr, helo: &str) -> ClientVerdict {
        let Some(settings) = self.greylist else {
            return ClientVerdict::Accept;
        };
        let key = GreylistKey::new(ip, helo);
        let check = async {
            let store = self.store.get().ok_or(Unavailable::NotConnected)?;
            let now = maildrop_contract::now_ms();
            Ok::<_, Unavailable>(
                store
                    .greylist(&key, now, settings.delay, settings.expiry)
                    .await?,
            )
        };
        match self.bounded(check).await {
            Ok(Greylist::Known) => {
                tracing::debug!(client_ip = %ip, network = %key.network, helo = %key.helo, "Client known to the greylist.");
                ClientVerdict::Accept
            }
            Ok(Greylist::Passed) => {
                tracing::info!(client_ip = %ip, network = %key.network, helo = %key.helo, "Client came back after the greylist delay; accepted from now on.");
                ClientVerdict::Accept
            }
            Ok(Greylist::Deferred {
                retry_in,
                first_contact,
            }) => {
                tracing::info!(client_ip = %ip, network = %key.network, helo = %key.helo, first_contact, retry_in = ?retry_in, "Client greylisted; answered 451.");
                ClientVerdict::Defer {
                    reason: format!(
                        "Greylisted, please try again in {} seconds",
                        retry_in.as_secs().max(1)
                    ),
                }
            }
            Err(e) => {
                if let Some(suppressed) = self.greylist_warnings.allow() {
                    tracing::warn!(client_ip = %ip, error = %e, suppressed, "Greylist check failed; letting the client in.");
                }
                ClientVerdict::Accept
            }
        }
    }

    /// Replaces every alias among `mailboxes` by the mailbox it delivers to (see
    /// `maildrop_contract::alias`), then drops repeats. An alias nobody revealed stays as it is.
    /// Unlike the checks above this does not fail open: mail for an alias must not land in the
    /// wrong mailbox because Redis was away, so the caller answers 451 and the client retries.
    pub async fn resolve_aliases(
        &self,
        mailboxes: &mut Vec<Mailbox>,
    ) -> Result<(), AliasUnavailable> {
        if !mailboxes.iter().any(alias::is_alias) {
            return Ok(());
        }
        let lookup = async {
            let aliases = self.aliases.get().ok_or(Unavailable::NotConnected)?;
            let mut resolved = Vec::with_capacity(mailboxes.len());
            for mailbox in mailboxes.iter() {
                let target = if alias::is_alias(mailbox) {
                    aliases.resolve(mailbox).await?
                } else {
                    None
                };
                if let Some(target) = &target {
                    tracing::debug!(alias = %mailbox, mailbox = %target, "Alias resolved.");
                }
                let mailbox = target.unwrap_or_else(|| mailbox.clone());
                if !resolved.contains(&mailbox) {
                    resolved.push(mailbox);
                }
            }
            Ok::<_, Unavailable>(resolved)
        };
        *mailboxes = self.bounded(lookup).await.map_err(AliasUnavailable)?;
        Ok(())
    }

    async fn bounded<T>(
        &self,
        check: impl Future<Output = Result<T, Unavailable>>,
    ) -> Result<T, Unavailable> {
        tokio::time::timeout(self.timeout, check)
            .await
            .unwrap_or(Err(Unavailable::Timeout(self.timeout)))
    }
}

/// Lets one event through per [`WARN_EVERY`] and counts the others.
#[derive(Debug, Default)]
struct Throttle {
    /// Milliseconds since the process's first warning, plus one; zero before any.
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    /// `Some(events suppressed since the last one let through)` when this one may be logged.
    fn allow(&self) -> Option<u64> {
        self.allow_at(elapsed_ms())
    }

    fn allow_at(&self, now_ms: u64) -> Option<u64> {
        let now = now_ms.saturating_add(1);
        let last = self.last.load(Ordering::Relaxed);
        let every = WARN_EVERY.as_millis() as u64;
        if last != 0 && now.saturating_sub(last) < every {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .ok()
            .map(|_| self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// A monotonic clock in milliseconds for [`Throttle`].
fn elapsed_ms() -> u64 {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_lets_one_through_per_period_and_counts_the_rest() {
        let t = Throttle::default();
        assert_eq!(t.allow_at(0), Some(0));
        assert_eq!(t.allow_at(1), None);
        assert_eq!(t.allow_at(9_998), None);
        assert_eq!(t.allow_at(10_000), Some(2));
        assert_eq!(t.allow_at(10_001), None);
        assert_eq!(t.allow_at(30_000), Some(1));
    }

    #[tokio::test]
    async fn without_redis_every_check_fails_open() {
        let policy = Policy::with_store(
            Arc::new(OnceLock::new()),
            Arc::new(OnceLock::new()),
            Duration::from_millis(50),
            Some(GreylistSettings {
                delay: Duration::from_secs(300),
                expiry: Duration::from_secs(3600),
            }),
        );
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(policy.blocked(ip).await, None);
        // …but alias resolution does not: a guess would put mail in the wrong mailbox.
        let alias = maildrop_contract::alias::alias_of(b"k", &Mailbox::parse("bob").unwrap());
        assert!(policy.resolve_aliases(&mut vec![alias]).await.is_err());
        let mut plain = vec![Mailbox::parse("bob").unwrap()];
        assert!(
            policy.resolve_aliases(&mut plain).await.is_ok(),
            "no alias, no lookup"
        );
        assert_eq!(
            policy.greylist(ip, "mx.example.org").await,
            ClientVerdict::Accept
        );
    }

    #[tokio::test]
    async fn without_greylisting_nothing_is_asked() {
        let policy = Policy::with_store(
            Arc::new(OnceLock::new()),
            Arc::new(OnceLock::new()),
            Duration::from_millis(50),
            None,
        );
        assert!(!policy.greylisting());
        assert_eq!(
            policy
                .greylist("192.0.2.1".parse().unwrap(), "mx.example.org")
                .await,
            ClientVerdict::Accept
        );
    }

    #[test]
    fn a_bad_url_is_refused_at_once() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let err = Policy::connect(
            "http://not-redis",
            Duration::from_millis(50),
            None,
            &CancellationToken::new(),
        )
        .err()
        .unwrap();
        assert!(err.to_string().starts_with("MAILDROP_REDIS_URL"), "{err}");
    }
}
