//! Feedback to the ingest: a client the filter rejected for what it *is* (over a flood limit, on
//! a DNS blocklist) is refused at its next connection, before it can send anything.
//!
//! A rule asks for it with [`Hit::blocking_client`](crate::rules::Hit::blocking_client); the rule
//! set carries the longest such request of a rejected message as its
//! [`BlockClient`](crate::rules::BlockClient), and the handler passes it to [`block_client`]
//! before it publishes the verdict (a redelivery repeats both, harmlessly). The entry goes into the
//! blocked-IP set the ingest reads at connect (`maildrop_store::policy`), with the block's lifetime
//! as its expiry, and never shortens a longer block already there.

use std::net::IpAddr;

use maildrop_store::{PolicyStore, StoreError};

use crate::rules::BlockClient;

/// Blocks `ip` at the ingest as `block` asks; `true` if this made or lengthened the block.
pub async fn block_client(
    policy: &PolicyStore,
    ip: IpAddr,
    block: &BlockClient,
) -> Result<bool, StoreError> {
    let written = policy.extend_block(ip, &block.reason, block.ttl).await?;
    if written {
        tracing::info!(
            client_ip = %ip,
            ttl = %humantime::format_duration(block.ttl),
            reason = %block.reason,
            "Client blocked at the ingest."
        );
    }
    Ok(written)
}
