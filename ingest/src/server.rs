//! The SMTP listener: accepts connections and drives one [`Session`] per connection.
//!
//! This is the only code that touches sockets; every protocol decision is in [`crate::smtp`]. A
//! connection's memory is bounded by the session (it never holds more than a line or the message
//! being received) and by the global connection cap.
//!
//! Shutdown: the listener stops accepting at once; a connection waiting for the client's next
//! command is answered `421` and closed; a message being published finishes its publish and gets
//! its real answer. Connections still open after the grace period are dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::publish::{outcome, publish};
use crate::smtp::{Action, Reply, Session, SessionConfig};

/// What every connection shares.
pub struct Shared {
    pub session: Arc<SessionConfig>,
    pub js: jetstream::Context,
    pub idle_timeout: Duration,
    pub session_timeout: Duration,
    pub publish_timeout: Duration,
}

/// Accepts connections until `cancel`, then waits up to `grace` for open ones.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    max_connections: u32,
    grace: Duration,
    cancel: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(max_connections as usize));
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracker.spawn(refuse(stream, peer, shared.session.hostname.clone()));
            continue;
        };
        let shared = shared.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let _slot = slot;
            let session_timeout = shared.session_timeout;
            let mut stream = stream;
            if tokio::time::timeout(
                session_timeout,
                connection(&mut stream, peer, &shared, &cancel),
            )
            .await
            .is_err()
            {
                let _ = stream
                    .write_all(
                        &Reply::new(
                            421,
                            (4, 4, 2),
                            format!("{} Session too long, closing", shared.session.hostname),
                        )
                        .to_bytes(),
                    )
                    .await;
                tracing::info!(%peer, "SMTP session timed out.");
            }
        });
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            open = tracker.len(),
            "Connections still open after the grace period; dropping them."
        );
    }
}

async fn refuse(mut stream: TcpStream, peer: SocketAddr, hostname: String) {
    tracing::warn!(%peer, "Connection limit reached; refusing.");
    let reply = Reply::new(
        421,
        (4, 7, 0),
        format!("{hostname} Too many connections, try again later"),
    );
    let _ = stream.write_all(&reply.to_bytes()).await;
}

/// Drives one SMTP session over `stream`.
async fn connection(
    stream: &mut TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    cancel: &CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let mut session = Session::new(shared.session.clone(), peer.ip());
    let mut input = BytesMut::with_capacity(4096);
    let mut output = BytesMut::with_capacity(512);
    session.greeting().write_to(&mut output);
    tracing::debug!(%peer, "SMTP connection opened.");
    loop {
        match session.next_action(&mut input) {
            Action::Reply(reply) => reply.write_to(&mut output),
            Action::Deliver(tx) => {
                let result = publish(&shared.js, tx, shared.publish_timeout).await;
                session
                    .delivered(outcome(result, peer.ip()))
                    .write_to(&mut output);
            }
            Action::NeedMoreInput => {
                if flush(stream, &mut output).await.is_err() {
                    break;
                }
                let read = tokio::select! {
                    r = tokio::time::timeout(shared.idle_timeout, stream.read_buf(&mut input)) => r,
                    _ = cancel.cancelled() => {
                        session.shutdown_reply().write_to(&mut output);
                        break;
                    }
                };
                match read {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(_)) => {}
                    Err(_elapsed) => {
                        session.timeout_reply().write_to(&mut output);
                        tracing::info!(%peer, "SMTP connection idle too long.");
                        break;
                    }
                }
            }
            // STARTTLS is not offered by this listener (`starttls_available` is false).
            Action::StartTls | Action::Close => break,
        }
    }
    let _ = flush(stream, &mut output).await;
    tracing::debug!(%peer, "SMTP connection closed.");
}

async fn flush(stream: &mut TcpStream, output: &mut BytesMut) -> std::io::Result<()> {
    if !output.is_empty() {
        stream.write_all(output).await?;
        output.clear();
    }
    Ok(())
}
