//! The rspamd backend against a real rspamd (testkit's `RspamdServer`: Debian's rspamd on a free
//! loopback port, its DNS on the test's own server, never the internet): its verdict becomes the
//! `rspamd` hit of the filter's verdict, a clean message gets none, and an rspamd that is stopped,
//! absent or silent is no answer, so the message is still judged.

use std::time::Duration;

use maildrop_contract::{Envelope, Mailbox, MessageId};
use maildrop_filter::facts::Facts;
use maildrop_filter::handler::{Judgement, judge};
use maildrop_filter::rspamd::{Rspamd, RspamdGatherer};
use maildrop_filter::rules::RuleSet;
use maildrop_filter::ruleset::{Context, RuleSetFile};
use maildrop_testkit::dns::DnsServer;
use maildrop_testkit::free_port;
use maildrop_testkit::rspamd::RspamdServer;

/// GTUBE: rspamd rejects any message that holds it.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

fn envelope() -> Envelope {
    Envelope {
        id: MessageId::new(),
        client_ip: "203.0.113.7".parse().unwrap(),
        helo: "mail.example.org".into(),
        mail_from: "alice@example.org".into(),
        rcpt_to: vec!["bob@maildrop.test".into(), "carol@maildrop.test".into()],
        mailboxes: vec![
            Mailbox::parse("bob").unwrap(),
            Mailbox::parse("carol").unwrap(),
        ],
        received_ms: 0,
        size: 0,
    }
}

fn message(body: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nTo: Bob <bob@maildrop.test>\r\nSubject: Lunch tomorrow\r\n\
         Date: Sun, 29 Nov 2026 22:00:00 +0000\r\nMessage-ID: <m1@example.org>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn rule_set(text: &str) -> RuleSet {
    RuleSetFile::parse(text)
        .unwrap()
        .build(&Context::default())
        .unwrap()
}

fn gatherer(url: &str, timeout: Duration) -> RspamdGatherer {
    RspamdGatherer::new(Some(Rspamd::new(url, None, timeout)))
}

/// Asks and judges one message: what the live handler does, without NATS.
async fn run(g: &RspamdGatherer, rules: &RuleSet, raw: &[u8]) -> (Facts, Judgement) {
    let env = envelope();
    let parsed = mail_parser::MessageParser::default().parse(raw);
    let facts = Facts {
        rspamd: g.gather(rules, &env, raw).await,
        ..Facts::default()
    };
    let judgement = judge(rules, &env, parsed.as_ref(), raw, 1, &facts);
    (facts, judgement)
}

fn hit<'a>(j: &'a Judgement, rule: &str) -> Option<&'a maildrop_contract::RuleHit> {
    j.verdict.hits.iter().find(|h| h.rule == rule)
}

#[tokio::test]
async fn rspamds_reject_is_the_rspamd_hit_a_clean_message_has_none_and_a_stopped_rspamd_none() {
    maildrop_testkit::init_tracing();
    // The sender's domain and HELO name resolve (to the client), as a real sender's do; this
    // server has no PTR records, which rspamd holds against a client, but not enough to act on.
    let dns = DnsServer::start().await.unwrap();
    dns.add_a("example.org", [203, 0, 113, 7].into());
    dns.add_a("mail.example.org", [203, 0, 113, 7].into());
    let mut server = RspamdServer::start(dns.addr()).await.unwrap();
    let g = gatherer(&server.url(), Duration::from_secs(20));
    let rules = rule_set("");

    let spam = message(&format!("Cheap watches.\r\n{GTUBE}"));
    let (facts, j) = run(&g, &rules, &spam).await;
    let answer = facts.rspamd.as_ref().expect("rspamd answered");
    assert_eq!(answer.action, "reject");
    assert!(
        answer.symbols.iter().any(|s| s.name == "GTUBE"),
        "{answer:?}"
    );
    assert!(!j.verdict.accepted);
    let h = hit(&j, "rspamd").unwrap();
    assert_eq!(h.score, 5.0);
    assert!(
        h.reason.starts_with("rspamd says reject at "),
        "{}",
        h.reason
    );
    assert!(h.reason.contains("GTUBE"), "{}", h.reason);

    let clean = message("Hi Bob, shall we have lunch tomorrow at noon? Alice");
    let (facts, j) = run(&g, &rules, &clean).await;
    let answer = facts.rspamd.as_ref().expect("rspamd answered");
    assert!(
        ["no action", "greylist"].contains(&answer.action.as_str()),
        "{answer:?}"
    );
    assert!(j.verdict.accepted, "{:?}", j.verdict);
    assert!(hit(&j, "rspamd").is_none());

    // The rule off: rspamd is not asked at all.
    let off = rule_set("[rspamd]\nenabled = false\n");
    let (facts, j) = run(&g, &off, &spam).await;
    assert_eq!(facts.rspamd, None);
    assert!(hit(&j, "rspamd").is_none());

    // rspamd stopped: no answer, and the message is still judged, without it.
    server.stop().await.unwrap();
    let (facts, j) = run(&g, &rules, &spam).await;
    assert_eq!(facts.rspamd, None);
    assert!(hit(&j, "rspamd").is_none());
    assert!(j.verdict.accepted);
}

#[tokio::test]
async fn nothing_listening_or_a_silent_server_is_no_answer() {
    maildrop_testkit::init_tracing();
    let rules = rule_set("");
    let spam = message(GTUBE);

    let nobody = gatherer(
        &format!("http://127.0.0.1:{}", free_port()),
        Duration::from_secs(5),
    );
    let (facts, j) = run(&nobody, &rules, &spam).await;
    assert_eq!(facts.rspamd, None);
    assert!(hit(&j, "rspamd").is_none());

    // Accepts connections, reads, never answers: the timeout ends the wait.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            open.push(conn);
        }
    });
    let g = gatherer(&format!("http://{addr}"), Duration::from_millis(300));
    let (facts, j) = tokio::time::timeout(Duration::from_secs(30), run(&g, &rules, &spam))
        .await
        .expect("the check gives up at its timeout");
    assert_eq!(facts.rspamd, None);
    assert!(hit(&j, "rspamd").is_none());
    held.abort();

    // Something that is not rspamd: an HTTP answer that is not a check result.
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = other.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut conn, _)) = other.accept().await {
            let mut buf = vec![0; 65536];
            let _ = conn.read(&mut buf).await;
            let _ = conn
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot json!",
                )
                .await;
        }
    });
    let g = gatherer(&format!("http://{addr}"), Duration::from_secs(5));
    let (facts, _) = run(&g, &rules, &spam).await;
    assert_eq!(facts.rspamd, None);
    server.abort();
}
