//! The mailbox scripts and the usage index against a real `redis-server`: byte counts, the global
//! index, eviction and expiry tokens, versions, retention, and mailboxes stored before usage was
//! kept.

use std::time::Duration;

use maildrop_contract::{Mailbox, MessageId, MessageSummary, now_ms};
use maildrop_store::attachment::StripReason;
use maildrop_store::keys::{self, MailboxKeys};
use maildrop_store::usage::MailboxUsage;
use maildrop_store::{
    Attachment, AttachmentLookup, Expiry, Headers, Limits, MailStore, StoreOutcome, StoredEnvelope,
    StoredMessage,
};
use maildrop_testkit::RedisServer;
use redis::AsyncCommands;

async fn setup(limits: Limits) -> anyhow::Result<(RedisServer, MailStore)> {
    let server = RedisServer::start().await?;
    let conn = maildrop_store::Redis::open(&server.url()).await?;
    Ok((server, MailStore::new(conn, limits)))
}

fn limits(max_messages: usize) -> Limits {
    Limits {
        max_messages,
        retention: Duration::from_secs(3600),
    }
}

fn message(mailbox: &str, received_ms: u64) -> StoredMessage {
    let mailbox = Mailbox::parse(mailbox).unwrap();
    let id = MessageId::new();
    StoredMessage {
        summary: MessageSummary {
            id,
            mailbox,
            from: "a@example.org".into(),
            subject: "hi".into(),
            date: None,
            received_ms,
            size: 5,
        },
        envelope: StoredEnvelope {
            client_ip: "192.0.2.1".into(),
            helo: "h".into(),
            mail_from: "a@example.org".into(),
            rcpt_to: vec![],
            received_ms,
            size: 5,
        },
        headers: Headers::default(),
        text: Some("hello".into()),
        html: None,
        attachments: vec![],
        verdict: None,
    }
}

/// What the mailbox really holds, from its hashes.
async fn held(server: &RedisServer, mailbox: &str) -> anyhow::Result<u64> {
    let keys = MailboxKeys::new(&Mailbox::parse(mailbox)?);
    let mut conn = server.conn().await?;
    let ids: Vec<String> = conn.zrange(&keys.index, 0, -1).await?;
    let mut n = 0;
    for id in ids {
        for key in [&keys.sums, &keys.msgs, &keys.raw] {
            let len: u64 = redis::cmd("HSTRLEN")
                .arg(key)
                .arg(&id)
                .query_async(&mut conn)
                .await?;
            n += len;
        }
    }
    Ok(n)
}

async fn box_bytes(server: &RedisServer, mailbox: &str) -> anyhow::Result<Option<u64>> {
    let mut conn = server.conn().await?;
    Ok(conn.hget(keys::USAGE_BOX_BYTES, mailbox).await?)
}

#[tokio::test]
async fn the_index_holds_what_the_mailboxes_hold() -> anyhow::Result<()> {
    let (server, store) = setup(limits(2)).await?;
    let now = now_ms();
    let a1 = message("a", now - 3000);
    let a2 = message("a", now - 2000);
    let b1 = message("b", now - 1000);
    for (msg, raw) in [(&a1, &b"raw one"[..]), (&a2, b"raw two!"), (&b1, b"b")] {
        let report = store.store(msg, raw).await?;
        assert!(matches!(report.outcome, StoreOutcome::Stored { .. }));
    }
    let (a, b) = (held(&server, "a").await?, held(&server, "b").await?);
    assert!(a > 0 && b > 0);
    assert_eq!(box_bytes(&server, "a").await?, Some(a));
    assert_eq!(store.usage().total_bytes().await?, a + b);

    // Oldest activity first, scored by the newest message's receive time.
    let ranked = store.usage().least_recent(10).await?;
    let order: Vec<_> = ranked
        .iter()
        .map(|t| (t.mailbox.as_str(), t.last_activity_ms, t.bytes))
        .collect();
    assert_eq!(order, [("a", now - 2000, a), ("b", now - 1000, b)]);

    // A redelivery changes nothing; a third message evicts the oldest and its bytes.
    let again = store.store(&a1, b"raw one").await?;
    assert_eq!(again.outcome, StoreOutcome::Duplicate { present: true });
    assert_eq!(again.total_bytes, a + b);
    let a3 = message("a", now - 500);
    let report = store.store(&a3, b"three").await?;
    assert_eq!(
        report.outcome,
        StoreOutcome::Stored {
            evicted: vec![a1.summary.id]
        }
    );
    let a = held(&server, "a").await?;
    assert_eq!(report.total_bytes, a + b);

    // A reader's delete and clear keep the index in step; an empty mailbox leaves it.
    assert!(store.delete(&a2.summary.mailbox, &a2.summary.id).await?);
    let a = held(&server, "a").await?;
    assert_eq!(box_bytes(&server, "a").await?, Some(a));
    assert_eq!(store.clear(&b1.summary.mailbox).await?, 1);
    assert_eq!(box_bytes(&server, "b").await?, None);
    assert!(!store.usage().is_listed(&b1.summary.mailbox).await?);
    assert_eq!(store.usage().total_bytes().await?, a);
    Ok(())
}

#[tokio::test]
async fn eviction_and_expiry_unlist_once() -> anyhow::Result<()> {
    let (_server, store) = setup(limits(10)).await?;
    let now = now_ms();
    let old = message("old", now - 10_000);
    store.store(&old, b"x").await?;
    let mailbox = old.summary.mailbox.clone();

    // Still active at a cutoff before its newest message.
    assert_eq!(store.expire(&mailbox, now - 20_000).await?, Expiry::Active);
    assert!(store.usage().is_listed(&mailbox).await?);
    let idle = store.usage().idle_since(now - 5_000, 10).await?;
    assert_eq!(idle, std::slice::from_ref(&mailbox));

    let first = store.expire(&mailbox, now - 5_000).await?;
    let Expiry::Expired(removal) = first else {
        panic!("{first:?}")
    };
    assert_eq!((removal.messages, removal.unlisted), (1, true));
    assert!(store.list(&mailbox).await?.is_empty());
    // A second sweeper finds nothing to announce.
    let second = store.expire(&mailbox, now - 5_000).await?;
    assert!(
        matches!(second, Expiry::Expired(r) if !r.unlisted),
        "{second:?}"
    );
    assert_eq!(store.usage().total_bytes().await?, 0);

    let full = message("full", now);
    store.store(&full, b"y").await?;
    let r1 = store.evict(&full.summary.mailbox).await?;
    let r2 = store.evict(&full.summary.mailbox).await?;
    assert_eq!((r1.messages, r1.unlisted), (1, true));
    assert_eq!((r2.messages, r2.unlisted), (0, false));
    // Evicted is evicted: a redelivery does not bring it back.
    let again = store.store(&full, b"y").await?;
    assert_eq!(again.outcome, StoreOutcome::Duplicate { present: false });
    assert_eq!(again.total_bytes, 0);
    Ok(())
}

#[tokio::test]
async fn a_late_sync_does_not_undo_a_newer_one() -> anyhow::Result<()> {
    let (server, store) = setup(limits(10)).await?;
    let msg = message("race", now_ms());
    store.store(&msg, b"x").await?;
    let bytes = held(&server, "race").await?;
    let stale = MailboxUsage {
        bytes: 1,
        newest_ms: 1,
        ver: 1,
    };
    let synced = store
        .usage()
        .sync(&msg.summary.mailbox, stale, now_ms())
        .await?;
    assert!(!synced.applied);
    assert_eq!(synced.total_bytes, bytes);
    assert_eq!(box_bytes(&server, "race").await?, Some(bytes));
    Ok(())
}

#[tokio::test]
async fn messages_past_the_retention_are_not_stored_and_keys_expire_after_the_newest()
-> anyhow::Result<()> {
    let (server, store) = setup(limits(10)).await?;
    let now = now_ms();
    let stale = message("late", now - 3_600_000);
    let report = store.store(&stale, b"x").await?;
    assert_eq!(report.outcome, StoreOutcome::Expired);
    assert!(store.list(&stale.summary.mailbox).await?.is_empty());
    assert_eq!(report.total_bytes, 0);

    let fresh = message("late", now - 1_000);
    store.store(&fresh, b"x").await?;
    let keys = MailboxKeys::new(&fresh.summary.mailbox);
    let mut conn = server.conn().await?;
    for key in keys.all() {
        let at: i64 = redis::cmd("PEXPIRETIME")
            .arg(key)
            .query_async(&mut conn)
            .await?;
        assert_eq!(at as u64, now - 1_000 + 3_600_000, "{key}");
    }
    Ok(())
}

#[tokio::test]
async fn clearing_before_a_time_keeps_later_messages() -> anyhow::Result<()> {
    let (server, store) = setup(limits(10)).await?;
    let now = now_ms();
    let early = message("cb", now - 5_000);
    let late = message("cb", now - 1_000);
    store.store(&early, b"e").await?;
    store.store(&late, b"l").await?;
    assert_eq!(
        store
            .clear_before(&early.summary.mailbox, now - 2_000)
            .await?,
        1
    );
    let left = store.list(&early.summary.mailbox).await?;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, late.summary.id);
    assert_eq!(
        box_bytes(&server, "cb").await?,
        Some(held(&server, "cb").await?)
    );
    Ok(())
}

#[tokio::test]
async fn a_mailbox_stored_before_usage_was_kept_is_counted_on_its_next_write() -> anyhow::Result<()>
{
    let (server, store) = setup(limits(10)).await?;
    let now = now_ms();
    let first = message("legacy", now - 2_000);
    store.store(&first, b"old layout").await?;
    let keys = MailboxKeys::new(&first.summary.mailbox);
    let mut conn = server.conn().await?;
    let () = conn.del(&keys.usage).await?;
    // A legacy mailbox was written long before; within the same millisecond the two versions
    // would tie and the recount wait for the next write (see `maildrop_store::usage`).
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = message("legacy", now - 1_000);
    store.store(&second, b"new").await?;
    let bytes = held(&server, "legacy").await?;
    assert_eq!(box_bytes(&server, "legacy").await?, Some(bytes));
    assert_eq!(store.usage().total_bytes().await?, bytes);
    Ok(())
}

#[tokio::test]
async fn attachments_are_served_unless_stripped() -> anyhow::Result<()> {
    let (_server, store) = setup(limits(10)).await?;
    let raw = b"From: a@example.org\r\nSubject: f\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
--b\r\nContent-Type: text/csv; name=a.csv\r\nContent-Disposition: attachment; filename=a.csv\r\n\r\n\
x,y\r\n--b\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename=z.zip\r\n\r\n\
\r\n--b--\r\n";
    let mut msg = message("att", now_ms());
    let attachment = |index, name: &str, stripped| Attachment {
        index,
        name: Some(name.into()),
        content_type: "application/octet-stream".into(),
        size: 3,
        stripped,
        stripped_reason: stripped.then_some(StripReason::TooLarge),
    };
    msg.attachments = vec![attachment(0, "a.csv", false), attachment(1, "z.zip", true)];
    store.store(&msg, raw).await?;
    let (mb, id) = (&msg.summary.mailbox, &msg.summary.id);
    let AttachmentLookup::Found(csv) = store.attachment(mb, id, 0).await? else {
        panic!("attachment 0 is served")
    };
    assert_eq!(
        (csv.name.as_deref(), &csv.body[..]),
        (Some("a.csv"), &b"x,y"[..])
    );
    assert_eq!(
        store.attachment(mb, id, 1).await?,
        AttachmentLookup::Stripped(StripReason::TooLarge)
    );
    assert_eq!(
        store.attachment(mb, id, 2).await?,
        AttachmentLookup::NotFound
    );
    Ok(())
}
