//! Live push: one NATS subscription per watched mailbox, fanned out to its watchers.
//!
//! The first watcher of a mailbox subscribes to `maildrop.mailbox.<box>.>` (and flushes, so the
//! server has the subscription before the watcher is told it is live); later watchers share it; the
//! last one to leave drops it. A gateway therefore receives only the events of mailboxes someone is
//! watching through it.
//!
//! Each mailbox has a bounded broadcast channel. A watcher that falls more than `buffer` events
//! behind does not slow the others: its receiver reports the lag, and the watcher is sent a
//! `resync` event telling it to reload the list.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use maildrop_contract::{Mailbox, subject};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// One event as pushed to watchers: the JSON text from the stream, shared.
pub type EventText = Arc<str>;

struct Watched {
    tx: broadcast::Sender<EventText>,
    watchers: usize,
    forwarder: JoinHandle<()>,
}

pub struct Hub {
    client: async_nats::Client,
    buffer: usize,
    watched: Mutex<HashMap<Mailbox, Watched>>,
}

/// A watcher's handle: events for one mailbox until dropped.
pub struct Watch {
    hub: Arc<Hub>,
    mailbox: Mailbox,
    pub events: broadcast::Receiver<EventText>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut watched = self.hub.lock();
        if let Some(w) = watched.get_mut(&self.mailbox) {
            w.watchers -= 1;
            if w.watchers == 0 {
                if let Some(w) = watched.remove(&self.mailbox) {
                    w.forwarder.abort();
                }
                tracing::debug!(mailbox = %self.mailbox, "Last watcher left; unsubscribed.");
            }
        }
    }
}

impl Hub {
    pub fn new(client: async_nats::Client, buffer: u32) -> Self {
        Self {
            client,
            buffer: buffer as usize,
            watched: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Mailbox, Watched>> {
        // A panic while holding this lock leaves the map consistent (every update is one step).
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mailboxes with at least one watcher on this gateway.
    pub fn watched_count(&self) -> usize {
        self.lock().len()
    }

    fn join(self: &Arc<Self>, mailbox: &Mailbox) -> Option<Watch> {
        let mut watched = self.lock();
        let w = watched.get_mut(mailbox)?;
        w.watchers += 1;
        Some(Watch {
            hub: self.clone(),
            mailbox: mailbox.clone(),
            events: w.tx.subscribe(),
        })
    }

    /// Starts watching `mailbox`; returns once the subscription is live at the server.
    pub async fn watch(self: &Arc<Self>, mailbox: &Mailbox) -> Result<Watch, async_nats::Error> {
        if let Some(watch) = self.join(mailbox) {
            return Ok(watch);
        }
        let mut subscription = self
            .client
            .subscribe(subject::mailbox_events(mailbox))
            .await?;
        self.client.flush().await?;
        let mut watched = self.lock();
        if watched.contains_key(mailbox) {
            // Another watcher subscribed while we did; ours is dropped (unsubscribed) here.
            drop(watched);
            return self
                .join(mailbox)
                .ok_or_else(|| "mailbox watch vanished".into());
        }
        let (tx, events) = broadcast::channel(self.buffer);
        let sender = tx.clone();
        let mb = mailbox.clone();
        let forwarder = tokio::spawn(async move {
            while let Some(msg) = subscription.next().await {
                let text: EventText = String::from_utf8_lossy(&msg.payload).into();
                // No receivers only between the last watcher leaving and this task's abort.
                let _ = sender.send(text);
            }
            tracing::debug!(mailbox = %mb, "Mailbox subscription ended.");
        });
        watched.insert(
            mailbox.clone(),
            Watched {
                tx,
                watchers: 1,
                forwarder,
            },
        );
        Ok(Watch {
            hub: self.clone(),
            mailbox: mailbox.clone(),
            events,
        })
    }
}
