//! End-to-end rspamd backend: mail sent by SMTP to the ingest is judged by the filter with a real
//! rspamd's opinion (testkit's `RspamdServer`, its DNS on the test's own server, never the
//! internet): a GTUBE message is rejected with the `rspamd` hit in its verdict; with an rspamd URL
//! where nothing listens, every verdict still arrives, without the hit.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Pipeline, Stage};
use futures::StreamExt;
use maildrop_contract::{Verdict, subject};
use maildrop_testkit::dns::DnsServer;
use maildrop_testkit::rspamd::RspamdServer;
use maildrop_testkit::{free_port, smtp};

const T: Duration = Duration::from_secs(30);
const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// Starts the ingest and the filter, the filter asking rspamd at `url`; sends a GTUBE message
/// and a plain one by SMTP; returns their verdicts, by envelope sender.
async fn gtube_and_ham(url: &str, timeout: &str) -> anyhow::Result<HashMap<String, Verdict>> {
    let flags = HashMap::from([(
        Stage::Filter,
        vec![
            "--rspamd-url".to_owned(),
            url.to_owned(),
            "--rspamd-timeout".to_owned(),
            timeout.to_owned(),
        ],
    )]);
    let p = Pipeline::start_with(flags, &[Stage::Ingest, Stage::Filter]).await?;
    let nats = async_nats::connect(p.nats.url()).await?;
    let mut verdicts = nats.subscribe(subject::VERDICTS_ALL).await?;
    smtp::send_mail(
        p.smtp,
        "spammer@example.org",
        &p.address("bob"),
        "cheap watches",
        &format!("Buy now.\r\n{GTUBE}"),
    )
    .await?;
    smtp::send_mail(
        p.smtp,
        "alice@example.org",
        &p.address("bob"),
        "lunch",
        "Shall we have lunch tomorrow at noon?",
    )
    .await?;
    let mut by_sender = HashMap::new();
    while by_sender.len() < 2 {
        let msg = tokio::time::timeout(T, verdicts.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("verdict subscription ended"))?;
        let v: Verdict = serde_json::from_slice(&msg.payload)?;
        by_sender.insert(v.mail_from.clone(), v);
    }
    Ok(by_sender)
}

#[tokio::test]
async fn a_gtube_message_sent_by_smtp_is_rejected_with_rspamds_hit() -> anyhow::Result<()> {
    let dns = DnsServer::start().await?;
    let rspamd = RspamdServer::start(dns.addr()).await?;
    let verdicts = gtube_and_ham(&rspamd.url(), "20s").await?;

    let spam = &verdicts["spammer@example.org"];
    assert!(!spam.accepted, "{:?}", spam.hits);
    let hit = spam
        .hits
        .iter()
        .find(|h| h.rule == "rspamd")
        .expect("the rspamd hit is recorded");
    assert_eq!(hit.score, 5.0);
    assert!(
        hit.reason.starts_with("rspamd says reject"),
        "{}",
        hit.reason
    );
    assert!(hit.reason.contains("GTUBE"), "{}", hit.reason);

    let ham = &verdicts["alice@example.org"];
    assert!(ham.accepted, "{:?}", ham.hits);
    assert!(
        ham.hits.iter().all(|h| h.rule != "rspamd"),
        "{:?}",
        ham.hits
    );
    Ok(())
}

#[tokio::test]
async fn without_an_rspamd_answer_every_verdict_still_arrives() -> anyhow::Result<()> {
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let verdicts = gtube_and_ham(&nobody, "1s").await?;
    for v in verdicts.values() {
        assert!(v.accepted, "{:?}", v.hits);
        assert!(v.hits.iter().all(|h| h.rule != "rspamd"), "{:?}", v.hits);
    }
    Ok(())
}
