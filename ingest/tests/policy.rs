//! The ingest's connection policy, tested at the socket on real servers: blocked IPs, per-client
//! limits, the PROXY protocol, greylisting, tarpits, STARTTLS and shutdown over TLS.
//!
//! Each test starts its own `nats-server` and `redis-server` (testkit) and runs the ingest in
//! process through `maildrop_ingest::run` on a port the OS picked, configured with the same flags
//! an operator would use. The client is a raw `TcpStream` that writes command lines and reads
//! replies, because what is tested is the bytes on the wire (a `421` at connect, nothing after
//! `220 Ready to start TLS`), which a real SMTP client library would hide.
//!
//! The ingest connects to Redis in the background and lets clients in until it has, so tests that
//! need Redis poll (with a deadline) for the first sign that it is used instead of sleeping.
//! The only sleep is the one that waits out the greylist delay.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use maildrop_contract::Envelope;
use maildrop_contract::envelope::header;
use maildrop_store::{Greylist, GreylistKey, PolicyStore};
use maildrop_testkit::{NatsServer, RedisServer, wait_until};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_util::sync::CancellationToken;

const DOMAIN: &str = "maildrop.test";
const HOSTNAME: &str = "mx.maildrop.test";
/// The first greeting waits for the ingest to connect to NATS and set up the streams.
const FIRST_GREETING: Duration = Duration::from_secs(30);
const REPLY: Duration = Duration::from_secs(10);
/// How long the ingest may take to find Redis in the background.
const REDIS_FOUND: Duration = Duration::from_secs(20);
const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

// --- Harness ------------------------------------------------------------------------------------

struct Ingest {
    nats: NatsServer,
    redis: Option<RedisServer>,
    addr: SocketAddr,
    cancel: CancellationToken,
    task: Option<JoinHandle<Result<(), maildrop_ingest::Error>>>,
}

impl Ingest {
    /// NATS, Redis and the ingest with `flags`; returns once the ingest greets.
    async fn start(flags: &[&str]) -> anyhow::Result<Self> {
        let redis = RedisServer::start().await?;
        let url = redis.url();
        Self::start_with(Some(redis), &url, flags).await
    }

    async fn start_with(
        redis: Option<RedisServer>,
        redis_url: &str,
        flags: &[&str],
    ) -> anyhow::Result<Self> {
        maildrop_testkit::init_tracing();
        let nats = NatsServer::start().await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let nats_url = nats.url();
        let mut args = vec![
            "maildrop-ingest",
            "--nats-url",
            &nats_url,
            "--redis-url",
            redis_url,
            "--domains",
            DOMAIN,
            "--hostname",
            HOSTNAME,
            // Ops endpoints on a free port: tests run side by side.
            "--ops-addr",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(flags);
        let config = maildrop_ingest::Config::try_parse_from(args)?;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(maildrop_ingest::run(config, listener, cancel.clone()));
        let ingest = Self {
            nats,
            redis,
            addr,
            cancel,
            task: Some(task),
        };
        Ok(ingest)
    }

    async fn connect(&self) -> anyhow::Result<Smtp<TcpStream>> {
        Ok(Smtp::new(TcpStream::connect(self.addr).await?))
    }

    /// A connection that got its `220`.
    async fn greeted(&self) -> anyhow::Result<Smtp<TcpStream>> {
        let mut c = self.connect().await?;
        c.reply_within(FIRST_GREETING).await?.expect(220)?;
        Ok(c)
    }

    /// A connection through a "proxy" that sends `header` first.
    async fn proxied(&self, header: &[u8]) -> anyhow::Result<Smtp<TcpStream>> {
        let mut c = self.connect().await?;
        c.send(header).await?;
        Ok(c)
    }

    fn redis(&self) -> &RedisServer {
        self.redis.as_ref().expect("this test has a Redis server")
    }

    async fn policy_store(&self) -> anyhow::Result<PolicyStore> {
        let conn = maildrop_store::Redis::open(&self.redis().url()).await?;
        Ok(PolicyStore::new(conn))
    }

    /// The envelope published for message `id`.
    async fn envelope(&self, id: &str) -> anyhow::Result<Envelope> {
        let js = async_nats::jetstream::new(async_nats::connect(self.nats.url()).await?);
        let stream = js
            .get_stream(maildrop_contract::subject::RECEIVED_STREAM)
            .await?;
        let last = stream.get_info().await?.state.last_sequence;
        for seq in 1..=last {
            let msg = stream.get_raw_message(seq).await?;
            if msg.headers.get(header::ID).map(|v| v.as_str()) == Some(id) {
                return Ok(Envelope::from_headers(&msg.headers)?);
            }
        }
        bail!("message {id} is not in the RECEIVED stream")
    }

    /// Cancels the ingest and waits for it to return.
    async fn stop(&mut self) -> anyhow::Result<()> {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .context("the ingest did not stop")???;
        }
        Ok(())
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// One SMTP reply: the code and the text of all lines (after `NNN-`/`NNN `), joined by `\n`.
#[derive(Debug)]
struct Reply {
    code: u16,
    text: String,
}

impl Reply {
    fn expect(self, code: u16) -> anyhow::Result<Self> {
        ensure!(self.code == code, "expected {code}, got {self:?}");
        Ok(self)
    }

    /// The id in `250 2.0.0 Ok: queued as <id>`.
    fn queued_id(&self) -> anyhow::Result<String> {
        self.text
            .strip_prefix("2.0.0 Ok: queued as ")
            .map(str::to_owned)
            .with_context(|| format!("not a queued reply: {self:?}"))
    }
}

/// A line-level SMTP client over any stream.
struct Smtp<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Smtp<S> {
    fn new(stream: S) -> Self {
        Self {
            io: BufReader::new(stream),
        }
    }

    async fn send(&mut self, data: impl AsRef<[u8]>) -> anyhow::Result<()> {
        let stream = self.io.get_mut();
        stream.write_all(data.as_ref()).await?;
        stream.flush().await?;
        Ok(())
    }

    async fn reply(&mut self) -> anyhow::Result<Reply> {
        self.reply_within(REPLY).await
    }

    async fn reply_within(&mut self, timeout: Duration) -> anyhow::Result<Reply> {
        tokio::time::timeout(timeout, self.read_reply())
            .await
            .context("no reply in time")?
    }

    async fn read_reply(&mut self) -> anyhow::Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.io.read_line(&mut line).await? == 0 {
                bail!("connection closed after {lines:?}");
            }
            let line = line
                .strip_suffix("\r\n")
                .with_context(|| format!("reply line without CRLF: {line:?}"))?;
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .with_context(|| format!("no reply code in {line:?}"))?;
            let last = !line[3..].starts_with('-');
            lines.push(line.get(4..).unwrap_or_default().to_owned());
            if last {
                return Ok(Reply {
                    code,
                    text: lines.join("\n"),
                });
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> anyhow::Result<Reply> {
        self.send(format!("{line}\r\n")).await?;
        self.reply().await
    }

    /// The server closes the connection without sending anything more.
    async fn closed(&mut self) -> anyhow::Result<()> {
        let mut rest = Vec::new();
        match tokio::time::timeout(REPLY, self.io.read_to_end(&mut rest)).await {
            Err(_) => bail!("the connection is still open"),
            Ok(Ok(_)) | Ok(Err(_)) if rest.is_empty() => Ok(()),
            Ok(_) => bail!("more after the end: {:?}", String::from_utf8_lossy(&rest)),
        }
    }

    /// The stream, checking that no byte was read ahead of the last reply.
    fn into_inner(self) -> anyhow::Result<S> {
        ensure!(
            self.io.buffer().is_empty(),
            "the server sent more than was asked: {:?}",
            String::from_utf8_lossy(self.io.buffer())
        );
        Ok(self.io.into_inner())
    }

    /// EHLO to the end of DATA for one message to `mailbox`; returns the message id.
    async fn send_mail(&mut self, helo: &str, mailbox: &str) -> anyhow::Result<String> {
        self.cmd(&format!("EHLO {helo}")).await?.expect(250)?;
        self.cmd("MAIL FROM:<sender@example.org>")
            .await?
            .expect(250)?;
        self.cmd(&format!("RCPT TO:<{mailbox}@{DOMAIN}>"))
            .await?
            .expect(250)?;
        self.cmd("DATA").await?.expect(354)?;
        self.cmd("Subject: policy test\r\n\r\nHello.\r\n.")
            .await?
            .expect(250)?
            .queued_id()
    }
}

/// A PROXY v2 header for a TCP-over-IPv6 client.
fn proxy_v2_ipv6(source: &str, port: u16) -> anyhow::Result<Vec<u8>> {
    let src: std::net::Ipv6Addr = source.parse()?;
    let mut header = maildrop_ingest::proxy::V2_SIGNATURE.to_vec();
    header.extend_from_slice(&[0x21, 0x21, 0, 36]);
    header.extend_from_slice(&src.octets());
    header.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    header.extend_from_slice(&port.to_be_bytes());
    header.extend_from_slice(&25u16.to_be_bytes());
    Ok(header)
}

fn proxy_v1(source: &str) -> String {
    format!("PROXY TCP4 {source} 127.0.0.1 40000 25\r\n")
}

// --- TLS helpers ----------------------------------------------------------------------------------

/// A self-signed certificate and its key, made by the `openssl` command line tool.
async fn self_signed(dir: &Path, name: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let out = tokio::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", &format!("/CN={HOSTNAME}"), "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .await
        .context("cannot run openssl")?;
    ensure!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((cert, key))
}

/// Accepts any certificate: the test checks the SMTP side of TLS, not the PKI. Signatures are
/// still verified, so the handshake is a real one.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_connector() -> anyhow::Result<TlsConnector> {
    let provider = Arc::new(crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// `STARTTLS` on a greeted connection (after EHLO), then the handshake.
async fn starttls(mut c: Smtp<TcpStream>) -> anyhow::Result<Smtp<TlsStream<TcpStream>>> {
    let reply = c.cmd("STARTTLS").await?.expect(220)?;
    assert_eq!(reply.text, "2.0.0 Ready to start TLS");
    let tcp = c.into_inner()?;
    let tls = tls_connector()?
        .connect(ServerName::try_from(HOSTNAME)?, tcp)
        .await
        .context("TLS handshake")?;
    Ok(Smtp::new(tls))
}

// --- Blocked IPs ----------------------------------------------------------------------------------

#[tokio::test]
async fn a_blocked_ip_gets_554_at_connect_and_is_let_in_once_unblocked() -> anyhow::Result<()> {
    let mut ingest = Ingest::start(&[]).await?;
    ingest.greeted().await?.cmd("QUIT").await?.expect(221)?;

    let policy = ingest.policy_store().await?;
    policy
        .block_ip(LOCALHOST, "spam source (policy test)", None)
        .await?;
    let i = &ingest;
    let (reply, mut c) = wait_until(REDIS_FOUND, "a 554 at connect", || async move {
        let mut c = i.connect().await.ok()?;
        let reply = c.reply().await.ok()?;
        (reply.code == 554).then_some((reply, c))
    })
    .await?;
    assert_eq!(
        reply.text,
        format!("5.7.1 {HOSTNAME} Your address is blocked: spam source (policy test)")
    );
    c.closed().await?;

    assert!(policy.unblock_ip(LOCALHOST).await?);
    ingest.greeted().await?.cmd("QUIT").await?.expect(221)?;
    ingest.stop().await
}

#[tokio::test]
async fn a_redis_outage_lets_clients_in() -> anyhow::Result<()> {
    let mut ingest = Ingest::start(&[]).await?;
    ingest.greeted().await?;
    ingest
        .policy_store()
        .await?
        .block_ip(LOCALHOST, "blocked", None)
        .await?;
    let i = &ingest;
    wait_until(REDIS_FOUND, "the block to take effect", || async move {
        let reply = i.connect().await.ok()?.reply().await.ok()?;
        (reply.code == 554).then_some(())
    })
    .await?;

    ingest.redis.as_mut().expect("a Redis server").stop().await;
    let started = Instant::now();
    let mut c = ingest.greeted().await?;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the check failed open, but only after {:?}",
        started.elapsed()
    );
    c.send_mail("mx.example.org", "outage").await?;
    ingest.stop().await
}

#[tokio::test]
async fn without_redis_mail_still_flows_even_with_greylisting_on() -> anyhow::Result<()> {
    // Nothing listens on this port: the ingest keeps trying in the background.
    let url = format!("redis://127.0.0.1:{}", maildrop_testkit::free_port());
    let mut ingest = Ingest::start_with(
        None,
        &url,
        &["--greylist", "--greylist-delay", "1h", "--exempt-networks="],
    )
    .await?;
    let id = ingest
        .greeted()
        .await?
        .send_mail("mx.example.org", "bob")
        .await?;
    ingest.envelope(&id).await?;
    ingest.stop().await
}

#[tokio::test]
async fn policy_records_in_redis_expire_and_follow_their_rules() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let conn = maildrop_store::Redis::open(&redis.url()).await?;
    let policy = PolicyStore::new(conn);
    let ip: IpAddr = "192.0.2.1".parse()?;

    // Blocks: per entry, with their own expiry, keyed by the canonical address.
    assert_eq!(policy.is_blocked(ip).await?, None);
    policy
        .block_ip(
            "::ffff:192.0.2.1".parse()?,
            "bad\r\nbot",
            Some(Duration::from_millis(300)),
        )
        .await?;
    assert_eq!(policy.is_blocked(ip).await?.as_deref(), Some("bad  bot"));
    let p = &policy;
    wait_until(
        Duration::from_secs(5),
        "the block to expire",
        || async move { p.is_blocked(ip).await.ok()?.is_none().then_some(()) },
    )
    .await?;
    assert!(!policy.unblock_ip(ip).await?);

    // The greylist, with a fake clock.
    let (delay, expiry) = (Duration::from_secs(300), Duration::from_secs(36 * 3600));
    let key = GreylistKey::new(ip, "MX.Example.ORG");
    let t0 = 1_700_000_000_000;
    assert_eq!(
        policy.greylist(&key, t0, delay, expiry).await?,
        Greylist::Deferred {
            retry_in: delay,
            first_contact: true
        }
    );
    assert_eq!(
        policy.greylist(&key, t0 + 60_000, delay, expiry).await?,
        Greylist::Deferred {
            retry_in: Duration::from_secs(240),
            first_contact: false
        }
    );
    // Another address of the same /24, same name (any case): the same sender retrying.
    let retry = GreylistKey::new("192.0.2.200".parse()?, "mx.example.org");
    assert_eq!(
        policy.greylist(&retry, t0 + 300_000, delay, expiry).await?,
        Greylist::Passed
    );
    assert_eq!(
        policy.greylist(&key, t0 + 301_000, delay, expiry).await?,
        Greylist::Known
    );
    // Another name is another sender.
    let other = GreylistKey::new(ip, "other.example.org");
    assert!(
        !policy
            .greylist(&other, t0 + 301_000, delay, expiry)
            .await?
            .passes()
    );
    let mut conn = redis.conn().await?;
    let ttl: i64 = redis::cmd("PTTL")
        .arg("md:grey:192.0.2.0/24:mx.example.org")
        .query_async(&mut conn)
        .await?;
    assert!(
        ttl > 35 * 3600 * 1000,
        "whitelisted for the expiry: {ttl} ms"
    );
    Ok(())
}

// --- Per-client limits ------------------------------------------------------------------------------

#[tokio::test]
async fn the_per_ip_connection_limit_answers_421() -> anyhow::Result<()> {
    let mut ingest =
        Ingest::start(&["--exempt-networks=", "--max-connections-per-ip", "2"]).await?;
    let mut first = ingest.greeted().await?;
    let _second = ingest.greeted().await?;
    let mut third = ingest.connect().await?;
    let reply = third.reply().await?.expect(421)?;
    assert_eq!(
        reply.text,
        format!("4.7.0 {HOSTNAME} Too many connections from your address, try again later")
    );
    third.closed().await?;

    // A closed connection gives its slot back.
    first.cmd("QUIT").await?.expect(221)?;
    drop(first);
    let i = &ingest;
    wait_until(Duration::from_secs(10), "a free slot", || async move {
        let reply = i.connect().await.ok()?.reply().await.ok()?;
        (reply.code == 220).then_some(())
    })
    .await?;
    ingest.stop().await
}

#[tokio::test]
async fn the_per_ip_connection_rate_answers_421() -> anyhow::Result<()> {
    let mut ingest =
        Ingest::start(&["--exempt-networks=", "--connection-rate-per-ip", "3"]).await?;
    for _ in 0..3 {
        ingest.greeted().await?.cmd("QUIT").await?.expect(221)?;
    }
    let mut c = ingest.connect().await?;
    let reply = c.reply().await?.expect(421)?;
    assert!(reply.text.starts_with("4.7.0 "), "{reply:?}");
    assert!(reply.text.contains("too fast"), "{reply:?}");
    c.closed().await?;
    ingest.stop().await
}

#[tokio::test]
async fn loopback_is_exempt_from_per_ip_limits_by_default() -> anyhow::Result<()> {
    let mut ingest = Ingest::start(&["--max-connections-per-ip", "1"]).await?;
    let _a = ingest.greeted().await?;
    let _b = ingest.greeted().await?;
    ingest.stop().await
}

// --- PROXY protocol -----------------------------------------------------------------------------

#[tokio::test]
async fn a_proxy_header_from_a_trusted_peer_sets_the_client_ip() -> anyhow::Result<()> {
    // 127.0.0.1 is trusted by default.
    let mut ingest = Ingest::start(&["--proxy-protocol"]).await?;

    let mut c = ingest.proxied(proxy_v1("198.51.100.7").as_bytes()).await?;
    c.reply_within(FIRST_GREETING).await?.expect(220)?;
    let id = c.send_mail("mx.example.org", "proxied").await?;
    let envelope = ingest.envelope(&id).await?;
    assert_eq!(envelope.client_ip, "198.51.100.7".parse::<IpAddr>()?);
    assert_eq!(envelope.helo, "mx.example.org");

    let mut c = ingest
        .proxied(&proxy_v2_ipv6("2001:db8::42", 50000)?)
        .await?;
    c.reply().await?.expect(220)?;
    let id = c.send_mail("mx6.example.org", "proxied").await?;
    assert_eq!(
        ingest.envelope(&id).await?.client_ip,
        "2001:db8::42".parse::<IpAddr>()?
    );

    // The client behind the proxy cannot add a header of its own.
    let mut c = ingest.proxied(proxy_v1("198.51.100.7").as_bytes()).await?;
    c.reply().await?.expect(220)?;
    c.cmd(proxy_v1("203.0.113.1").trim_end())
        .await?
        .expect(421)?;
    c.closed().await?;

    // A trusted peer must send a header: without one it is closed without a word.
    let mut c = ingest.proxied(b"EHLO mx.example.org\r\n").await?;
    c.closed().await?;
    ingest.stop().await
}

#[tokio::test]
async fn a_proxy_header_from_an_untrusted_peer_is_refused() -> anyhow::Result<()> {
    let mut ingest =
        Ingest::start(&["--proxy-protocol", "--proxy-trusted", "192.0.2.0/24"]).await?;

    // Untrusted peers are plain SMTP clients, greeted at once under their own address ...
    let mut c = ingest.greeted().await?;
    let reply = c
        .cmd(proxy_v1("198.51.100.7").trim_end())
        .await?
        .expect(421)?;
    assert_eq!(
        reply.text,
        format!("4.7.0 {HOSTNAME} PROXY protocol not accepted from your address, closing")
    );
    c.closed().await?;

    // ... and a v2 header's built-in QUIT ends the session.
    let mut c = ingest.greeted().await?;
    c.send(proxy_v2_ipv6("2001:db8::42", 50000)?).await?;
    let mut codes = Vec::new();
    while let Ok(reply) = c.reply().await {
        codes.push(reply.code);
    }
    assert_eq!(codes.last(), Some(&221), "{codes:?}");

    // Mail from the untrusted peer is recorded under its real address.
    let id = ingest
        .greeted()
        .await?
        .send_mail("mx.example.org", "direct")
        .await?;
    assert_eq!(ingest.envelope(&id).await?.client_ip, LOCALHOST);
    ingest.stop().await
}

#[tokio::test]
async fn limits_and_blocks_apply_to_the_address_a_proxy_names() -> anyhow::Result<()> {
    let mut ingest = Ingest::start(&["--proxy-protocol", "--max-connections-per-ip", "1"]).await?;
    let mut held = ingest.proxied(proxy_v1("203.0.113.5").as_bytes()).await?;
    held.reply_within(FIRST_GREETING).await?.expect(220)?;
    // Loopback is exempt, but the proxy's clients are not.
    let mut same = ingest.proxied(proxy_v1("203.0.113.5").as_bytes()).await?;
    same.reply().await?.expect(421)?;
    let mut other = ingest.proxied(proxy_v1("203.0.113.6").as_bytes()).await?;
    other.reply().await?.expect(220)?;

    ingest
        .policy_store()
        .await?
        .block_ip("203.0.113.9".parse()?, "blocked behind a proxy", None)
        .await?;
    let i = &ingest;
    wait_until(REDIS_FOUND, "a 554 for the proxied client", || async move {
        let mut c = i.proxied(proxy_v1("203.0.113.9").as_bytes()).await.ok()?;
        (c.reply().await.ok()?.code == 554).then_some(())
    })
    .await?;
    ingest.stop().await
}

// --- Greylisting --------------------------------------------------------------------------------

#[tokio::test]
async fn greylisting_defers_the_first_contact_and_accepts_the_retry() -> anyhow::Result<()> {
    let delay = Duration::from_secs(1);
    let mut ingest =
        Ingest::start(&["--greylist", "--greylist-delay", "1s", "--exempt-networks="]).await?;
    let rcpt = format!("RCPT TO:<bob@{DOMAIN}>");

    // Until the ingest has found Redis, greylisting fails open (250): poll for the first 451.
    let i = &ingest;
    let rcpt_ref = &rcpt;
    let (reply, first_contact, mut c) =
        wait_until(REDIS_FOUND, "a greylisting 451", || async move {
            let mut c = i.greeted().await.ok()?;
            c.cmd("EHLO mx.example.org").await.ok()?;
            c.cmd("MAIL FROM:<sender@example.org>").await.ok()?;
            let reply = c.cmd(rcpt_ref).await.ok()?;
            (reply.code == 451).then_some((reply, Instant::now(), c))
        })
        .await?;
    assert_eq!(
        reply.text,
        "4.7.1 Greylisted, please try again in 1 seconds"
    );
    // Every recipient of the greeting gets the same answer, and no message goes through.
    c.cmd(&format!("RCPT TO:<alice@{DOMAIN}>"))
        .await?
        .expect(451)?;
    c.cmd("DATA").await?.expect(554)?;
    // Retrying at once, even with a new greeting, is too early.
    c.cmd("EHLO mx.example.org").await?.expect(250)?;
    c.cmd("MAIL FROM:<sender@example.org>").await?.expect(250)?;
    c.cmd(&rcpt).await?.expect(451)?;
    c.cmd("QUIT").await?.expect(221)?;

    tokio::time::sleep_until(first_contact + delay).await;
    let id = ingest
        .greeted()
        .await?
        .send_mail("mx.example.org", "bob")
        .await?;
    ingest.envelope(&id).await?;
    // From now on the pair passes at once; another name is another sender.
    ingest
        .greeted()
        .await?
        .send_mail("MX.EXAMPLE.ORG", "bob")
        .await?;
    let mut c = ingest.greeted().await?;
    c.cmd("EHLO other.example.org").await?.expect(250)?;
    c.cmd("MAIL FROM:<sender@example.org>").await?.expect(250)?;
    c.cmd(&rcpt).await?.expect(451)?;

    let mut conn = ingest.redis().conn().await?;
    let entry: String = redis::cmd("GET")
        .arg("md:grey:127.0.0.0/24:mx.example.org")
        .query_async(&mut conn)
        .await?;
    assert_eq!(entry, "pass");
    ingest.stop().await
}

// --- Tarpits ------------------------------------------------------------------------------------

#[tokio::test]
async fn the_tarpit_and_the_error_delay_hold_replies_back() -> anyhow::Result<()> {
    let mut ingest = Ingest::start(&[
        "--tarpit",
        "300ms",
        "--error-delay",
        "200ms",
        "--error-delay-max",
        "250ms",
    ])
    .await?;
    let mut c = ingest.greeted().await?;
    c.cmd("EHLO mx.example.org").await?.expect(250)?;

    let timed = |ms: u64| Duration::from_millis(ms);
    let t = Instant::now();
    c.cmd("MAIL FROM:<sender@example.org>").await?.expect(250)?;
    assert!(t.elapsed() >= timed(300), "MAIL after {:?}", t.elapsed());

    let t = Instant::now();
    c.cmd("NOPE").await?.expect(500)?;
    assert!(
        t.elapsed() >= timed(200),
        "1st error after {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    c.cmd("NOPE").await?.expect(500)?;
    assert!(
        t.elapsed() >= timed(250),
        "2nd error after {:?}",
        t.elapsed()
    );

    // Pipelined: each reply waits its turn, in order.
    let t = Instant::now();
    c.send(format!("RCPT TO:<a@{DOMAIN}>\r\nRCPT TO:<b@{DOMAIN}>\r\n"))
        .await?;
    c.reply().await?.expect(250)?;
    c.reply().await?.expect(250)?;
    assert!(
        t.elapsed() >= timed(600),
        "two RCPTs after {:?}",
        t.elapsed()
    );
    ingest.stop().await
}

// --- STARTTLS -----------------------------------------------------------------------------------

#[tokio::test]
async fn a_whole_transaction_over_starttls() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, key) = self_signed(dir.path(), "mx").await?;
    let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
    let mut ingest = Ingest::start(&["--tls-cert", &cert, "--tls-key", &key]).await?;

    let mut c = ingest.greeted().await?;
    let ehlo = c.cmd("EHLO mx.example.org").await?.expect(250)?;
    assert!(ehlo.text.lines().any(|l| l == "STARTTLS"), "{ehlo:?}");
    let mut tls = starttls(c).await?;

    let ehlo = tls.cmd("EHLO mx.example.org").await?.expect(250)?;
    assert!(!ehlo.text.lines().any(|l| l == "STARTTLS"), "{ehlo:?}");
    tls.cmd("STARTTLS").await?.expect(503)?;
    let id = tls.send_mail("mx.example.org", "secret").await?;
    assert_eq!(ingest.envelope(&id).await?.client_ip, LOCALHOST);
    tls.cmd("QUIT").await?.expect(221)?;
    tls.closed().await?;
    ingest.stop().await
}

#[tokio::test]
async fn plaintext_pipelined_after_starttls_is_discarded() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, key) = self_signed(dir.path(), "mx").await?;
    let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
    let mut ingest = Ingest::start(&["--tls-cert", &cert, "--tls-key", &key]).await?;

    let mut c = ingest.greeted().await?;
    c.cmd("EHLO mx.example.org").await?.expect(250)?;
    // An attacker in the path appends commands to the client's STARTTLS (CVE-2011-0411).
    c.send(format!(
        "STARTTLS\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@{DOMAIN}>\r\n"
    ))
    .await?;
    let reply = c.reply().await?.expect(220)?;
    assert_eq!(reply.text, "2.0.0 Ready to start TLS");
    // Nothing else came back in plaintext (`into_inner` checks), and the handshake works.
    let tcp = c.into_inner()?;
    let tls = tls_connector()?
        .connect(ServerName::try_from(HOSTNAME)?, tcp)
        .await?;
    let mut tls = Smtp::new(tls);
    tls.cmd("EHLO mx.example.org").await?.expect(250)?;
    // The injected MAIL was never executed: RCPT has no transaction to join.
    tls.cmd(&format!("RCPT TO:<victim@{DOMAIN}>"))
        .await?
        .expect(503)?;
    tls.send_mail("mx.example.org", "after").await?;
    ingest.stop().await
}

#[tokio::test]
async fn shutdown_says_421_over_tls() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, key) = self_signed(dir.path(), "mx").await?;
    let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
    let mut ingest = Ingest::start(&["--tls-cert", &cert, "--tls-key", &key]).await?;
    let mut c = ingest.greeted().await?;
    c.cmd("EHLO mx.example.org").await?.expect(250)?;
    let mut tls = starttls(c).await?;
    tls.cmd("EHLO mx.example.org").await?.expect(250)?;

    ingest.cancel.cancel();
    let reply = tls.reply().await?.expect(421)?;
    assert_eq!(
        reply.text,
        format!("4.3.2 {HOSTNAME} Service shutting down, closing connection")
    );
    tls.closed().await?;
    ingest.stop().await
}

#[tokio::test]
async fn an_unusable_certificate_stops_start_up() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, _) = self_signed(dir.path(), "one").await?;
    let (_, other_key) = self_signed(dir.path(), "two").await?;
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not PEM at all\n")?;
    let missing = dir.path().join("missing.pem");

    // No servers: the configuration is checked before anything is connected.
    let run = |cert: &Path, key: &Path| {
        let config = maildrop_ingest::Config::try_parse_from([
            "maildrop-ingest".as_ref(),
            "--nats-url".as_ref(),
            "nats://127.0.0.1:1".as_ref(),
            "--tls-cert".as_ref(),
            cert.as_os_str(),
            "--tls-key".as_ref(),
            key.as_os_str(),
        ]);
        async move {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let result = tokio::time::timeout(
                Duration::from_secs(10),
                maildrop_ingest::run(config?, listener, CancellationToken::new()),
            )
            .await
            .context("start-up did not fail at once")?;
            match result {
                Ok(()) => bail!("started with an unusable certificate"),
                Err(e) => Ok::<_, anyhow::Error>(e.to_string()),
            }
        }
    };
    let err = run(&missing, &other_key).await?;
    assert!(err.starts_with("MAILDROP_TLS_CERT="), "{err}");
    let err = run(&garbage, &other_key).await?;
    assert!(err.starts_with("MAILDROP_TLS_CERT="), "{err}");
    let err = run(&cert, &garbage).await?;
    assert!(err.starts_with("MAILDROP_TLS_KEY="), "{err}");
    let err = run(&cert, &other_key).await?;
    assert!(
        err.contains("MAILDROP_TLS_CERT=") && err.contains("MAILDROP_TLS_KEY="),
        "{err}"
    );
    Ok(())
}
