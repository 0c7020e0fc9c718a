//! The alias table: `alias → mailbox`, written by whoever reveals an alias, read by whoever
//! receives mail for one (see `maildrop_contract::alias` for why a table is needed).

use std::time::Duration;

use crate::Redis;
use maildrop_contract::Mailbox;

use crate::StoreError;
use crate::keys;

#[derive(Clone)]
pub struct AliasStore {
    conn: Redis,
}

impl AliasStore {
    pub fn new(conn: Redis) -> Self {
        Self { conn }
    }

    /// Records that `alias` delivers to `mailbox`, for `ttl` from now (refreshed on every call).
    pub async fn remember(
        &self,
        alias: &Mailbox,
        mailbox: &Mailbox,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let () = redis::cmd("SET")
            .arg(keys::alias(alias))
            .arg(mailbox.as_str())
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The mailbox `alias` delivers to, if it was ever revealed (and has not expired).
    pub async fn resolve(&self, alias: &Mailbox) -> Result<Option<Mailbox>, StoreError> {
        let mut conn = self.conn.clone();
        let target: Option<String> = redis::cmd("GET")
            .arg(keys::alias(alias))
            .query_async(&mut conn)
            .await?;
        Ok(target.and_then(|t| Mailbox::parse(&t).ok()))
    }
}
