//! Refused attempts become events on `maildrop.rejected.ingest`: a relay probe (`550 5.7.1`), an
//! oversize message (`552 5.3.4`) and a blocked client (`554 5.7.1` at connect), each with the
//! client, the envelope it had sent and the reply it got.

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use common::{Ingest, address};
use futures::StreamExt;
use maildrop_contract::{IngestRejection, RejectReason, subject};
use maildrop_testkit::wait_until;

/// Every event in REJECTED, in order.
async fn rejections(js: &jetstream::Context) -> anyhow::Result<Vec<IngestRejection>> {
    let stream = js.get_stream(subject::REJECTED_STREAM).await?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig::default())
        .await?;
    let pending = consumer.cached_info().num_pending as usize;
    let mut all = Vec::new();
    if pending == 0 {
        return Ok(all);
    }
    let mut messages = consumer.messages().await?.take(pending);
    while let Some(m) = messages.next().await {
        all.push(serde_json::from_slice(&m?.payload)?);
    }
    Ok(all)
}

#[tokio::test]
async fn relay_oversize_and_blocked_attempts_are_published() -> anyhow::Result<()> {
    let ingest = Ingest::start_with(&["--max-message-size", "10000"]).await?;
    let js = jetstream::new(async_nats::connect(ingest.nats.url()).await?);

    let mut smtp = ingest.greeted().await?;
    smtp.expect("MAIL FROM:<spam@sender.example>", 250).await?;
    smtp.expect("RCPT TO:<victim@elsewhere.example>", 550)
        .await?;
    smtp.expect("RSET", 250).await?;
    let big = vec![b'x'; 20_000];
    let mut body = b"Subject: big\r\n\r\n".to_vec();
    for chunk in big.chunks(70) {
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    let reply = smtp
        .send_message("big@sender.example", &[&address("bob")], &body)
        .await?;
    assert_eq!(reply.code, 552, "{reply}");
    smtp.expect("QUIT", 221).await?;

    let redis = maildrop_store::Redis::open(&ingest.redis.url()).await?;
    maildrop_store::PolicyStore::new(redis)
        .block_ip("127.0.0.1".parse()?, "test block", None)
        .await?;
    let (_, greeting) = common::Smtp::connect(ingest.addr).await?;
    assert_eq!(greeting.code, 554, "{greeting}");

    let events = wait_until(Duration::from_secs(10), "three rejection events", || {
        let js = js.clone();
        async move { rejections(&js).await.ok().filter(|e| e.len() == 3) }
    })
    .await?;
    let relay = &events[0];
    assert_eq!(relay.reason, RejectReason::RelayDenied);
    assert_eq!(
        (relay.code, relay.enhanced.as_deref()),
        (550, Some("5.7.1"))
    );
    assert_eq!(relay.client_ip, "127.0.0.1");
    assert_eq!(relay.helo.as_deref(), Some("client.example.org"));
    assert_eq!(relay.mail_from.as_deref(), Some("spam@sender.example"));
    assert_eq!(relay.rcpt, ["victim@elsewhere.example"]);

    let big = &events[1];
    assert_eq!(big.reason, RejectReason::TooLarge);
    assert_eq!((big.code, big.enhanced.as_deref()), (552, Some("5.3.4")));
    assert_eq!(big.mail_from.as_deref(), Some("big@sender.example"));
    assert_eq!(big.rcpt, [address("bob")]);

    let blocked = &events[2];
    assert_eq!(blocked.reason, RejectReason::BlockedIp);
    assert_eq!(blocked.code, 554);
    assert_eq!(blocked.helo, None);
    assert!(relay.id != big.id && big.id != blocked.id);
    Ok(())
}
