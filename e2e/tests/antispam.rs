//! End-to-end antispam: the flood limit feeding back to the ingest, and a rule file reloaded while
//! the filter runs. Real nats-server and redis-server; the ingest and the filter in-process.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{DOMAIN, Pipeline, Stage};
use futures::StreamExt;
use maildrop_contract::{Verdict, subject};
use maildrop_filter::ruleset::{self, Context};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const T: Duration = Duration::from_secs(30);

/// A plain SMTP client that first presents itself through a PROXY v1 header, as a load balancer
/// would (loopback is a trusted proxy by default): the test's connections come from loopback,
/// which the flood limit exempts.
struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    /// Connects as `client_ip`; returns the client and the greeting.
    async fn connect(addr: SocketAddr, client_ip: &str) -> anyhow::Result<(Self, String)> {
        let (r, mut w) = tokio::net::TcpStream::connect(addr).await?.into_split();
        w.write_all(format!("PROXY TCP4 {client_ip} 192.0.2.25 40000 25\r\n").as_bytes())
            .await?;
        let mut client = Self {
            reader: BufReader::new(r),
            writer: w,
        };
        let greeting = client.reply().await?;
        Ok((client, greeting))
    }

    /// One reply, its lines joined (empty if the server closed the connection).
    async fn reply(&mut self) -> anyhow::Result<String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if tokio::time::timeout(T, self.reader.read_line(&mut line)).await?? == 0 {
                return Ok(all);
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(all);
            }
        }
    }

    async fn command(&mut self, line: &str) -> anyhow::Result<String> {
        // One write per command: a second small write would wait for the delayed ACK (Nagle).
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await?;
        self.reply().await
    }

    /// One transaction; returns the message id from the `250 … queued as <id>` reply.
    async fn send(&mut self, from: &str, to: &str, subject: &str) -> anyhow::Result<String> {
        for (cmd, want) in [
            (format!("MAIL FROM:<{from}>"), "250"),
            (format!("RCPT TO:<{to}>"), "250"),
            ("DATA".to_owned(), "354"),
        ] {
            let reply = self.command(&cmd).await?;
            anyhow::ensure!(reply.starts_with(want), "{cmd}: {reply}");
        }
        let body = format!(
            "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Fri, 29 Nov 2024 18:00:00 +0000\r\n\
             Message-ID: <{}@bulk.example>\r\n\r\nLimited time only.\r\n.",
            to.replace('@', ".")
        );
        let reply = self.command(&body).await?;
        anyhow::ensure!(reply.starts_with("250"), "DATA: {reply}");
        let id = reply
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .to_owned();
        Ok(id)
    }
}

async fn redis(p: &Pipeline) -> anyhow::Result<maildrop_store::Redis> {
    Ok(maildrop_store::Redis::open(&p.redis.url()).await?)
}

#[tokio::test]
async fn a_flooding_ip_is_rejected_past_the_limit_and_then_refused_at_connect() -> anyhow::Result<()>
{
    let flags = HashMap::from([
        (Stage::Ingest, vec!["--proxy-protocol".to_owned()]),
        // One message at a time, so "past the limit" is exact: with N in flight, a message can be
        // counted before an earlier one, and up to N - 1 past the limit may slip through.
        (
            Stage::Filter,
            vec!["--concurrency".to_owned(), "1".to_owned()],
        ),
    ]);
    let p = Pipeline::start_with(flags, &[Stage::Ingest, Stage::Filter]).await?;
    let nats = async_nats::connect(p.nats.url()).await?;
    let mut verdicts = nats.subscribe(subject::VERDICTS_ALL).await?;
    let spammer = "203.0.113.7";

    let (mut client, greeting) = Client::connect(p.smtp, spammer).await?;
    assert!(greeting.starts_with("220"), "{greeting}");
    client.command("EHLO bulk.example").await?;
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(
            client
                .send(
                    "offers@bulk.example",
                    &format!("box{i}@{DOMAIN}"),
                    "Limited offer",
                )
                .await?,
        );
    }
    client.command("QUIT").await?;

    let mut by_id: HashMap<String, Verdict> = HashMap::new();
    while by_id.len() < ids.len() {
        let msg = tokio::time::timeout(T, verdicts.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("verdict subscription ended"))?;
        let v: Verdict = serde_json::from_slice(&msg.payload)?;
        by_id.insert(v.id.to_string(), v);
    }
    let accepted: Vec<bool> = ids.iter().map(|id| by_id[id].accepted).collect();
    assert_eq!(
        accepted[..20],
        [true; 20],
        "the first 20 are within the limit"
    );
    assert_eq!(accepted[20..], [false; 30], "the other 30 are past it");
    for id in &ids[20..] {
        let v = &by_id[id];
        let flood = v.hits.iter().find(|h| h.rule == "flood").unwrap();
        assert!(
            flood.reason.contains(&format!("client {spammer} sent")),
            "{}",
            flood.reason
        );
        assert_eq!(v.client_ip, spammer);
    }

    // The IP is in the blocked set with the IP ban as its expiry...
    let store = maildrop_store::PolicyStore::new(redis(&p).await?);
    let reason = store.is_blocked(spammer.parse()?).await?;
    assert!(
        reason.as_deref().is_some_and(|r| r.starts_with("flood:")),
        "{reason:?}"
    );
    let mut conn = p.redis.conn().await?;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(maildrop_store::keys::blocked_ip(spammer.parse()?))
        .query_async(&mut conn)
        .await?;
    assert!(ttl > 0 && ttl <= 300_000, "{ttl}");

    // ...so its next connection is refused before it can say anything, and others still get in.
    let (_, refused) = Client::connect(p.smtp, spammer).await?;
    assert!(refused.starts_with("554 5.7.1"), "{refused}");
    assert!(refused.contains("flood"), "{refused}");
    let (_, other) = Client::connect(p.smtp, "198.51.100.9").await?;
    assert!(other.starts_with("220"), "{other}");
    Ok(())
}

async fn next_verdict(verdicts: &mut async_nats::Subscriber) -> anyhow::Result<Verdict> {
    let msg = tokio::time::timeout(T, verdicts.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("verdict subscription ended"))?;
    Ok(serde_json::from_slice(&msg.payload)?)
}

async fn send(p: &Pipeline, n: usize) -> anyhow::Result<()> {
    maildrop_testkit::smtp::send_mail(
        p.smtp,
        "sender@example.org",
        &format!("reload{n}@{DOMAIN}"),
        "hello",
        "a test message",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_changed_rule_file_judges_the_next_message() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("rules.toml");
    std::fs::write(&path, "threshold = 5.0\n")?;
    let context = Context {
        domains: vec![DOMAIN.to_owned()],
    };
    let first = ruleset::load(&path, &context)?.version().to_owned();
    let flags = HashMap::from([(
        Stage::Filter,
        vec![
            "--rules".to_owned(),
            path.display().to_string(),
            "--rules-reload-every".to_owned(),
            "100ms".to_owned(),
        ],
    )]);
    let p = Pipeline::start_with(flags, &[Stage::Ingest, Stage::Filter]).await?;
    let nats = async_nats::connect(p.nats.url()).await?;
    let mut verdicts = nats.subscribe(subject::VERDICTS_ALL).await?;

    send(&p, 0).await?;
    let v = next_verdict(&mut verdicts).await?;
    assert!(v.accepted);
    assert_eq!(v.ruleset, first);

    // A stricter file: every message from example.org is rejected from now on. One message at a
    // time until a verdict carries the new version (the reload is on a 100 ms timer).
    let stricter = "threshold = 5.0\n[blocked_sender]\nsenders = [\"@example.org\"]\n";
    std::fs::write(&path, stricter)?;
    let second = ruleset::from_text(stricter, &context)?.version().to_owned();
    assert_ne!(first, second);
    let deadline = tokio::time::Instant::now() + T;
    let mut n = 0;
    let v = loop {
        n += 1;
        send(&p, n).await?;
        let v = next_verdict(&mut verdicts).await?;
        if v.ruleset != first {
            break v;
        }
        assert!(v.accepted, "judged by the old rule set");
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no verdict by the new rule set"
        );
    };
    assert_eq!(v.ruleset, second);
    assert!(!v.accepted);
    assert_eq!(v.hits[0].rule, "blocked_sender");
    assert_eq!(v.hits[0].reason, "sender domain example.org is blocked");
    Ok(())
}
