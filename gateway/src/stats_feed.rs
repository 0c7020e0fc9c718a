//! The live counters for the home page: one poller per gateway, any number of listeners.
//!
//! The reporter writes counters to Redis as it counts; this task reads them once a second and
//! publishes a new value only when something changed, so listeners (`GET /api/stats/events`) get
//! a push per change and Redis gets one read per second per gateway, however many people watch.

use std::time::Duration;

use maildrop_store::{Stats, StatsStore};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the counters are read.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// Starts the poller; the receiver holds the latest counters (`None` until the first read).
pub fn spawn(stats: StatsStore, cancel: CancellationToken) -> watch::Receiver<Option<Stats>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            match stats.read().await {
                Ok(now) => {
                    tx.send_if_modified(|current| {
                        let changed = current.as_ref() != Some(&now);
                        if changed {
                            *current = Some(now);
                        }
                        changed
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "Cannot read counters; keeping the last ones.")
                }
            }
        }
    });
    rx
}
