//! The sweeper: announces the mailboxes that outlived their retention, and takes them out of the
//! usage index.
//!
//! A mailbox's keys expire in Redis by themselves, `retention` after its newest message; nobody
//! would hear of it. Every `MAILDROP_SWEEP_EVERY` the sweeper asks the usage index for mailboxes
//! whose newest message is older than the retention, empties each (in case Redis's clock is
//! behind ours), takes it out of the index and publishes `expired` on its subject, so watchers,
//! the reporter and the index agree.
//!
//! **Idempotent, so every instance may sweep.** Emptying is a no-op the second time, and taking
//! the mailbox out of the index is one atomic step that exactly one caller wins
//! ([`Removal::unlisted`]); only the winner publishes. A mailbox that received mail since it was
//! listed is left alone (the check is inside its own script), and its index entry is refreshed.
//! A sweeper that dies between unlisting and publishing loses that one `expired` event; the
//! mailbox is empty either way.

use std::time::Duration;

use maildrop_contract::{Mailbox, MailboxEvent, event, now_ms};
use maildrop_store::{Expiry, MailStore, Removal, StoreError};
use tokio_util::sync::CancellationToken;

use crate::publish::{PublishError, Publisher};

/// Mailboxes read from the index at once.
const BATCH: usize = 100;
/// Most batches per sweep; the next sweep goes on.
const MAX_BATCHES: usize = 100;

/// Housekeeping (sweeping, evicting) failed; it is tried again on the next round.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// Expires `mailbox` if its newest message was received at or before `cutoff_ms`, and publishes
/// `expired` if this call unlisted it. Returns whether it published.
pub async fn expire_one(
    store: &MailStore,
    publisher: &Publisher,
    mailbox: &Mailbox,
    cutoff_ms: u64,
) -> Result<bool, CleanupError> {
    match store.expire(mailbox, cutoff_ms).await? {
        Expiry::Active => Ok(false),
        Expiry::Expired(Removal {
            unlisted: false, ..
        }) => Ok(false),
        Expiry::Expired(Removal {
            messages,
            unlisted: true,
        }) => {
            publisher
                .event(&MailboxEvent::Expired {
                    v: event::VERSION,
                    mailbox: mailbox.clone(),
                })
                .await?;
            metrics::counter!("maildrop_store_writer_mailboxes_expired_total").increment(1);
            tracing::info!(mailbox = %mailbox, messages, "Mailbox expired.");
            Ok(true)
        }
    }
}

/// One sweep at `now_ms`; returns how many mailboxes it announced as expired.
pub async fn sweep_once(
    store: &MailStore,
    publisher: &Publisher,
    now_ms: u64,
) -> Result<u64, CleanupError> {
    let cutoff = store.limits().cutoff(now_ms);
    let mut announced = 0;
    for _ in 0..MAX_BATCHES {
        let idle = store.usage().idle_since(cutoff, BATCH).await?;
        for mailbox in &idle {
            if expire_one(store, publisher, mailbox, cutoff).await? {
                announced += 1;
            }
        }
        if idle.len() < BATCH {
            break;
        }
    }
    Ok(announced)
}

/// Sweeps every `every` until `cancel` is cancelled. A failed sweep is logged and the next one
/// tries again.
pub async fn run(
    store: MailStore,
    publisher: Publisher,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = ticks.tick() => {}
        }
        match sweep_once(&store, &publisher, now_ms()).await {
            Ok(0) => tracing::debug!("Sweep found nothing past its retention."),
            Ok(n) => tracing::info!(mailboxes = n, "Sweep expired mailboxes."),
            Err(e) => tracing::warn!(error = %e, "Sweep failed; trying again next time."),
        }
    }
    tracing::info!("Sweeper stopped.");
}
