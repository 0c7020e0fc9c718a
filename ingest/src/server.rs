//! The SMTP listener: accepts connections and drives one [`Session`] per connection.
//!
//! This is the only code that touches sockets; every protocol decision is in [`crate::smtp`], and
//! every policy decision in a pure module ([`crate::proxy`], [`crate::limits`], [`crate::tarpit`])
//! or behind [`Policy`]. A connection's memory is bounded by the session (it never holds more than
//! a line or the message being received), by the PROXY header limit, and by the global connection
//! cap.
//!
//! A connection goes through these steps, each of which may end it:
//!
//! 1. **Global cap**: past `MAILDROP_MAX_CONNECTIONS`, `421 4.7.0` at once.
//! 2. **Who is the client**: with `MAILDROP_PROXY_PROTOCOL`, a peer in `MAILDROP_PROXY_TRUSTED`
//!    must send a PROXY header within [`PROXY_HEADER_TIMEOUT`] and the client is the header's
//!    source; a missing or bad header closes the connection without a word (the peer is our own
//!    load balancer, misconfigured). Any other peer is the client itself, served as plain SMTP:
//!    if it sends a PROXY line anyway, the session answers `421 4.7.0` and hangs up (a v2 header
//!    ends in `QUIT`, which the session obeys). We close rather than ignore: a client forging its
//!    address is not one we want to talk to, and silently ignoring the header would leave its
//!    bytes to be parsed as commands.
//! 3. **Per-client limits** ([`IpLimits`]), unless the client is in `MAILDROP_EXEMPT_NETWORKS`:
//!    `421 4.7.0`.
//! 4. **Blocked IPs** in Redis: `554 5.7.1` with the stored reason. Fails open ([`crate::policy`]).
//! 5. **The session**: `220`, then bytes in, replies out. Replies to failed commands and (if
//!    configured) to `MAIL`, `RCPT` and `DATA` are held back by the [`Tarpit`]; greylisting answers
//!    the session's [`Action::CheckClient`]; `STARTTLS` upgrades the stream and the session goes on
//!    over TLS.
//!
//! The loop is written once over any `AsyncRead + AsyncWrite` stream: it returns when the session
//! asks for `STARTTLS`, the caller upgrades the `TcpStream` it owns, and runs the loop again on the
//! TLS stream with the same session. Whatever the client pipelined after `STARTTLS` was dropped by
//! the session and is dropped from our buffer too before the handshake (CVE-2011-0411); bytes
//! that arrive after the `220` are read by the TLS handshake, never as commands.
//!
//! Shutdown: the listener stops accepting at once; a connection waiting for the client's next
//! command, or held in a tarpit, is answered `421` and closed (over TLS when the session is
//! encrypted, followed by a TLS close); a message being published finishes its publish and gets
//! its real answer. Connections still open after the grace period are dropped.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream;
use bytes::{Buf, BytesMut};
use maildrop_runtime::cidr::CidrList;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::limits::{IpLimits, Refusal};
use crate::policy::Policy;
use crate::proxy::{self, Parse};
use crate::publish::{outcome, publish};
use crate::rejections::Rejections;
use crate::smtp::{Action, ClientVerdict, DeliveryOutcome, Reply, Session, SessionConfig};
use crate::tarpit::Tarpit;
use maildrop_contract::RejectReason;

/// How long a trusted proxy has to send its PROXY header. Proxies send it with the connection, so
/// this only bounds a misconfigured or stuck one.
pub const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to finish the TLS handshake after `220 Ready to start TLS`.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long we try to say goodbye (a last reply, a TLS close) to a client that is not reading.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(5);

/// What every connection shares.
pub struct Shared {
    pub session: Arc<SessionConfig>,
    pub js: jetstream::Context,
    pub idle_timeout: Duration,
    pub session_timeout: Duration,
    pub publish_timeout: Duration,
    /// Present when `STARTTLS` is offered.
    pub tls: Option<TlsAcceptor>,
    /// The peers that must send a PROXY header, when the PROXY protocol is on.
    pub proxy_trusted: Option<CidrList>,
    /// Clients exempt from the per-client limits and greylisting.
    pub exempt: CidrList,
    pub limits: Mutex<IpLimits>,
    pub policy: Policy,
    pub tarpit: Tarpit,
    /// Where refusals are recorded (never waited for).
    pub rejections: Rejections,
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
                    warn!(error = %e, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracker.spawn(refuse(stream, peer, shared.clone()));
            continue;
        };
        let shared = shared.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let _slot = slot;
            connection(stream, peer, shared, cancel).await;
        });
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!(
            open = tracker.len(),
            "Connections still open after the grace period; dropping them."
        );
    }
}

async fn refuse(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    warn!(%peer, "Connection limit reached; refusing.");
    let reply = Reply::new(
        421,
        (4, 7, 0),
        format!(
            "{} Too many connections, try again later",
            shared.session.hostname
        ),
    );
    let client = peer.ip().to_canonical();
    shared
        .rejections
        .connection(client, RejectReason::RateLimited, &reply);
    goodbye(&mut stream, &reply).await;
}

/// One connection, from accept to close: the steps of the module documentation.
async fn connection(
    mut tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let _ = tcp.set_nodelay(true);
    let mut input = BytesMut::with_capacity(4096);
    let Some(client) = client_ip(&mut tcp, peer, &shared, &mut input, &cancel).await else {
        return;
    };
    let _client_slot = match admit(&shared, client) {
        Ok(slot) => slot,
        Err(reply) => {
            shared
                .rejections
                .connection(client, RejectReason::RateLimited, &reply);
            return goodbye(&mut tcp, &reply).await;
        }
    };
    if let Some(reason) = shared.policy.blocked(client).await {
        info!(client_ip = %client, %reason, "Blocked client refused.");
        let reply = Reply::new(
            554,
            (5, 7, 1),
            format!(
                "{} Your address is blocked: {reason}",
                shared.session.hostname
            ),
        );
        shared
            .rejections
            .connection(client, RejectReason::BlockedIp, &reply);
        return goodbye(&mut tcp, &reply).await;
    }
    debug!(%peer, client_ip = %client, "SMTP connection opened.");
    metrics::counter!("maildrop_ingest_connections_total", "result" => "accepted", "reason" => "")
        .increment(1);
    let _open =
        maildrop_runtime::metrics::Open::new(metrics::gauge!("maildrop_ingest_sessions_open"));

    let deadline = Instant::now() + shared.session_timeout;
    let mut conn = Conn {
        session: Session::new(shared.session.clone(), client),
        input,
        output: BytesMut::with_capacity(512),
        shared: &shared,
        cancel: &cancel,
    };
    conn.session.greeting().write_to(&mut conn.output);
    match tokio::time::timeout_at(deadline, conn.converse(&mut tcp)).await {
        Ok(End::Close) => {}
        Ok(End::StartTls) => {
            if let Some(mut tls) = conn.start_tls(tcp, deadline).await {
                match tokio::time::timeout_at(deadline, conn.converse(&mut tls)).await {
                    Ok(End::Close) => {}
                    Ok(End::StartTls) => {
                        warn!(client_ip = %client, "STARTTLS inside TLS; closing.")
                    }
                    Err(_elapsed) => conn.session_too_long(&mut tls).await,
                }
                let _ = tokio::time::timeout(GOODBYE_TIMEOUT, tls.shutdown()).await;
            }
        }
        Err(_elapsed) => conn.session_too_long(&mut tcp).await,
    }
    debug!(client_ip = %client, "SMTP connection closed.");
}

/// The client's address: the peer's own, or the one a trusted proxy's header names. `None` when the
/// connection must close.
async fn client_ip(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    input: &mut BytesMut,
    cancel: &CancellationToken,
) -> Option<IpAddr> {
    let peer_ip = peer.ip().to_canonical();
    let Some(trusted) = &shared.proxy_trusted else {
        return Some(peer_ip);
    };
    if !trusted.contains(peer_ip) {
        return Some(peer_ip);
    }
    let read = async {
        loop {
            match proxy::parse(input) {
                Ok(Parse::Complete { header, len }) => {
                    input.advance(len);
                    return Ok(header);
                }
                Ok(Parse::Incomplete) => {}
                Err(e) => return Err(e.to_string()),
            }
            match tcp.read_buf(input).await {
                Ok(0) => return Err("connection closed before the header ended".to_owned()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let header = tokio::select! {
        read = tokio::time::timeout(PROXY_HEADER_TIMEOUT, read) => read,
        _ = cancel.cancelled() => return None,
    };
    match header {
        Ok(Ok(header)) => {
            let client = header.source().map_or(peer_ip, |s| s.ip().to_canonical());
            debug!(%peer, client_ip = %client, "PROXY header accepted.");
            Some(client)
        }
        Ok(Err(error)) => {
            warn!(%peer, %error, "Bad PROXY header from a trusted proxy; closing.");
            None
        }
        Err(_elapsed) => {
            warn!(%peer, timeout = ?PROXY_HEADER_TIMEOUT, "No PROXY header from a trusted proxy in time; closing.");
            None
        }
    }
}

/// Counts the connection against its client's limits; the slot gives it back when dropped.
fn admit(shared: &Arc<Shared>, client: IpAddr) -> Result<Option<ClientSlot>, Reply> {
    if shared.exempt.contains(client) {
        return Ok(None);
    }
    let mut limits = shared.limits.lock().unwrap_or_else(PoisonError::into_inner);
    if !limits.is_enabled() {
        return Ok(None);
    }
    let hostname = &shared.session.hostname;
    match limits.admit(client, std::time::Instant::now()) {
        Ok(()) => Ok(Some(ClientSlot {
            shared: shared.clone(),
            client,
        })),
        Err(Refusal::TooManyConnections { open }) => {
            info!(client_ip = %client, open, "Too many connections from one client; refused.");
            Err(Reply::new(
                421,
                (4, 7, 0),
                format!("{hostname} Too many connections from your address, try again later"),
            ))
        }
        Err(Refusal::TooFast) => {
            info!(client_ip = %client, "Client connecting too fast; refused.");
            Err(Reply::new(
                421,
                (4, 7, 0),
                format!(
                    "{hostname} Too many connections too fast from your address, try again later"
                ),
            ))
        }
    }
}

/// An open connection counted in [`IpLimits`].
struct ClientSlot {
    shared: Arc<Shared>,
    client: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.shared
            .limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .release(self.client, std::time::Instant::now());
    }
}

/// Why [`Conn::converse`] returned.
enum End {
    Close,
    StartTls,
}

/// The state of one session that outlives a TLS upgrade.
struct Conn<'a> {
    session: Session,
    input: BytesMut,
    output: BytesMut,
    shared: &'a Shared,
    cancel: &'a CancellationToken,
}

impl Conn<'_> {
    /// Drives the session over `stream` until it closes or asks for TLS.
    async fn converse<S: AsyncRead + AsyncWrite + Unpin>(&mut self, stream: &mut S) -> End {
        let client = self.session.peer();
        loop {
            let failed_before = self.session.bad_commands();
            let action = self.session.next_action(&mut self.input);
            let answered = self.session.answered();
            let reply = match action {
                Action::Reply(reply) => reply,
                Action::Deliver(mut tx) => {
                    let outcome = match self.shared.policy.resolve_aliases(&mut tx.mailboxes).await
                    {
                        Ok(()) => {
                            let result =
                                publish(&self.shared.js, tx, self.shared.publish_timeout).await;
                            outcome(result, client)
                        }
                        Err(e) => {
                            tracing::warn!(client_ip = %client, error = %e, "Aliases not resolved; answered 451.");
                            DeliveryOutcome::TemporaryFailure
                        }
                    };
                    self.session.delivered(outcome)
                }
                Action::CheckClient { client_ip, helo } => {
                    let verdict = if self.shared.exempt.contains(client_ip) {
                        ClientVerdict::Accept
                    } else {
                        self.shared.policy.greylist(client_ip, &helo).await
                    };
                    self.session.client_checked(verdict)
                }
                Action::NeedMoreInput => {
                    if flush(stream, &mut self.output).await.is_err() {
                        return End::Close;
                    }
                    let idle = self.shared.idle_timeout;
                    let read = tokio::select! {
                        r = tokio::time::timeout(idle, stream.read_buf(&mut self.input)) => Some(r),
                        _ = self.cancel.cancelled() => None,
                    };
                    let Some(read) = read else {
                        let reply = self.session.shutdown_reply();
                        return self.close_with(stream, reply).await;
                    };
                    match read {
                        Ok(Ok(0)) | Ok(Err(_)) => return End::Close,
                        Ok(Ok(_)) => continue,
                        Err(_elapsed) => {
                            info!(client_ip = %client, "SMTP connection idle too long.");
                            let reply = self.session.timeout_reply();
                            return self.close_with(stream, reply).await;
                        }
                    }
                }
                Action::StartTls => {
                    // The `220` goes out in plaintext; nothing the client sent after STARTTLS is
                    // kept (the session has dropped it already; this is the caller's half).
                    self.input.clear();
                    return match flush(stream, &mut self.output).await {
                        Ok(()) => End::StartTls,
                        Err(_) => End::Close,
                    };
                }
                Action::Close => {
                    let _ = flush(stream, &mut self.output).await;
                    return End::Close;
                }
            };
            let session = &self.session;
            self.shared
                .rejections
                .observe(client, answered, &reply, || session.attempt());
            let failed = self.session.bad_commands();
            let failed = (failed > failed_before && reply.code >= 500).then_some(failed);
            let delay = self.shared.tarpit.delay(answered, failed);
            if !delay.is_zero() {
                // Replies already earned go out now; only this one waits.
                if flush(stream, &mut self.output).await.is_err() {
                    return End::Close;
                }
                let slept = tokio::select! {
                    _ = tokio::time::sleep(delay) => true,
                    _ = self.cancel.cancelled() => false,
                };
                if !slept {
                    let reply = self.session.shutdown_reply();
                    return self.close_with(stream, reply).await;
                }
            }
            reply.write_to(&mut self.output);
        }
    }

    /// Writes what is pending and `reply`, and ends the session.
    async fn close_with<S: AsyncWrite + Unpin>(&mut self, stream: &mut S, reply: Reply) -> End {
        reply.write_to(&mut self.output);
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, flush(stream, &mut self.output)).await;
        End::Close
    }

    /// The TLS handshake after `220 Ready to start TLS`; `None` closes the connection.
    async fn start_tls(
        &mut self,
        tcp: TcpStream,
        deadline: Instant,
    ) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        let client = self.session.peer();
        let Some(acceptor) = self.shared.tls.clone() else {
            warn!(client_ip = %client, "STARTTLS accepted without a TLS configuration; closing.");
            return None;
        };
        let handshake_deadline = deadline.min(Instant::now() + TLS_HANDSHAKE_TIMEOUT);
        let handshake = tokio::select! {
            r = tokio::time::timeout_at(handshake_deadline, acceptor.accept(tcp)) => r,
            _ = self.cancel.cancelled() => return None,
        };
        match handshake {
            Ok(Ok(tls)) => {
                let (_, state) = tls.get_ref();
                debug!(
                    client_ip = %client,
                    version = ?state.protocol_version(),
                    cipher = ?state.negotiated_cipher_suite().map(|c| c.suite()),
                    "TLS started."
                );
                self.session.tls_started();
                Some(tls)
            }
            Ok(Err(error)) => {
                info!(client_ip = %client, %error, "TLS handshake failed; closing.");
                None
            }
            Err(_elapsed) => {
                info!(client_ip = %client, "TLS handshake took too long; closing.");
                None
            }
        }
    }

    async fn session_too_long<S: AsyncWrite + Unpin>(&mut self, stream: &mut S) {
        info!(client_ip = %self.session.peer(), "SMTP session timed out.");
        // The loop was stopped wherever it was, perhaps in the middle of writing these replies;
        // sending them again could duplicate part of them, so only the 421 goes out.
        self.output.clear();
        let reply = Reply::new(
            421,
            (4, 4, 2),
            format!("{} Session too long, closing", self.shared.session.hostname),
        );
        self.close_with(stream, reply).await;
    }
}

async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    output: &mut BytesMut,
) -> std::io::Result<()> {
    if !output.is_empty() {
        stream.write_all(output).await?;
        output.clear();
    }
    stream.flush().await
}

/// Writes a last reply, bounded in time, before the connection is dropped.
async fn goodbye<S: AsyncWrite + Unpin>(stream: &mut S, reply: &Reply) {
    let write = async {
        stream.write_all(&reply.to_bytes()).await?;
        stream.flush().await
    };
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, write).await;
}
