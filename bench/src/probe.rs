//! The end-to-end probes: where a message is looked for after its `250`.
//!
//! - **NATS** (`--nats-url`): one subscription to every mailbox event; a `stored` event whose
//!   summary carries this run's token is the moment the store-writer has written the message to
//!   Redis and announced it. The best probe: push, not poll, and no load on Redis.
//! - **Redis** (`--redis-url`): every 2 ms, one pipeline of `ZSCORE md:{<box>}:index <id>` for
//!   the messages not found yet (the id comes from the `250 … queued as <id>` reply). Polling adds
//!   up to the poll interval to each latency, and a message evicted from a full mailbox before a
//!   poll finds it is never seen (it shows as missing).
//! - **WebSocket** (`--ws-url`): `--ws-watchers` watchers on `/api/mailboxes/<box>/ws`, spread over
//!   the mailboxes; each `stored` frame is one delivery.
//!
//! Each probe connects before the load starts and stamps an observation the moment it is read;
//! [`crate::track::Tracker`] matches it to its `250`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use maildrop_contract::subject::{self, MailboxEventKind};
use maildrop_contract::{Mailbox, MailboxEvent};
use maildrop_store::keys::MailboxKeys;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use crate::message::{RunTag, mailbox_name};
use crate::track::{Probe, Tracker, spread_watchers};

/// How often the Redis probe asks.
const REDIS_POLL: Duration = Duration::from_millis(2);
/// Most ids asked in one Redis round trip.
const REDIS_BATCH: usize = 2000;
/// WebSocket upgrades in flight at once while the watchers connect.
const WS_CONNECTS_AT_ONCE: usize = 32;
/// Events the NATS subscription buffers before it counts as a slow consumer.
const NATS_BUFFER: usize = 1 << 16;

/// Where to look, and with how many watchers.
#[derive(Debug, Clone, Default)]
pub struct ProbeConfig {
    pub nats_url: Option<String>,
    pub redis_url: Option<String>,
    /// Base URL of the gateway, `ws://127.0.0.1:8080`.
    pub ws_url: Option<String>,
    pub ws_watchers: u32,
}

impl ProbeConfig {
    pub fn any(&self) -> bool {
        self.nats_url.is_some() || self.redis_url.is_some() || self.ws_url.is_some()
    }

    fn enabled(&self) -> Vec<Probe> {
        let mut probes = Vec::new();
        if self.nats_url.is_some() {
            probes.push(Probe::Stored);
        }
        if self.redis_url.is_some() {
            probes.push(Probe::Listed);
        }
        if self.ws_url.is_some() && self.ws_watchers > 0 {
            probes.push(Probe::Pushed);
        }
        probes
    }
}

/// The WebSocket URL of one mailbox under the gateway's base URL.
pub fn ws_mailbox_url(base: &str, mailbox: &str) -> String {
    format!("{}/api/mailboxes/{mailbox}/ws", base.trim_end_matches('/'))
}

/// Running probes and the tracker they report to.
pub struct Probes {
    pub tracker: Arc<Tracker>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Probes {
    /// Connects every configured probe for a run tagged `tag` over `mailboxes` mailboxes.
    pub async fn start(config: &ProbeConfig, tag: &RunTag, mailboxes: u32) -> anyhow::Result<Self> {
        let watchers = if config.ws_url.is_some() {
            config.ws_watchers
        } else {
            0
        };
        let tracker = Arc::new(Tracker::new(
            &config.enabled(),
            spread_watchers(watchers, mailboxes),
        ));
        let cancel = CancellationToken::new();
        let mut probes = Self {
            tracker,
            cancel,
            tasks: Vec::new(),
        };
        if let Some(url) = &config.nats_url {
            let task = nats(
                url,
                tag.clone(),
                probes.tracker.clone(),
                probes.cancel.clone(),
            )
            .await
            .with_context(|| format!("NATS probe at {url}"))?;
            probes.tasks.push(task);
        }
        if let Some(url) = &config.redis_url {
            let task = redis(
                url,
                mailboxes,
                probes.tracker.clone(),
                probes.cancel.clone(),
            )
            .await
            .with_context(|| format!("Redis probe at {url}"))?;
            probes.tasks.push(task);
        }
        if let Some(base) = &config.ws_url {
            // Thousands of watchers: a few dozen upgrades at a time, not one by one.
            let mut opened = futures::stream::iter(0..watchers)
                .map(|w| {
                    let url = ws_mailbox_url(base, &mailbox_name(w % mailboxes.max(1)));
                    let (tag, tracker, cancel) =
                        (tag.clone(), probes.tracker.clone(), probes.cancel.clone());
                    async move {
                        websocket(&url, tag, tracker, cancel)
                            .await
                            .with_context(|| format!("WebSocket watcher at {url}"))
                    }
                })
                .buffer_unordered(WS_CONNECTS_AT_ONCE);
            while let Some(task) = opened.next().await {
                probes.tasks.push(task?);
            }
        }
        Ok(probes)
    }

    /// Waits until every probe has seen everything it should, or `timeout`.
    pub async fn settle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.tracker.complete() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

async fn nats(
    url: &str,
    tag: RunTag,
    tracker: Arc<Tracker>,
    cancel: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let client = async_nats::ConnectOptions::new()
        .subscription_capacity(NATS_BUFFER)
        .connect(url)
        .await?;
    let mut events = client.subscribe(subject::MAILBOX_ALL).await?;
    // The subscription is registered on the server before the first message is sent.
    client.flush().await?;
    let stored_suffix = format!(".{}", MailboxEventKind::Stored.as_str());
    Ok(tokio::spawn(async move {
        let _client = client;
        loop {
            let msg = tokio::select! {
                _ = cancel.cancelled() => break,
                msg = events.next() => match msg { Some(m) => m, None => break },
            };
            let at = Instant::now();
            if !msg.subject.ends_with(stored_suffix.as_str()) {
                continue;
            }
            if let Some(seq) = stored_seq(&msg.payload, &tag) {
                tracker.observed(Probe::Stored, seq, at);
            }
        }
    }))
}

/// The message number of a `stored` event of this run on NATS.
fn stored_seq(payload: &[u8], tag: &RunTag) -> Option<u64> {
    match serde_json::from_slice(payload).ok()? {
        MailboxEvent::Stored { summary, .. } => tag.seq_in(&summary.subject),
        _ => None,
    }
}

async fn redis(
    url: &str,
    mailboxes: u32,
    tracker: Arc<Tracker>,
    cancel: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let _: String = redis::cmd("PING").query_async(&mut conn).await?;
    let index_keys: Vec<String> = (0..mailboxes.max(1))
        .map(|i| {
            let mailbox = Mailbox::parse(&mailbox_name(i)).expect("bench mailbox names are valid");
            MailboxKeys::new(&mailbox).index
        })
        .collect();
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(REDIS_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            let pending = tracker.redis_pending(REDIS_BATCH);
            if pending.is_empty() {
                continue;
            }
            let mut pipe = redis::pipe();
            for p in &pending {
                pipe.zscore(&index_keys[p.mailbox_index as usize], &p.id);
            }
            let Ok(scores) = pipe.query_async::<Vec<Option<f64>>>(&mut conn).await else {
                // A failed poll is retried on the next tick; what is never found shows as missing.
                continue;
            };
            let at = Instant::now();
            for (p, score) in pending.iter().zip(scores) {
                if score.is_some() {
                    tracker.observed(Probe::Listed, p.seq, at);
                }
            }
        }
    }))
}

async fn websocket(
    url: &str,
    tag: RunTag,
    tracker: Arc<Tracker>,
    cancel: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let (mut ws, _response) = tokio_tungstenite::connect_async(url).await?;
    Ok(tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                _ = cancel.cancelled() => break,
                frame = ws.next() => match frame { Some(Ok(f)) => f, _ => break },
            };
            let at = Instant::now();
            let WsMessage::Text(text) = frame else {
                continue;
            };
            match ws_frame(text.as_str(), &tag) {
                WsFrame::Stored(seq) => tracker.observed(Probe::Pushed, seq, at),
                WsFrame::Resync => tracker.resynced(),
                WsFrame::Other => {}
            }
        }
        let _ = ws.close(None).await;
    }))
}

/// What a WebSocket frame means to the probe.
#[derive(Debug, PartialEq, Eq)]
enum WsFrame {
    /// A `stored` event of this run's message `seq`.
    Stored(u64),
    Resync,
    Other,
}

/// Reads a frame as loosely as the page does (`type` and `summary.subject`), so fields the
/// gateway adds to the event (such as `seq`) never make the probe miss it.
fn ws_frame(text: &str, tag: &RunTag) -> WsFrame {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return WsFrame::Other;
    };
    match v["type"].as_str() {
        Some("stored") => v["summary"]["subject"]
            .as_str()
            .and_then(|s| tag.seq_in(s))
            .map_or(WsFrame::Other, WsFrame::Stored),
        Some("resync") => WsFrame::Resync,
        _ => WsFrame::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_frames_are_matched_by_their_token() {
        let tag = RunTag::from_u64(0xab);
        let stored = r#"{"type":"stored","v":1,"seq":9,"mailbox":"bench-1","id":"X","summary":{"subject":"[mdb-000000ab-41] load test message"}}"#;
        assert_eq!(ws_frame(stored, &tag), WsFrame::Stored(41));
        let other_run = stored.replace("000000ab", "000000ac");
        assert_eq!(ws_frame(&other_run, &tag), WsFrame::Other);
        assert_eq!(
            ws_frame(r#"{"type":"resync","v":1}"#, &tag),
            WsFrame::Resync
        );
        assert_eq!(
            ws_frame(r#"{"type":"deleted","id":"X"}"#, &tag),
            WsFrame::Other
        );
        assert_eq!(ws_frame("not json", &tag), WsFrame::Other);
    }

    #[test]
    fn nats_stored_events_are_matched_by_their_token() {
        let tag = RunTag::from_u64(0xab);
        let event = include_str!("../../contract/fixtures/mailbox-stored.v1.json").replacen(
            "\"subject\": \"",
            "\"subject\": \"[mdb-000000ab-7] ",
            1,
        );
        assert_eq!(stored_seq(event.as_bytes(), &tag), Some(7));
        assert_eq!(stored_seq(b"{}", &tag), None);
    }

    #[test]
    fn websocket_urls_are_built_under_the_base() {
        assert_eq!(
            ws_mailbox_url("ws://127.0.0.1:8080", "bench-3"),
            "ws://127.0.0.1:8080/api/mailboxes/bench-3/ws"
        );
        assert_eq!(
            ws_mailbox_url("ws://127.0.0.1:8080/", "bench-3"),
            "ws://127.0.0.1:8080/api/mailboxes/bench-3/ws"
        );
    }

    #[test]
    fn probes_follow_the_urls_given() {
        let mut c = ProbeConfig::default();
        assert!(!c.any());
        c.ws_url = Some("ws://127.0.0.1:1".into());
        assert!(c.any());
        assert!(c.enabled().is_empty(), "no watchers, no WebSocket probe");
        c.ws_watchers = 2;
        c.nats_url = Some("nats://127.0.0.1:1".into());
        assert_eq!(c.enabled(), [Probe::Stored, Probe::Pushed]);
    }
}
