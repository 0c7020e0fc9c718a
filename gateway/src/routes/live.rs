//! Live push of a mailbox's events: WebSocket, Server-Sent Events, and the long-poll `wait`.
//!
//! All three watch through the [`Hub`](crate::hub::Hub), which subscribes before the handler
//! answers, so an event stored after the client sees the response start is never missed.
//!
//! - `GET /api/mailboxes/{box}/ws[?after=<seq>]`: JSON text frames, the MAILBOX stream's events
//!   plus `"seq"`; `{"type":"resync"}` when the client should reload the list. Pings every 30 s.
//! - `GET /api/mailboxes/{box}/events` (SSE): `event: <type>`, `id: <seq>`, `data: <json>`;
//!   resumes from `Last-Event-ID` (or `?after=`), as browsers' `EventSource` does by itself.
//! - `GET /api/mailboxes/{box}/wait[?after=<id>][&timeout=30s]`: answers `200 {"message": summary}`
//!   as soon as the mailbox has a message newer than `after` (any message without `after`), or
//!   `204` when `timeout` passes first, so test suites need no polling loops.
//!
//! [`serve_ws`] is written over any `Sink`/`Stream` of messages, so it is tested with channels.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Sink, SinkExt, Stream, StreamExt};
use maildrop_contract::{Mailbox, MessageId, MessageSummary};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::guard::{WatcherSlot, client_ip};
use crate::hub::Watch;
use crate::state::AppState;

const PING_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
pub struct Resume {
    /// The last sequence the client saw.
    pub after: Option<u64>,
}

/// A live-feed slot for the client of this request (see [`crate::guard::WatcherSlots`]).
fn slot(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> Result<WatcherSlot, ApiError> {
    state
        .watchers
        .acquire(client_ip(peer.ip(), headers, &state.trusted_proxies))
}

/// Read buffer per WebSocket: enough for control frames and small client messages.
const WS_READ_BUFFER: usize = 4 * 1024;
/// The largest message or frame a watcher may send; watchers have nothing big to say.
const WS_MAX_INCOMING: usize = 64 * 1024;

pub async fn websocket(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    Query(resume): Query<Resume>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let mailbox = Mailbox::parse(&name)?;
    let slot = slot(&state, peer, &headers)?;
    let watch = state.hub.watch(&mailbox, resume.after).await?;
    let cancel = state.cancel.clone();
    // A watcher only ever sends pings and the odd small frame, and every event we push is one
    // small JSON message: tungstenite's 128 KiB default read buffer per socket would make 10,000
    // watchers cost over a gigabyte (measured by `maildrop-bench scenario push`).
    let upgrade = upgrade
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(WS_MAX_INCOMING)
        .max_frame_size(WS_MAX_INCOMING);
    Ok(upgrade.on_upgrade(move |socket: WebSocket| async move {
        let _slot = slot;
        let (sink, stream) = socket.split();
        serve_ws(sink, stream, watch, cancel).await;
    }))
}

/// Pushes `watch`'s events to `sink` until the client leaves, the server shuts down, or a send
/// fails (a client that stops reading only blocks its own task; see the hub for lagging).
pub async fn serve_ws<S, R, E>(
    mut sink: S,
    mut stream: R,
    mut watch: Watch,
    cancel: CancellationToken,
) where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        let frame = tokio::select! {
            event = watch.next() => match event {
                Some(event) => Message::Text(event.json.as_ref().into()),
                None => break,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue,
            },
            _ = ping.tick() => Message::Ping(Vec::new().into()),
            _ = cancel.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                break;
            }
        };
        if sink.send(frame).await.is_err() {
            break;
        }
    }
}

/// `Last-Event-ID` if the client sent one, else `?after=`.
fn resume_point(headers: &HeaderMap, resume: &Resume) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .or(resume.after)
}

pub async fn sse(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    Query(resume): Query<Resume>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let mailbox = Mailbox::parse(&name)?;
    let slot = slot(&state, peer, &headers)?;
    let after = resume_point(&headers, &resume);
    let watch = state.hub.watch(&mailbox, after).await?;
    let cancel = state.cancel.clone();
    // The slot travels with the stream and is freed when the client goes.
    let events = futures::stream::unfold((watch, slot), |(mut watch, slot)| async move {
        let event = watch.next().await?;
        let mut sse = SseEvent::default()
            .event(event.kind.as_ref())
            .data(event.json.as_ref());
        if event.seq > 0 {
            sse = sse.id(event.seq.to_string());
        }
        Some((Ok(sse), (watch, slot)))
    })
    .take_until(cancel.cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    pub after: Option<String>,
    pub timeout: Option<String>,
}

/// Longest `timeout` a wait may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

pub async fn wait(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    Query(query): Query<WaitQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mailbox = Mailbox::parse(&name)?;
    let _slot = slot(&state, peer, &headers)?;
    let after: Option<MessageId> = query.after.as_deref().map(str::parse).transpose()?;
    let timeout = match query.timeout.as_deref() {
        None => DEFAULT_WAIT,
        Some(t) => humantime::parse_duration(t)
            .or_else(|_| t.parse::<u64>().map(Duration::from_secs))
            .map_err(|_| ApiError::InvalidParameter {
                name: "timeout",
                expected: "a duration such as 30s",
            })?,
    }
    .min(MAX_WAIT);
    let newer = |m: &MessageSummary| after.is_none_or(|a| m.id > a);
    // Watch first, then look: a message stored in between is in the feed.
    let mut watch = state.hub.watch(&mailbox, None).await?;
    let listed = state.mail.list(&mailbox).await?;
    // Newest first: the oldest message newer than `after` is the one the client is waiting for.
    if let Some(found) = listed.into_iter().rev().find(|m| newer(m)) {
        return Ok(Json(serde_json::json!({ "message": found })).into_response());
    }
    let found = tokio::time::timeout(timeout, async {
        while let Some(event) = watch.next().await {
            if &*event.kind != "stored" {
                continue;
            }
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&event.json) else {
                continue;
            };
            let Ok(summary) = serde_json::from_value::<MessageSummary>(value["summary"].clone())
            else {
                continue;
            };
            if newer(&summary) {
                return Some(summary);
            }
        }
        None
    })
    .await;
    Ok(match found {
        Ok(Some(summary)) => Json(serde_json::json!({ "message": summary })).into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_id_wins_over_the_query() {
        let mut h = HeaderMap::new();
        assert_eq!(resume_point(&h, &Resume { after: Some(3) }), Some(3));
        h.insert("last-event-id", "17".parse().unwrap());
        assert_eq!(resume_point(&h, &Resume { after: Some(3) }), Some(17));
        h.insert("last-event-id", "garbage".parse().unwrap());
        assert_eq!(resume_point(&h, &Resume { after: None }), None);
    }
}
