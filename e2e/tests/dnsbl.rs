//! End-to-end DNS blocklist: the filter asks the test's own DNS server about the client IP, rejects
//! a listed client's message, and the ingest refuses that client's next connection. Real
//! nats-server and redis-server; the ingest and the filter in-process; DNS from testkit's server on
//! loopback, never the internet.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{DOMAIN, Pipeline, Stage};
use futures::StreamExt;
use maildrop_contract::{Verdict, subject};
use maildrop_testkit::dns::{DnsServer, dnsbl_name};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(30);
const LISTED: &str = "203.0.113.66";
const CLEAN: &str = "198.51.100.66";

/// One SMTP conversation presented through a PROXY v1 header as `client_ip` (the test's
/// connections all come from 127.0.0.1, which no blocklist is asked about). Returns every reply,
/// the greeting first; stops early when the server refuses or hangs up.
async fn converse(
    addr: SocketAddr,
    client_ip: &str,
    commands: &[String],
) -> anyhow::Result<Vec<String>> {
    let (r, mut w) = TcpStream::connect(addr).await?.into_split();
    w.write_all(format!("PROXY TCP4 {client_ip} 192.0.2.25 40000 25\r\n").as_bytes())
        .await?;
    let mut reader = BufReader::new(r);
    let mut replies = Vec::new();
    let mut pending = commands.iter();
    loop {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            if tokio::time::timeout(T, reader.read_line(&mut line)).await?? == 0 {
                break;
            }
            reply.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        let refused = !(reply.starts_with('2') || reply.starts_with('3'));
        replies.push(reply);
        if refused {
            return Ok(replies);
        }
        let Some(command) = pending.next() else {
            return Ok(replies);
        };
        w.write_all(command.as_bytes()).await?;
        w.write_all(b"\r\n").await?;
    }
}

fn transaction(mailbox: &str) -> Vec<String> {
    vec![
        "EHLO sender.example".into(),
        "MAIL FROM:<news@sender.example>".into(),
        format!("RCPT TO:<{mailbox}@{DOMAIN}>"),
        "DATA".into(),
        format!(
            "From: news@sender.example\r\nTo: {mailbox}@{DOMAIN}\r\nSubject: News\r\n\
             Date: Sun, 29 Nov 2026 22:00:00 +0000\r\nMessage-ID: <{mailbox}@sender.example>\r\n\r\n\
             Hello.\r\n."
        ),
        "QUIT".into(),
    ]
}

#[tokio::test]
async fn a_listed_client_is_rejected_then_refused_at_connect() -> anyhow::Result<()> {
    let dns = DnsServer::start().await?;
    dns.add_a(
        &dnsbl_name(LISTED.parse()?, "bl.test"),
        [127, 0, 0, 4].into(),
    );
    let rules = tempfile::NamedTempFile::new()?;
    std::fs::write(
        rules.path(),
        "[dnsbl]\nzones = [{ zone = \"bl.test\", weight = 6.0 }]\nblock_for = \"10m\"\n\
         [uribl]\nzones = [{ zone = \"uribl.test\", weight = 5.0 }]\n",
    )?;
    let flags = HashMap::from([
        (Stage::Ingest, vec!["--proxy-protocol".to_owned()]),
        (
            Stage::Filter,
            vec![
                "--dns-servers".to_owned(),
                dns.server_arg(),
                "--rules".to_owned(),
                rules.path().display().to_string(),
            ],
        ),
    ]);
    let p = Pipeline::start_with(flags, &[Stage::Ingest, Stage::Filter]).await?;
    let nats = async_nats::connect(p.nats.url()).await?;
    let mut verdicts = nats.subscribe(subject::VERDICTS_ALL).await?;

    // A clean client first: accepted, nothing against it.
    let replies = converse(p.smtp, CLEAN, &transaction("clean")).await?;
    assert!(replies[5].starts_with("250"), "{replies:?}");
    // Then the listed one: its message is taken (the filter decides after DATA), and rejected.
    let replies = converse(p.smtp, LISTED, &transaction("listed")).await?;
    assert!(replies[5].starts_with("250"), "{replies:?}");

    let mut by_ip: HashMap<String, Verdict> = HashMap::new();
    while by_ip.len() < 2 {
        let msg = tokio::time::timeout(T, verdicts.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("verdict subscription ended"))?;
        let v: Verdict = serde_json::from_slice(&msg.payload)?;
        by_ip.insert(v.client_ip.clone(), v);
    }
    let clean = &by_ip[CLEAN];
    assert!(clean.accepted, "{:?}", clean.hits);
    assert!(clean.hits.iter().all(|h| h.rule != "dnsbl"));
    let listed = &by_ip[LISTED];
    assert!(!listed.accepted);
    let hit = listed.hits.iter().find(|h| h.rule == "dnsbl").unwrap();
    assert_eq!(hit.score, 6.0);
    assert_eq!(
        hit.reason,
        format!("client {LISTED} listed on bl.test (127.0.0.4)")
    );

    // The block was written before the verdict was published: the next connection is refused
    // before the greeting, with the reason.
    let replies = converse(p.smtp, LISTED, &transaction("again")).await?;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(replies[0].starts_with("554"), "{replies:?}");
    assert!(replies[0].contains("bl.test"), "{replies:?}");
    // The clean client still gets in.
    let replies = converse(p.smtp, CLEAN, &["QUIT".to_owned()]).await?;
    assert!(replies[0].starts_with("220"), "{replies:?}");
    // One question per client and zone: the blocklist was not asked twice about anybody.
    assert_eq!(dns.queries_for(&dnsbl_name(LISTED.parse()?, "bl.test")), 1);
    Ok(())
}
