//! End-to-end: SMTP in, API and WebSocket out, across all five stages, with real servers.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{Pipeline, Stage};
use maildrop_testkit::{smtp, ws};

const T: Duration = Duration::from_secs(30);

#[tokio::test]
async fn smtp_to_api_to_websocket() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;
    let mut socket = ws::connect(&p.ws_url("/api/mailboxes/alice/ws")).await?;

    let reply = p.send("Alice", "Your sign-up link").await?;
    assert!(reply.contains("queued as"), "{reply}");

    let event = ws::next_event(&mut socket, T).await?;
    assert_eq!(event["type"], "stored");
    assert_eq!(event["mailbox"], "alice");
    assert_eq!(event["summary"]["subject"], "Your sign-up link");
    let id = event["id"].as_str().unwrap().to_owned();

    let list = p.inbox("alice").await?;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["from"], "sender@example.org");

    let (status, msg) = p
        .get_json(&format!("/api/mailboxes/alice/messages/{id}"))
        .await?;
    assert_eq!(status, 200);
    assert!(
        msg["text"]
            .as_str()
            .unwrap()
            .contains("Hello from the test.")
    );
    assert_eq!(msg["envelope"]["mail_from"], "sender@example.org");
    assert_eq!(msg["envelope"]["rcpt_to"][0], "Alice@maildrop.test");
    assert_eq!(msg["verdict"]["score"], 0.0);

    let raw = p
        .http_client
        .get(p.url(&format!("/api/mailboxes/alice/messages/{id}/raw")))
        .send()
        .await?;
    assert_eq!(raw.headers()["content-type"], "message/rfc822");
    assert!(raw.text().await?.contains("Subject: Your sign-up link"));

    // Deleting pushes `deleted` and empties the list.
    let del = p
        .http_client
        .delete(p.url(&format!("/api/mailboxes/alice/messages/{id}")))
        .send()
        .await?;
    assert_eq!(del.status(), 204);
    let event = ws::next_event(&mut socket, T).await?;
    assert_eq!(event["type"], "deleted");
    assert_eq!(event["id"], id.as_str());
    assert!(p.inbox("alice").await?.is_empty());

    let stats = p
        .wait_for_stats("stats to count the message", |s| {
            s["received"] == 1 && s["accepted"] == 1 && s["stored"] == 1 && s["deleted"] == 1
        })
        .await?;
    assert_eq!(stats["rejected"], 0);
    Ok(())
}

/// Sends `n` messages to one mailbox, 10 connections at a time; every one must get a 250.
async fn send_many(p: &Pipeline, mailbox: &str, n: usize) -> anyhow::Result<()> {
    use futures::StreamExt;
    let results: Vec<_> = futures::stream::iter(0..n)
        .map(|i| async move { p.send(mailbox, &format!("message {i}")).await })
        .buffer_unordered(10)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(())
}

async fn restart_without_loss(stopped: Stage) -> anyhow::Result<()> {
    let flags = HashMap::from([(
        Stage::StoreWriter,
        vec!["--mailbox-max-messages".to_owned(), "1000".to_owned()],
    )]);
    let stages: Vec<Stage> = common::ALL.into_iter().filter(|s| *s != stopped).collect();
    let mut p = Pipeline::start_with(flags, &stages).await?;
    send_many(&p, "load", 200).await?;
    assert!(
        p.inbox("load").await?.is_empty(),
        "nothing can be stored while {stopped:?} is down"
    );

    p.start_stage(stopped).await?;
    let list = p
        .wait_for_inbox("load", 200, Duration::from_secs(60))
        .await?;
    let ids: HashSet<&str> = list.iter().map(|m| m["id"].as_str().unwrap()).collect();
    let subjects: HashSet<&str> = list
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    assert_eq!(list.len(), 200, "no duplicates");
    assert_eq!(ids.len(), 200);
    assert_eq!(subjects.len(), 200, "every message arrived once");
    p.wait_for_stats("stats to count 200 stored", |s| {
        s["stored"] == 200 && s["received"] == 200
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn store_writer_restart_loses_nothing() -> anyhow::Result<()> {
    restart_without_loss(Stage::StoreWriter).await
}

#[tokio::test]
async fn filter_restart_loses_nothing() -> anyhow::Result<()> {
    restart_without_loss(Stage::Filter).await
}

#[tokio::test]
async fn a_stage_stopped_mid_stream_resumes_where_it_was() -> anyhow::Result<()> {
    let flags = HashMap::from([(
        Stage::StoreWriter,
        vec!["--mailbox-max-messages".to_owned(), "1000".to_owned()],
    )]);
    let mut p = Pipeline::start_with(flags, &common::ALL).await?;
    send_many(&p, "midway", 50).await?;
    p.stop_stage(Stage::StoreWriter).await?;
    send_many(&p, "midway", 50).await?;
    p.start_stage(Stage::StoreWriter).await?;
    let list = p
        .wait_for_inbox("midway", 100, Duration::from_secs(60))
        .await?;
    let ids: HashSet<&str> = list.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!((list.len(), ids.len()), (100, 100));
    Ok(())
}

#[tokio::test]
async fn bus_down_means_451_never_250() -> anyhow::Result<()> {
    let mut p = Pipeline::start().await?;
    p.send("before", "works").await?;
    p.nats.stop().await;

    for i in 0..3 {
        let err = p
            .send("during", &format!("outage {i}"))
            .await
            .expect_err("no 250 while NATS is down");
        let code = err.status().map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("451"), "{err}");
    }

    p.nats.resume().await?;
    // Clients retry after a 451; once the bus is back, the stages carry on without help.
    maildrop_testkit::wait_until(T, "ingest to accept mail again", || async {
        p.send("after", "recovered").await.ok()
    })
    .await?;
    let list = p.wait_for_inbox("after", 1, T).await?;
    assert_eq!(list[0]["subject"], "recovered");
    assert!(
        p.inbox("during").await?.is_empty(),
        "no message of the outage was stored"
    );
    Ok(())
}

#[tokio::test]
async fn other_domains_are_refused_with_550() -> anyhow::Result<()> {
    let p = Pipeline::start_with(HashMap::new(), &[Stage::Ingest]).await?;
    let err = smtp::send_mail(p.smtp, "a@example.org", "victim@gmail.com", "relay?", "x")
        .await
        .expect_err("no open relay");
    assert_eq!(
        err.status().map(|c| c.to_string()).as_deref(),
        Some("550"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn malformed_messages_are_stored_as_they_are_and_the_stages_go_on() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;
    // No header block, invalid UTF-8: still somebody's mail.
    let garbage = b"\xff\xfe this is not a message \xc3\x28\r\nsecond line\r\n".to_vec();
    smtp::send_raw(p.smtp, "x@example.org", &[&p.address("odd")], &garbage).await?;
    p.send("odd", "a normal one after").await?;
    let list = p.wait_for_inbox("odd", 2, T).await?;
    let odd = list
        .iter()
        .find(|m| m["subject"] == "")
        .expect("the garbage message is listed");
    let (status, doc) = p
        .get_json(&format!(
            "/api/mailboxes/odd/messages/{}",
            odd["id"].as_str().unwrap()
        ))
        .await?;
    assert_eq!(status, 200);
    assert!(
        doc["text"]
            .as_str()
            .unwrap_or_default()
            .contains("this is not a message"),
        "{doc}"
    );
    let raw = p.raw("odd", odd["id"].as_str().unwrap()).await?;
    // lettre always ends DATA with `\r\n.\r\n`, so a body that already ends in CRLF gains an
    // empty last line on the wire; the server keeps exactly what arrived.
    let mut on_the_wire = garbage.clone();
    on_the_wire.extend_from_slice(b"\r\n");
    assert_eq!(
        &raw[..],
        &on_the_wire[..],
        "the raw bytes are kept unchanged"
    );
    Ok(())
}

#[tokio::test]
async fn a_blocked_sender_is_rejected_with_its_reason() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "[blocked_sender]\nsenders = [\"@spam.example\"]\n")?;
    let flags = HashMap::from([(
        Stage::Filter,
        vec!["--rules".to_owned(), rules.display().to_string()],
    )]);
    let p = Pipeline::start_with(flags, &common::ALL).await?;
    smtp::send_mail(
        p.smtp,
        "boss@spam.example",
        &p.address("bob"),
        "buy now",
        "x",
    )
    .await?;
    p.send("bob", "ham").await?;
    let stats = p
        .wait_for_stats("one rejected, one accepted", |s| {
            s["rejected"] == 1 && s["accepted"] == 1
        })
        .await?;
    assert_eq!(stats["rejected_by_rule"]["blocked_sender"], 1);
    let list = p.wait_for_inbox("bob", 1, T).await?;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["subject"], "ham");
    Ok(())
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_and_the_stream_moves_on() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;
    let client = async_nats::connect(p.nats.url()).await?;
    let js = async_nats::jetstream::new(client);
    // No envelope headers: the filter can never judge this.
    js.publish(
        maildrop_contract::subject::RECEIVED,
        "not a maildrop message".into(),
    )
    .await?
    .await?;
    p.send("after-poison", "still flowing").await?;
    p.wait_for_inbox("after-poison", 1, T).await?;

    let dead = js
        .get_stream(maildrop_contract::subject::DEADLETTER_STREAM)
        .await?;
    let info = maildrop_testkit::wait_until(T, "a dead letter", || {
        let js = js.clone();
        async move {
            let mut stream = js
                .get_stream(maildrop_contract::subject::DEADLETTER_STREAM)
                .await
                .ok()?;
            let info = stream.info().await.ok()?;
            (info.state.messages >= 1).then(|| info.state.clone())
        }
    })
    .await?;
    let msg = dead.direct_get(info.first_sequence).await?;
    assert_eq!(msg.subject.as_str(), "maildrop.deadletter.filter");
    assert_eq!(&msg.payload[..], b"not a maildrop message");
    let reason = msg
        .headers
        .get(maildrop_contract::envelope::header::DEADLETTER_REASON)
        .unwrap();
    assert!(reason.as_str().contains("Poison"), "{reason:?}");
    Ok(())
}
