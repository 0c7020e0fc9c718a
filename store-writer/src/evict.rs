//! Keeping the store under `MAILDROP_STORE_MAX_BYTES`, whole mailboxes at a time.
//!
//! **Eviction order.** Least recently active first: by the receive time of the mailbox's newest
//! message (the score in `md:{@usage}:boxes`), oldest first. Whole mailboxes, not single
//! messages: a disposable inbox that went quiet is the one nobody is reading, and emptying it is
//! one `cleared` event a watcher understands. The mailboxes the message being stored went to are
//! never chosen for it (they are the most recent anyway); so the cap must be larger than what
//! one mailbox can hold (`max_messages` × the largest message), or it is exceeded by that much.
//! A candidate already past its retention is expired (announced as `expired`) rather than evicted.
//!
//! **Announcing once.** An evicted mailbox is published as `cleared` with `"reason":
//! "store_full"` by whoever took it out of the usage index ([`Removal::unlisted`]), so writers
//! racing over the same victim announce it once. Within one process only one task evicts at a
//! time; the others go on (the one evicting loops until the total is under the cap).
//!
//! The total is what the usage index says, which can briefly be off for mailboxes whose write has
//! not been synced yet (see `maildrop_store::usage`); the next store corrects it and evicts again.

use maildrop_contract::event::{ClearReason, WithReason};
use maildrop_contract::{Mailbox, MailboxEvent, event, now_ms};
use maildrop_store::MailStore;
use maildrop_store::usage::Tracked;

use crate::publish::Publisher;
use crate::sweep::{CleanupError, expire_one};

/// Candidates read from the index per round.
const CANDIDATES: usize = 32;
/// Most rounds per call: a bound in case the index cannot get under the cap.
const MAX_ROUNDS: usize = 64;

/// The mailboxes to empty, from `candidates` (least recently active first), to bring `total`
/// down to `cap`; never one of `keep`. Fewer than needed if the candidates do not hold enough.
pub fn choose_victims<'a>(
    candidates: &'a [Tracked],
    total: u64,
    cap: u64,
    keep: &[Mailbox],
) -> Vec<&'a Tracked> {
    let mut left = total;
    candidates
        .iter()
        .filter(|c| !keep.contains(&c.mailbox))
        .take_while(|c| {
            let needed = left > cap;
            left = left.saturating_sub(c.bytes);
            needed
        })
        .collect()
}

/// What one call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evicted {
    /// Mailboxes emptied for space (announced as `cleared`).
    pub evicted: u64,
    /// Candidates that were past their retention (announced as `expired`).
    pub expired: u64,
}

pub struct Evictor {
    store: MailStore,
    publisher: Publisher,
    max_bytes: u64,
    busy: tokio::sync::Mutex<()>,
}

impl Evictor {
    pub fn new(store: MailStore, publisher: Publisher, max_bytes: u64) -> Self {
        Self {
            store,
            publisher,
            max_bytes,
            busy: tokio::sync::Mutex::new(()),
        }
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Empties least recently active mailboxes (never one of `keep`) until the total is under the
    /// cap. Returns at once if another task of this process is at it.
    pub async fn enforce(&self, keep: &[Mailbox]) -> Result<Evicted, CleanupError> {
        let Ok(_guard) = self.busy.try_lock() else {
            return Ok(Evicted::default());
        };
        let mut done = Evicted::default();
        for _ in 0..MAX_ROUNDS {
            let total = self.store.usage().total_bytes().await?;
            if total <= self.max_bytes {
                return Ok(done);
            }
            let candidates = self.store.usage().least_recent(CANDIDATES).await?;
            let victims = choose_victims(&candidates, total, self.max_bytes, keep);
            if victims.is_empty() {
                tracing::warn!(
                    total,
                    max_bytes = self.max_bytes,
                    "Store is over its byte cap, but only the mailboxes just written hold anything."
                );
                return Ok(done);
            }
            let cutoff = self.store.limits().cutoff(now_ms());
            for victim in victims {
                if victim.last_activity_ms <= cutoff {
                    if expire_one(&self.store, &self.publisher, &victim.mailbox, cutoff).await? {
                        done.expired += 1;
                    }
                    continue;
                }
                let removal = self.store.evict(&victim.mailbox).await?;
                if !removal.unlisted {
                    continue;
                }
                self.publisher
                    .with_reason(&WithReason {
                        event: MailboxEvent::Cleared {
                            v: event::VERSION,
                            mailbox: victim.mailbox.clone(),
                        },
                        reason: ClearReason::StoreFull,
                    })
                    .await?;
                done.evicted += 1;
                metrics::counter!("maildrop_store_writer_mailboxes_evicted_total").increment(1);
                tracing::info!(mailbox = %victim.mailbox, messages = removal.messages, bytes = victim.bytes, total, max_bytes = self.max_bytes, "Mailbox evicted to stay under the byte cap.");
            }
        }
        tracing::warn!(
            max_bytes = self.max_bytes,
            "Store still over its byte cap after the most rounds one call makes."
        );
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(name: &str, bytes: u64) -> Tracked {
        Tracked {
            mailbox: Mailbox::parse(name).unwrap(),
            last_activity_ms: 0,
            bytes,
        }
    }

    fn names(v: Vec<&Tracked>) -> Vec<&str> {
        v.into_iter().map(|t| t.mailbox.as_str()).collect()
    }

    #[test]
    fn the_least_recent_go_until_the_total_fits() {
        let c = [tracked("a", 30), tracked("b", 30), tracked("c", 30)];
        assert_eq!(names(choose_victims(&c, 90, 100, &[])), Vec::<&str>::new());
        assert_eq!(names(choose_victims(&c, 101, 100, &[])), ["a"]);
        assert_eq!(names(choose_victims(&c, 131, 100, &[])), ["a", "b"]);
        assert_eq!(names(choose_victims(&c, 500, 100, &[])), ["a", "b", "c"]);
    }

    #[test]
    fn the_mailbox_just_written_is_never_chosen() {
        let c = [tracked("a", 30), tracked("b", 30), tracked("c", 30)];
        let keep = [Mailbox::parse("a").unwrap()];
        assert_eq!(names(choose_victims(&c, 101, 100, &keep)), ["b"]);
        let all = c.iter().map(|t| t.mailbox.clone()).collect::<Vec<_>>();
        assert!(choose_victims(&c, 500, 100, &all).is_empty());
    }

    #[test]
    fn an_empty_entry_frees_nothing_but_is_passed() {
        let c = [tracked("a", 0), tracked("b", 50)];
        assert_eq!(names(choose_victims(&c, 120, 100, &[])), ["a", "b"]);
    }
}
