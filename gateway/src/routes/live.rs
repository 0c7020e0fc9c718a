//! `GET /api/mailboxes/{box}/ws`: a WebSocket of the mailbox's events, as JSON text frames.
//!
//! The subscription is made before the upgrade is answered, so an event stored after the client
//! sees the connection open is never missed. Frames are the events of the MAILBOX stream as
//! published (`stored`, `deleted`, `cleared`), plus `{"type":"resync"}` when this client fell too
//! far behind and should reload the list. The server pings every 30 s.
//!
//! [`serve`] is written over any `Sink`/`Stream` of messages, so it is tested with channels.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use futures::{Sink, SinkExt, Stream, StreamExt};
use maildrop_contract::Mailbox;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::hub::Watch;
use crate::state::AppState;

const PING_EVERY: Duration = Duration::from_secs(30);

pub async fn websocket(
    State(state): State<AppState>,
    Path(name): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let mailbox = Mailbox::parse(&name)?;
    let watch = state
        .hub
        .watch(&mailbox)
        .await
        .map_err(ApiError::BusUnavailable)?;
    let cancel = state.cancel.clone();
    Ok(upgrade.on_upgrade(move |socket: WebSocket| async move {
        let (sink, stream) = socket.split();
        serve(sink, stream, watch, mailbox, cancel).await;
    }))
}

/// Pushes `watch`'s events to `sink` until the client leaves, the server shuts down, or a send fails.
pub async fn serve<S, R, E>(
    mut sink: S,
    mut stream: R,
    mut watch: Watch,
    mailbox: Mailbox,
    cancel: CancellationToken,
) where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        let frame = tokio::select! {
            event = watch.events.recv() => match event {
                Ok(text) => Message::Text(text.as_ref().into()),
                Err(RecvError::Lagged(missed)) => {
                    tracing::info!(mailbox = %mailbox, missed, "Watcher fell behind; asking it to resync.");
                    let resync = serde_json::json!({ "type": "resync", "v": 1, "mailbox": mailbox });
                    Message::Text(resync.to_string().into())
                }
                Err(RecvError::Closed) => break,
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
