//! Storage bounds, end to end with real servers: rebuilding Redis from the streams, the global byte
//! cap, the retention sweeper, and the attachment policy.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use clap::Parser;
use common::{Pipeline, Stage};
use maildrop_testkit::{smtp, ws};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(30);

/// A store-writer config pointing at the test's servers, as the `rebuild` subcommand would get.
fn store_writer_config(p: &Pipeline) -> anyhow::Result<maildrop_store_writer::Config> {
    Ok(maildrop_store_writer::Config::try_parse_from([
        "maildrop-store-writer".to_owned(),
        "--nats-url".to_owned(),
        p.nats.url(),
        "--redis-url".to_owned(),
        p.redis.url(),
    ])?)
}

fn store_writer_flags(flags: &[&str]) -> HashMap<Stage, Vec<String>> {
    HashMap::from([(
        Stage::StoreWriter,
        flags.iter().map(|f| (*f).to_owned()).collect(),
    )])
}

/// A message with a text body and one attachment per `(name, bytes)`, base64 in 76-column lines.
fn with_attachments(subject: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut raw = format!(
        "From: sender@example.org\r\nTo: someone@{}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"sep\"\r\n\r\n--sep\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n",
        common::DOMAIN
    );
    for (name, bytes) in files {
        raw.push_str(&format!(
            "--sep\r\nContent-Type: application/pdf; name=\"{name}\"\r\n\
Content-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        ));
        for line in base64(bytes).as_bytes().chunks(76) {
            raw.push_str(std::str::from_utf8(line).unwrap());
            raw.push_str("\r\n");
        }
    }
    raw.push_str("--sep--\r\n");
    raw.into_bytes()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Everything the API shows of some mailboxes: each listing, and each message's document and
/// raw bytes.
type Snapshot = BTreeMap<String, (Vec<Value>, Vec<(Value, Vec<u8>)>)>;

async fn snapshot(p: &Pipeline, mailboxes: &[&str]) -> anyhow::Result<Snapshot> {
    let mut all = BTreeMap::new();
    for mailbox in mailboxes {
        let listing = p.inbox(mailbox).await?;
        let mut messages = Vec::new();
        for summary in &listing {
            let id = summary["id"].as_str().unwrap_or_default();
            let path = format!("/api/mailboxes/{mailbox}/messages/{id}");
            let (status, doc) = p.get_json(&path).await?;
            anyhow::ensure!(status == 200, "{path}: {status}");
            let raw = p.raw(mailbox, id).await?;
            messages.push((doc, raw));
        }
        all.insert((*mailbox).to_owned(), (listing, messages));
    }
    Ok(all)
}

/// The last sequence of the MAILBOX stream: it does not move unless an event is published.
async fn mailbox_stream_end(p: &Pipeline) -> anyhow::Result<u64> {
    let js = async_nats::jetstream::new(async_nats::connect(p.nats.url()).await?);
    let mut stream = js
        .get_stream(maildrop_contract::subject::MAILBOX_STREAM)
        .await?;
    Ok(stream.info().await?.state.last_sequence)
}

async fn flush_redis(p: &Pipeline) -> anyhow::Result<()> {
    let mut conn = p.redis.conn().await?;
    let () = redis::cmd("FLUSHALL").query_async(&mut conn).await?;
    Ok(())
}

#[tokio::test]
async fn rebuild_restores_every_mailbox_and_keeps_deletes_deleted() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;
    const BOXES: [&str; 3] = ["rb-one", "rb-two", "rb-three"];
    p.send("rb-one", "first").await?;
    p.send("rb-one", "second").await?;
    p.send("rb-two", "third").await?;
    let both = with_attachments("to two mailboxes", &[("a.pdf", b"%PDF-1.4 tiny")]);
    smtp::send_raw(
        p.smtp,
        "sender@example.org",
        &[&p.address("rb-two"), &p.address("rb-three")],
        &both,
    )
    .await?;
    let one = p.wait_for_inbox("rb-one", 2, T).await?;
    p.wait_for_inbox("rb-two", 2, T).await?;
    p.wait_for_inbox("rb-three", 1, T).await?;

    // A reader deletes one message; it must stay deleted.
    let first = one
        .iter()
        .find(|m| m["subject"] == "first")
        .expect("first is listed");
    let first_id = first["id"].as_str().unwrap().to_owned();
    let del = p
        .http_client
        .delete(p.url(&format!("/api/mailboxes/rb-one/messages/{first_id}")))
        .send()
        .await?;
    assert_eq!(del.status(), 204);

    let before = snapshot(&p, &BOXES).await?;
    assert_eq!(before["rb-one"].0.len(), 1);
    // A message is listed a moment before its `stored` event is published: wait for all six.
    let events_before =
        maildrop_testkit::wait_until(T, "5 stored and 1 deleted events", || async {
            mailbox_stream_end(&p).await.ok().filter(|end| *end == 6)
        })
        .await?;

    flush_redis(&p).await?;
    for mailbox in BOXES {
        assert!(p.inbox(mailbox).await?.is_empty(), "{mailbox} is gone");
    }

    let report =
        maildrop_store_writer::rebuild(store_writer_config(&p)?, CancellationToken::new()).await?;
    assert_eq!(report.verdicts, 4, "{report}");
    assert_eq!(report.restored, 5, "{report}");
    assert_eq!(report.deletes_applied, 1, "{report}");
    assert_eq!(
        (report.missing_raw, report.skipped_expired, report.invalid),
        (0, 0, 0),
        "{report}"
    );
    let after = snapshot(&p, &BOXES).await?;
    assert_eq!(after, before, "every mailbox as it was");
    assert!(
        !after["rb-one"]
            .0
            .iter()
            .any(|m| m["id"] == first_id.as_str()),
        "the deleted message did not come back"
    );
    for (mailbox, (listing, _)) in &after {
        let ids: HashSet<_> = listing.iter().map(|m| m["id"].as_str()).collect();
        assert_eq!(ids.len(), listing.len(), "no duplicates in {mailbox}");
    }
    assert_eq!(
        mailbox_stream_end(&p).await?,
        events_before,
        "a rebuild announces nothing"
    );

    // Again, on a full Redis and with the live writer running: nothing changes. Meanwhile the
    // raw message sent to two mailboxes has left RECEIVED (as past its retention): it is counted
    // and skipped, and what Redis has of it stays.
    let js = async_nats::jetstream::new(async_nats::connect(p.nats.url()).await?);
    let received = js
        .get_stream(maildrop_contract::subject::RECEIVED_STREAM)
        .await?;
    let fourth = received.direct_get(4).await?;
    assert!(String::from_utf8_lossy(&fourth.payload).contains("Subject: to two mailboxes"));
    assert!(received.delete_message(4).await?);
    let again =
        maildrop_store_writer::rebuild(store_writer_config(&p)?, CancellationToken::new()).await?;
    assert_eq!((again.restored, again.unchanged), (0, 3), "{again}");
    assert_eq!(again.missing_raw, 1, "{again}");
    assert_eq!(again.deletes_applied, 0, "{again}");
    assert_eq!(snapshot(&p, &BOXES).await?, before);
    assert_eq!(mailbox_stream_end(&p).await?, events_before);
    Ok(())
}

/// Sends a message of about `size` bytes of text to `mailbox` and waits until it is listed.
async fn send_sized(p: &Pipeline, mailbox: &str, size: usize) -> anyhow::Result<()> {
    let body = "0123456789abcdef\r\n".repeat(size / 18);
    smtp::send_mail(
        p.smtp,
        "sender@example.org",
        &p.address(mailbox),
        mailbox,
        &body,
    )
    .await?;
    p.wait_for_inbox(mailbox, 1, T).await?;
    Ok(())
}

#[tokio::test]
async fn the_byte_cap_empties_the_least_recently_active_mailbox() -> anyhow::Result<()> {
    // Each message costs about 7.5 KB (the raw message, and its text twice in the document, as
    // text and as HTML): two fit, three do not.
    let flags = store_writer_flags(&["--store-max-bytes", "20000"]);
    let p = Pipeline::start_with(flags, &common::ALL).await?;
    send_sized(&p, "cap-old", 2000).await?;
    let mut old = ws::connect(&p.ws_url("/api/mailboxes/cap-old/ws")).await?;
    send_sized(&p, "cap-new-a", 2000).await?;
    send_sized(&p, "cap-new-b", 2000).await?;

    let event = ws::next_event(&mut old, T).await?;
    assert_eq!(event["type"], "cleared", "{event}");
    assert_eq!(event["mailbox"], "cap-old");
    assert_eq!(event["reason"], "store_full");
    assert!(p.inbox("cap-old").await?.is_empty());
    assert_eq!(p.inbox("cap-new-a").await?.len(), 1, "newer mailboxes stay");
    assert_eq!(p.inbox("cap-new-b").await?.len(), 1);
    p.wait_for_stats("the eviction to be counted", |s| s["cleared"] == 1)
        .await?;
    Ok(())
}

#[tokio::test]
async fn the_sweeper_announces_mailboxes_past_their_retention() -> anyhow::Result<()> {
    // Long enough for the message to be stored before it is past its retention on a busy machine.
    let flags = store_writer_flags(&["--mailbox-retention", "4s", "--sweep-every", "1s"]);
    let p = Pipeline::start_with(flags, &common::ALL).await?;
    let mut socket = ws::connect(&p.ws_url("/api/mailboxes/fleeting/ws")).await?;
    p.send("fleeting", "here for a moment").await?;
    let stored = ws::next_event(&mut socket, T).await?;
    assert_eq!(stored["type"], "stored", "{stored}");

    let expired = ws::next_event(&mut socket, T).await?;
    assert_eq!(expired["type"], "expired", "{expired}");
    assert_eq!(expired["mailbox"], "fleeting");
    assert!(p.inbox("fleeting").await?.is_empty());
    p.wait_for_stats("the expiry to be counted", |s| s["expired"] == 1)
        .await?;
    Ok(())
}

async fn only_message(p: &Pipeline, mailbox: &str) -> anyhow::Result<(Value, String)> {
    let list = p.wait_for_inbox(mailbox, 1, T).await?;
    let id = list[0]["id"].as_str().unwrap_or_default().to_owned();
    let path = format!("/api/mailboxes/{mailbox}/messages/{id}");
    let (status, doc) = p.get_json(&path).await?;
    anyhow::ensure!(status == 200, "{path}: {status}");
    let raw = String::from_utf8_lossy(&p.raw(mailbox, &id).await?).into_owned();
    Ok((doc, raw))
}

const SMALL: &[u8] = b"%PDF-1.4 small";

fn large() -> Vec<u8> {
    (0..=255u8).cycle().take(3000).collect()
}

#[tokio::test]
async fn attachments_are_listed_and_large_ones_stripped() -> anyhow::Result<()> {
    let flags = store_writer_flags(&["--attachment-max-size", "1000"]);
    let p = Pipeline::start_with(flags, &common::ALL).await?;
    let large = large();
    let raw = with_attachments("files", &[("small.pdf", SMALL), ("large.pdf", &large)]);
    smtp::send_raw(p.smtp, "sender@example.org", &[&p.address("files")], &raw).await?;
    let (doc, raw) = only_message(&p, "files").await?;

    let attachments = doc["attachments"].as_array().expect("attachments listed");
    assert_eq!(attachments.len(), 2, "{doc}");
    let small = &attachments[0];
    assert_eq!(small["index"], 0);
    assert_eq!(small["name"], "small.pdf");
    assert_eq!(small["content_type"], "application/pdf");
    assert_eq!(small["size"], SMALL.len());
    assert_eq!(small["stripped"], false);
    let big = &attachments[1];
    assert_eq!(big["index"], 1);
    assert_eq!(big["size"], 3000, "the size as received");
    assert_eq!(big["stripped"], true);
    assert_eq!(big["stripped_reason"], "too_large");

    assert!(raw.contains(&base64(SMALL)), "the small one is kept");
    assert!(
        !raw.contains(&base64(&large[..300])),
        "the large one is not"
    );
    assert!(raw.contains("X-Maildrop-Stripped: too_large; size=3000"));
    assert!(
        doc["text"]
            .as_str()
            .unwrap_or_default()
            .contains("See attached.")
    );
    Ok(())
}

#[tokio::test]
async fn with_strip_every_attachment_is_marked_stripped() -> anyhow::Result<()> {
    let flags = store_writer_flags(&["--attachments", "strip"]);
    let p = Pipeline::start_with(flags, &common::ALL).await?;
    let raw = with_attachments("stripped", &[("small.pdf", SMALL)]);
    smtp::send_raw(p.smtp, "sender@example.org", &[&p.address("strip")], &raw).await?;
    let (doc, raw) = only_message(&p, "strip").await?;

    let attachment = &doc["attachments"][0];
    assert_eq!(attachment["index"], 0);
    assert_eq!(attachment["name"], "small.pdf");
    assert_eq!(attachment["size"], SMALL.len());
    assert_eq!(attachment["stripped"], true, "{doc}");
    assert_eq!(attachment["stripped_reason"], "policy");
    assert!(!raw.contains(&base64(SMALL)));
    assert!(raw.contains("X-Maildrop-Stripped: policy"));
    assert!(raw.contains("Subject: stripped"), "the rest is as received");
    Ok(())
}
