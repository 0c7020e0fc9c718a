//! Sending mail with a real SMTP client.

use std::net::SocketAddr;

use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

/// An SMTP client for the server at `addr` (plain text, no auth).
pub fn client(addr: SocketAddr) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
        .port(addr.port())
        .timeout(Some(std::time::Duration::from_secs(20)))
        .build()
}

/// A small RFC 5322 message.
pub fn message(from: &str, to: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Fri, 29 Nov 2024 18:00:00 +0000\r\n\
         Message-ID: <{}@test>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        ulid_like()
    )
    .into_bytes()
}

fn ulid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Sends `raw` from `from` to `to`; returns the server's final reply text on success.
pub async fn send_raw(
    addr: SocketAddr,
    from: &str,
    to: &[&str],
    raw: &[u8],
) -> Result<String, lettre::transport::smtp::Error> {
    let envelope = Envelope::new(
        Some(from.parse().expect("valid sender")),
        to.iter()
            .map(|t| t.parse().expect("valid recipient"))
            .collect(),
    )
    .expect("valid envelope");
    let response = client(addr).send_raw(&envelope, raw).await?;
    Ok(response.message().collect::<Vec<_>>().join(" "))
}

/// Sends a small text message; returns the server's reply text.
pub async fn send_mail(
    addr: SocketAddr,
    from: &str,
    to: &str,
    subject: &str,
    body: &str,
) -> Result<String, lettre::transport::smtp::Error> {
    send_raw(addr, from, &[to], &message(from, to, subject, body)).await
}
