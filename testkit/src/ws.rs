//! A WebSocket client that reads JSON events.

use std::time::Duration;

use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(url: &str) -> anyhow::Result<WsStream> {
    let (ws, _response) = tokio_tungstenite::connect_async(url).await?;
    Ok(ws)
}

/// The next JSON text frame, skipping pings; fails after `timeout`.
pub async fn next_event(ws: &mut WsStream, timeout: Duration) -> anyhow::Result<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow::anyhow!("no WebSocket event within {timeout:?}"))?
            .ok_or_else(|| anyhow::anyhow!("WebSocket closed"))??;
        match frame {
            Message::Text(text) => return Ok(serde_json::from_str(text.as_str())?),
            Message::Close(_) => anyhow::bail!("WebSocket closed by the server"),
            _ => continue,
        }
    }
}
