//! What every handler can reach.

use std::sync::Arc;

use maildrop_contract::Mailbox;
use maildrop_store::{AliasStore, MailStore, StatsStore, StoreError};
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;

#[derive(Clone)]
pub struct AppState {
    pub mail: MailStore,
    pub stats: StatsStore,
    pub js: async_nats::jetstream::Context,
    pub hub: Arc<Hub>,
    pub domains: Arc<Vec<String>>,
    pub aliases: AliasStore,
    /// The alias key (`MAILDROP_ALIAS_KEY`); never logged.
    pub alias_key: Arc<[u8]>,
    pub alias_ttl: std::time::Duration,
    pub rate_limiter: Option<maildrop_store::ratelimit::RateLimiter>,
    pub trusted_proxies: Arc<maildrop_runtime::cidr::CidrList>,
    /// `MAILDROP_CORS_ORIGINS`: `*` or a comma-separated list.
    pub cors_origins: Arc<str>,
    pub watchers: Arc<crate::guard::WatcherSlots>,
    /// The latest counters, kept fresh by [`crate::stats_feed`].
    pub live_stats: tokio::sync::watch::Receiver<Option<maildrop_store::Stats>>,
    /// Cancelled on shutdown: WebSockets close instead of holding the server open.
    pub cancel: CancellationToken,
}

impl AppState {
    /// The alias of `mailbox`, recorded so that mail to it is delivered.
    pub async fn reveal_alias(&self, mailbox: &Mailbox) -> Result<Mailbox, StoreError> {
        let alias = maildrop_contract::alias::alias_of(&self.alias_key, mailbox);
        self.aliases
            .remember(&alias, mailbox, self.alias_ttl)
            .await?;
        Ok(alias)
    }
}
