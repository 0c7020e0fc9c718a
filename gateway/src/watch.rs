//! `maildrop-gateway watch <mailbox>`: print a mailbox's events as JSON lines, for shell scripts.
//!
//! A WebSocket client of `/api/mailboxes/<box>/ws`. Each event is printed on its own line as it
//! arrives (flushed at once, so `| jq` and `| while read` see it immediately). When the connection
//! drops, it reconnects with backoff and resumes after the last sequence it printed, so a script
//! sees every event once. `--count N` exits after N events (`--count 1` waits for one mail).

use std::io::Write;
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use maildrop_contract::Mailbox;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// The mailbox to watch.
    pub mailbox: String,
    /// The gateway's base URL.
    #[arg(
        long,
        env = "MAILDROP_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// Start after this event sequence (replays what came since).
    #[arg(long)]
    pub after: Option<u64>,
    /// Exit after printing this many events.
    #[arg(long)]
    pub count: Option<u64>,
}

/// Why watching stopped.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("invalid mailbox name: {0}")]
    Mailbox(#[from] maildrop_contract::mailbox::InvalidMailbox),
    #[error("the gateway URL must start with http://, https://, ws:// or wss://")]
    Url,
    #[error("cannot write to standard output: {0}")]
    Stdout(#[from] std::io::Error),
}

/// The WebSocket URL for `mailbox` under `base`, resuming after `after`.
pub fn ws_url(base: &str, mailbox: &Mailbox, after: Option<u64>) -> Result<String, WatchError> {
    let base = base.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if base.starts_with("ws://") || base.starts_with("wss://") {
        base.to_owned()
    } else {
        return Err(WatchError::Url);
    };
    let resume = after.map(|a| format!("?after={a}")).unwrap_or_default();
    Ok(format!("{ws}/api/mailboxes/{mailbox}/ws{resume}"))
}

/// Prints events on standard output until `--count` is reached or `cancel` fires.
pub async fn watch(args: WatchArgs, cancel: CancellationToken) -> Result<(), WatchError> {
    watch_into(args, cancel, &mut std::io::stdout()).await
}

/// As [`watch`], writing the lines to `out`.
pub async fn watch_into<W: Write + Send>(
    args: WatchArgs,
    cancel: CancellationToken,
    out: &mut W,
) -> Result<(), WatchError> {
    let mailbox = Mailbox::parse(&args.mailbox)?;
    let mut after = args.after;
    let mut printed = 0u64;
    let mut backoff = Duration::from_millis(250);
    while !cancel.is_cancelled() {
        let url = ws_url(&args.url, &mailbox, after)?;
        let mut socket = match tokio::select! {
            _ = cancel.cancelled() => break,
            c = tokio_tungstenite::connect_async(&url) => c,
        } {
            Ok((socket, _)) => {
                backoff = Duration::from_millis(250);
                tracing::info!(%url, "Watching.");
                socket
            }
            Err(e) => {
                tracing::warn!(%url, error = %e, retry_in = ?backoff, "Cannot connect; retrying.");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        loop {
            let frame = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                f = socket.next() => f,
            };
            match frame {
                Some(Ok(Message::Text(text))) => {
                    let seq = serde_json::from_str::<serde_json::Value>(text.as_str())
                        .ok()
                        .and_then(|v| v.get("seq").and_then(|s| s.as_u64()));
                    if seq.is_some() {
                        after = seq;
                    }
                    writeln!(out, "{}", text.as_str())?;
                    out.flush()?;
                    printed += 1;
                    if args.count.is_some_and(|n| printed >= n) {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    tracing::warn!("Connection lost; reconnecting.");
                    break;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_base() {
        let mb = Mailbox::parse("bob").unwrap();
        assert_eq!(
            ws_url("http://h:8080/", &mb, None).unwrap(),
            "ws://h:8080/api/mailboxes/bob/ws"
        );
        assert_eq!(
            ws_url("https://h", &mb, Some(7)).unwrap(),
            "wss://h/api/mailboxes/bob/ws?after=7"
        );
        assert!(ws_url("ftp://h", &mb, None).is_err());
    }
}
