//! What `clients.rs` and `abuse.rs` share: an ingest of their own, a raw SMTP client, and a reader
//! of the RECEIVED stream.
//!
//! - [`Ingest`] starts a `nats-server` and a `redis-server` (testkit) and the ingest in-process on
//!   a `127.0.0.1:0` listener, through `maildrop_ingest::run` exactly as `main` does, and stops it
//!   on drop. Every test starts its own, so counts in RECEIVED belong to that test alone.
//! - [`Smtp`] is a client that writes whatever bytes a test gives it and reads replies strictly:
//!   for pipelining, smuggling and other conversations no SMTP library would hold.
//! - [`Ingest::received`] reads back every message in RECEIVED with its envelope. The ingest
//!   answers `250` only after JetStream has acknowledged the message, so what a client saw accepted
//!   is already there: no waiting, and a count taken after a session is final.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use async_nats::jetstream;
use bytes::Bytes;
use clap::Parser as _;
use maildrop_contract::{Envelope, MessageId, subject};
use maildrop_testkit::{NatsServer, RedisServer, wait_until};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The domain the test ingest accepts mail for.
pub const DOMAIN: &str = "maildrop.test";
/// How long any one step may take before a test fails instead of hanging.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// `mailbox@maildrop.test`.
pub fn address(mailbox: &str) -> String {
    format!("{mailbox}@{DOMAIN}")
}

/// A running ingest with its own servers.
pub struct Ingest {
    pub addr: SocketAddr,
    pub nats: NatsServer,
    pub redis: RedisServer,
    js: jetstream::Context,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Ingest {
    /// An ingest with the default settings.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[]).await
    }

    /// An ingest with extra command-line `flags` (e.g. `["--max-message-size", "10000"]`).
    pub async fn start_with(flags: &[&str]) -> anyhow::Result<Self> {
        maildrop_testkit::init_tracing();
        let nats = NatsServer::start().await?;
        let redis = RedisServer::start().await?;
        let (nats_url, redis_url) = (nats.url(), redis.url());
        let mut args = vec![
            "maildrop-ingest",
            "--nats-url",
            &nats_url,
            "--redis-url",
            &redis_url,
            "--domains",
            DOMAIN,
            // Ops endpoints on a free port: tests run side by side.
            "--ops-addr",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(flags);
        let config = maildrop_ingest::Config::try_parse_from(args)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                if let Err(e) = maildrop_ingest::run(config, listener, cancel).await {
                    panic!("the ingest stopped: {e}");
                }
            }
        });
        // The listener queues connections at once; the greeting comes once the streams exist.
        wait_until(TIMEOUT, "the ingest to greet", || async move {
            let mut stream = TcpStream::connect(addr).await.ok()?;
            let mut code = [0u8; 3];
            stream.read_exact(&mut code).await.ok()?;
            (&code == b"220").then_some(())
        })
        .await?;
        ensure!(!task.is_finished(), "the ingest stopped during start-up");
        let js = jetstream::new(async_nats::connect(&nats_url).await?);
        Ok(Self {
            addr,
            nats,
            redis,
            js,
            cancel,
            task,
        })
    }

    /// A connection that has read the greeting.
    pub async fn connect(&self) -> anyhow::Result<Smtp> {
        let (smtp, greeting) = Smtp::connect(self.addr).await?;
        ensure!(greeting.code == 220, "greeting {greeting}");
        Ok(smtp)
    }

    /// A connection that has said `EHLO`.
    pub async fn greeted(&self) -> anyhow::Result<Smtp> {
        let mut smtp = self.connect().await?;
        smtp.expect("EHLO client.example.org", 250).await?;
        Ok(smtp)
    }

    /// Every message in RECEIVED, in order.
    pub async fn received(&self) -> anyhow::Result<Vec<Received>> {
        let mut stream = self.js.get_stream(subject::RECEIVED_STREAM).await?;
        let state = stream.info().await?.state.clone();
        let mut all = Vec::new();
        if state.messages == 0 {
            return Ok(all);
        }
        for sequence in state.first_sequence..=state.last_sequence {
            let message = stream
                .direct_get(sequence)
                .await
                .with_context(|| format!("RECEIVED message {sequence}"))?;
            all.push(Received {
                envelope: Envelope::from_headers(&message.headers)
                    .with_context(|| format!("the envelope of RECEIVED message {sequence}"))?,
                body: message.payload,
            });
        }
        ensure!(
            all.len() as u64 == state.messages,
            "RECEIVED holds {} messages but {} were read",
            state.messages,
            all.len()
        );
        Ok(all)
    }

    /// The one message in RECEIVED with this id; fails if there are none or several.
    pub async fn received_once(&self, id: MessageId) -> anyhow::Result<Received> {
        let mut found: Vec<Received> = self
            .received()
            .await?
            .into_iter()
            .filter(|m| m.envelope.id == id)
            .collect();
        ensure!(
            found.len() == 1,
            "message {id} is in RECEIVED {} times",
            found.len()
        );
        Ok(found.remove(0))
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.task.abort();
    }
}

/// A message as the ingest published it.
#[derive(Debug, Clone)]
pub struct Received {
    pub envelope: Envelope,
    pub body: Bytes,
}

impl Received {
    /// The mailbox names of the envelope.
    pub fn mailboxes(&self) -> Vec<&str> {
        self.envelope.mailboxes.iter().map(|m| m.as_str()).collect()
    }
}

/// One SMTP reply as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The text of each line, after the code and its separator.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// The enhanced status code at the start of the text (`5.6.11`), if any.
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.lines.first()?.split(' ').next()?;
        let valid = first.split('.').count() == 3
            && first.split('.').all(|part| part.parse::<u16>().is_ok());
        valid.then_some(first)
    }

    /// The id in `250 2.0.0 Ok: queued as <id>`.
    pub fn queued_id(&self) -> anyhow::Result<MessageId> {
        queued_id(&self.text())
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text())
    }
}

/// The message id at the end of an ingest's `queued as <id>` reply text.
pub fn queued_id(text: &str) -> anyhow::Result<MessageId> {
    let (_, id) = text
        .rsplit_once("queued as ")
        .with_context(|| format!("no queue id in {text:?}"))?;
    id.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("bad queue id in {text:?}"))
}

/// A raw SMTP client: it writes exactly what it is given and checks the syntax of every reply.
pub struct Smtp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Smtp {
    /// Connects and reads the greeting.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<(Self, Reply)> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let mut smtp = Self {
            reader: BufReader::new(read),
            writer: write,
        };
        let greeting = smtp.reply().await?;
        Ok((smtp, greeting))
    }

    /// Writes `bytes` as they are, in one write.
    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) -> anyhow::Result<()> {
        self.writer.write_all(bytes.as_ref()).await?;
        Ok(())
    }

    /// Sends a command line (CRLF added) and reads its reply.
    pub async fn command(&mut self, line: &str) -> anyhow::Result<Reply> {
        self.send(format!("{line}\r\n")).await?;
        self.reply().await
    }

    /// Sends a command line and fails unless the reply has `code`.
    pub async fn expect(&mut self, line: &str, code: u16) -> anyhow::Result<Reply> {
        let reply = self.command(line).await?;
        ensure!(
            reply.code == code,
            "{line:?} answered {reply}, expected {code}"
        );
        Ok(reply)
    }

    /// Reads one reply, all its lines; fails if the connection closes first.
    pub async fn reply(&mut self) -> anyhow::Result<Reply> {
        match self.next_reply().await? {
            Some(reply) => Ok(reply),
            None => bail!("the server closed the connection instead of replying"),
        }
    }

    /// Reads `n` replies.
    pub async fn replies(&mut self, n: usize) -> anyhow::Result<Vec<Reply>> {
        let mut replies = Vec::with_capacity(n);
        for _ in 0..n {
            replies.push(self.reply().await?);
        }
        Ok(replies)
    }

    /// Reads replies until the server closes the connection.
    pub async fn until_closed(&mut self) -> anyhow::Result<Vec<Reply>> {
        let mut replies = Vec::new();
        while let Some(reply) = self.next_reply().await? {
            replies.push(reply);
        }
        Ok(replies)
    }

    /// A whole transaction: `MAIL`, each `RCPT`, `DATA` and the dot-stuffed `message` (which must
    /// end in CRLF), one command at a time. Returns the reply to the end of data.
    pub async fn send_message(
        &mut self,
        from: &str,
        to: &[&str],
        message: &[u8],
    ) -> anyhow::Result<Reply> {
        self.expect(&format!("MAIL FROM:<{from}>"), 250).await?;
        for rcpt in to {
            self.expect(&format!("RCPT TO:<{rcpt}>"), 250).await?;
        }
        self.expect("DATA", 354).await?;
        self.send(dot_stuffed(message)).await?;
        self.reply().await
    }

    /// The next reply, or `None` at a clean end of the connection.
    async fn next_reply(&mut self) -> anyhow::Result<Option<Reply>> {
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            let read = tokio::time::timeout(TIMEOUT, self.reader.read_until(b'\n', &mut line))
                .await
                .context("no reply in time")?;
            match read {
                Ok(0) if lines.is_empty() => return Ok(None),
                Ok(0) => bail!("the connection closed inside a reply"),
                Ok(_) => {}
                // A server that closes with our bytes unread resets the connection.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && lines.is_empty() => {
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            }
            let line = String::from_utf8(line).context("a reply that is not UTF-8")?;
            let Some(text) = line.strip_suffix("\r\n") else {
                bail!("reply line {line:?} does not end in CRLF");
            };
            ensure!(
                !text.contains(['\r', '\n']),
                "reply line {line:?} holds a bare CR or LF"
            );
            let code: u16 = text
                .get(..3)
                .and_then(|c| c.parse().ok())
                .with_context(|| format!("reply line {line:?} has no code"))?;
            let (more, rest) = match text.as_bytes().get(3) {
                None => (false, ""),
                Some(b' ') => (false, &text[4..]),
                Some(b'-') => (true, &text[4..]),
                Some(_) => bail!("reply line {line:?} has a bad separator"),
            };
            lines.push((code, rest.to_owned()));
            if !more {
                break;
            }
        }
        let code = lines[0].0;
        ensure!(
            lines.iter().all(|(c, _)| *c == code),
            "a reply whose lines have different codes: {lines:?}"
        );
        Ok(Some(Reply {
            code,
            lines: lines.into_iter().map(|(_, text)| text).collect(),
        }))
    }
}

/// `message` as sent after `DATA`: a `.` doubled at the start of each line, then `.` CRLF.
pub fn dot_stuffed(message: &[u8]) -> Vec<u8> {
    assert!(
        message.is_empty() || message.ends_with(b"\r\n"),
        "a DATA message must end in CRLF"
    );
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut line_start = true;
    for &b in message {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// A small RFC 5322 message whose subject names it.
pub fn message(subject: &str) -> Vec<u8> {
    maildrop_testkit::smtp::message(
        "Alice <alice@example.org>",
        &address("bob"),
        subject,
        "Hello Bob.\r\n..this line starts with a dot.\r\n-- \r\nAlice",
    )
}
