//! Live push: one NATS subscription per watched mailbox, fanned out to its watchers, with resume.
//!
//! The gateway subscribes to `maildrop.live.mailbox.<box>.>`, where the MAILBOX stream republishes
//! every event it has stored, with the event's stream sequence. So a watcher sees an event only once
//! it is durable, sees it once however often a writer retried the publish, and knows its sequence:
//! the cursor a reconnecting client hands back (`?after=`, or `Last-Event-ID` for SSE).
//!
//! The first watcher of a mailbox subscribes (and flushes, so the server has the subscription before
//! the watcher is told it is live); later watchers share it; the last one to leave drops it. A
//! gateway therefore receives only the events of mailboxes someone watches through it.
//!
//! **Resume without gaps or duplicates.** A watcher that brings a cursor joins the live feed
//! *first*, then reads what it missed from the stream (direct gets of the next message on the
//! mailbox's subject), then takes live events whose sequence is above the last one it sent. Anything
//! stored while it was reading is in both places, and the sequence drops the second copy.
//!
//! **Slow watchers.** Each mailbox has a bounded broadcast channel. A watcher that falls more than
//! `buffer` events behind does not slow the others: it is told to `resync` (reload the list).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_nats::jetstream::stream::{DirectGetErrorKind, Stream as JsStream};
use futures::StreamExt;
use maildrop_contract::{Mailbox, subject};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// One event as pushed to watchers: its stream sequence, its type and its JSON (with `"seq"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    pub kind: Arc<str>,
    pub json: Arc<str>,
}

impl Event {
    /// Builds the pushed form of a stored event: the stream's JSON plus its sequence. `None` for a
    /// payload that is not a JSON object with a `type` (not ours; skipped).
    pub fn from_stream(seq: u64, payload: &[u8]) -> Option<Self> {
        let mut value: serde_json::Value = serde_json::from_slice(payload).ok()?;
        let object = value.as_object_mut()?;
        let kind: Arc<str> = object.get("type")?.as_str()?.into();
        object.insert("seq".into(), seq.into());
        Some(Self {
            seq,
            kind,
            json: value.to_string().into(),
        })
    }

    /// The hint sent to a watcher that missed events it cannot get back.
    pub fn resync(mailbox: &Mailbox) -> Self {
        let json = serde_json::json!({ "type": "resync", "v": 1, "mailbox": mailbox });
        Self {
            seq: 0,
            kind: "resync".into(),
            json: json.to_string().into(),
        }
    }
}

/// Why watching failed.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot subscribe: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    #[error("cannot reach NATS: {0}")]
    Flush(#[from] async_nats::client::FlushError),
    #[error("cannot read missed events from the stream: {0}")]
    Replay(#[from] async_nats::jetstream::stream::DirectGetError),
}

struct Watched {
    tx: broadcast::Sender<Event>,
    watchers: usize,
    forwarder: JoinHandle<()>,
}

pub struct Hub {
    client: async_nats::Client,
    mailbox_stream: JsStream,
    buffer: usize,
    /// Most missed events replayed to one reconnecting watcher; more means `resync`.
    max_replay: usize,
    watched: Mutex<HashMap<Mailbox, Watched>>,
}

/// A watcher's handle: first `backlog` (missed events), then `next()` live ones, until dropped.
pub struct Watch {
    hub: Arc<Hub>,
    mailbox: Mailbox,
    live: broadcast::Receiver<Event>,
    backlog: std::collections::VecDeque<Event>,
    /// Highest sequence handed out; live events at or below it are duplicates of the backlog.
    last_seq: u64,
}

impl Watch {
    pub fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }

    /// The next event for this watcher, in sequence order; `None` once the feed is gone.
    pub async fn next(&mut self) -> Option<Event> {
        if let Some(event) = self.backlog.pop_front() {
            self.last_seq = self.last_seq.max(event.seq);
            return Some(event);
        }
        loop {
            match self.live.recv().await {
                Ok(event) if event.seq > self.last_seq => {
                    self.last_seq = event.seq;
                    return Some(event);
                }
                Ok(_duplicate) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::info!(mailbox = %self.mailbox, missed, "Watcher fell behind; asking it to resync.");
                    return Some(Event::resync(&self.mailbox));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
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
    pub fn new(
        client: async_nats::Client,
        mailbox_stream: JsStream,
        buffer: u32,
        max_replay: u32,
    ) -> Self {
        Self {
            client,
            mailbox_stream,
            buffer: buffer as usize,
            max_replay: max_replay as usize,
            watched: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Mailbox, Watched>> {
        // Every update of the map is one step, so it is consistent even after a panic elsewhere.
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mailboxes with at least one watcher on this gateway.
    pub fn watched_count(&self) -> usize {
        self.lock().len()
    }

    fn join(self: &Arc<Self>, mailbox: &Mailbox) -> Option<broadcast::Receiver<Event>> {
        let mut watched = self.lock();
        let w = watched.get_mut(mailbox)?;
        w.watchers += 1;
        Some(w.tx.subscribe())
    }

    async fn live(
        self: &Arc<Self>,
        mailbox: &Mailbox,
    ) -> Result<broadcast::Receiver<Event>, WatchError> {
        if let Some(rx) = self.join(mailbox) {
            return Ok(rx);
        }
        let mut subscription = self
            .client
            .subscribe(subject::live_mailbox_events(mailbox))
            .await?;
        self.client.flush().await?;
        let mut watched = self.lock();
        if let Some(w) = watched.get_mut(mailbox) {
            // Another watcher subscribed meanwhile; ours is dropped (unsubscribed) on return.
            w.watchers += 1;
            return Ok(w.tx.subscribe());
        }
        let (tx, rx) = broadcast::channel(self.buffer);
        let sender = tx.clone();
        let mb = mailbox.clone();
        let forwarder = tokio::spawn(async move {
            while let Some(msg) = subscription.next().await {
                let seq = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(subject::SEQUENCE_HEADER))
                    .and_then(|v| v.as_str().parse().ok());
                match seq.and_then(|seq| Event::from_stream(seq, &msg.payload)) {
                    // No receivers only between the last watcher leaving and this task's abort.
                    Some(event) => drop(sender.send(event)),
                    None => {
                        tracing::warn!(mailbox = %mb, subject = %msg.subject, "Skipped a live event without a sequence or type.")
                    }
                }
            }
        });
        watched.insert(
            mailbox.clone(),
            Watched {
                tx,
                watchers: 1,
                forwarder,
            },
        );
        Ok(rx)
    }

    /// Starts watching `mailbox`. With `after`, the events stored after that sequence come first.
    /// Returns once the live subscription is in place at the server.
    pub async fn watch(
        self: &Arc<Self>,
        mailbox: &Mailbox,
        after: Option<u64>,
    ) -> Result<Watch, WatchError> {
        let live = self.live(mailbox).await?;
        let mut watch = Watch {
            hub: self.clone(),
            mailbox: mailbox.clone(),
            live,
            backlog: Default::default(),
            last_seq: 0,
        };
        if let Some(after) = after {
            watch.last_seq = after;
            watch.backlog = self.replay(mailbox, after).await?.into();
        }
        Ok(watch)
    }

    /// The events of `mailbox` stored after sequence `after`, oldest first; a `resync` instead if
    /// there are more than `max_replay`.
    async fn replay(&self, mailbox: &Mailbox, after: u64) -> Result<Vec<Event>, WatchError> {
        let filter = subject::mailbox_events(mailbox);
        let mut events = Vec::new();
        let mut next = after + 1;
        loop {
            let msg = match self
                .mailbox_stream
                .direct_get_next_for_subject(filter.clone(), Some(next))
                .await
            {
                Ok(msg) => msg,
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
                Err(e) => return Err(e.into()),
            };
            next = msg.sequence + 1;
            if let Some(event) = Event::from_stream(msg.sequence, &msg.payload) {
                events.push(event);
            }
            if events.len() > self.max_replay {
                return Ok(vec![Event::resync(mailbox)]);
            }
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_events_gain_their_sequence() {
        let e = Event::from_stream(42, br#"{"type":"deleted","v":1,"mailbox":"bob","id":"x"}"#)
            .unwrap();
        assert_eq!(e.seq, 42);
        assert_eq!(&*e.kind, "deleted");
        let v: serde_json::Value = serde_json::from_str(&e.json).unwrap();
        assert_eq!(v["seq"], 42);
        assert_eq!(v["id"], "x");
    }

    #[test]
    fn foreign_payloads_are_skipped() {
        assert!(Event::from_stream(1, b"not json").is_none());
        assert!(Event::from_stream(1, b"[1,2]").is_none());
        assert!(Event::from_stream(1, br#"{"no":"type"}"#).is_none());
    }
}
