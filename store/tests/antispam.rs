//! The filter's Redis state against a real `redis-server`: run-time blocklists (matching, expiry,
//! listing), flood counts (idempotent on the message id, bans, windows) and the feedback block
//! that never shortens a longer one.

use std::time::Duration;

use maildrop_store::PolicyStore;
use maildrop_store::blocklist::{BlocklistStore, Entry, List, Listed, Matches, Query};
use maildrop_store::flood::{Count, Dimension, FloodStore, Subject};
use maildrop_store::keys;
use maildrop_testkit::RedisServer;
use redis::AsyncCommands;

async fn conn(server: &RedisServer) -> anyhow::Result<maildrop_store::Redis> {
    Ok(maildrop_store::Redis::open(&server.url()).await?)
}

fn entry(list: List, v: &str) -> Entry {
    Entry::parse(list, v).unwrap()
}

const NOW: u64 = 1_700_000_000_000;

#[tokio::test]
async fn each_list_matches_as_documented() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let store = BlocklistStore::new(conn(&server).await?);
    store
        .add(&entry(List::Sender, "Spam@Example.com"), None, NOW)
        .await?;
    store
        .add(&entry(List::Domain, "bad.example"), None, NOW)
        .await?;
    store
        .add(&entry(List::Ip, "203.0.113.0/24"), None, NOW)
        .await?;
    store
        .add(&entry(List::Subject, "Cheap   Pills"), None, NOW)
        .await?;

    let all = store
        .lookup(
            &Query {
                sender: "SPAM@example.com",
                ip: "::ffff:203.0.113.7".parse()?,
                subject: "Re: CHEAP pills!!",
            },
            NOW,
        )
        .await?;
    assert_eq!(
        all,
        Matches {
            sender: Some("spam@example.com".into()),
            domain: None,
            ip: Some("203.0.113.0/24".into()),
            subject: Some("cheap pills".into()),
        }
    );

    let sub = store
        .lookup(
            &Query {
                sender: "x@mx.bad.example",
                ip: "198.51.100.1".parse()?,
                subject: "hello",
            },
            NOW,
        )
        .await?;
    assert_eq!(
        sub,
        Matches {
            domain: Some("bad.example".into()),
            ..Default::default()
        }
    );

    let clean = store
        .lookup(
            &Query {
                sender: "",
                ip: "2001:db8::1".parse()?,
                subject: "",
            },
            NOW,
        )
        .await?;
    assert_eq!(clean, Matches::default());
    let lookalike = store
        .lookup(
            &Query {
                sender: "x@notbad.example",
                ip: "203.0.114.1".parse()?,
                subject: "pills, cheap",
            },
            NOW,
        )
        .await?;
    assert_eq!(lookalike, Matches::default());
    Ok(())
}

#[tokio::test]
async fn entries_expire_list_in_order_and_can_be_removed() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let store = BlocklistStore::new(conn(&server).await?);
    let hour = Duration::from_secs(3600);
    store
        .add(&entry(List::Ip, "192.0.2.9"), Some(hour), NOW)
        .await?;
    store
        .add(&entry(List::Ip, "192.0.2.0/28"), None, NOW)
        .await?;
    assert_eq!(
        store.list(List::Ip, NOW).await?,
        [
            Listed {
                value: "192.0.2.0/28".into(),
                expires_ms: None
            },
            Listed {
                value: "192.0.2.9/32".into(),
                expires_ms: Some(NOW + 3_600_000)
            },
        ]
    );
    let q = Query {
        sender: "a@b.example",
        ip: "192.0.2.9".parse()?,
        subject: "",
    };
    // The most specific network that holds the client is named.
    assert_eq!(
        store.lookup(&q, NOW).await?.ip.as_deref(),
        Some("192.0.2.9/32")
    );
    let later = NOW + 3_600_001;
    assert_eq!(store.list(List::Ip, later).await?.len(), 1);
    assert_eq!(
        store.lookup(&q, later).await?.ip.as_deref(),
        Some("192.0.2.0/28")
    );

    assert!(store.remove(&entry(List::Ip, "192.0.2.0/28")).await?);
    assert!(!store.remove(&entry(List::Ip, "192.0.2.0/28")).await?);
    assert_eq!(store.lookup(&q, later).await?.ip, None);
    // A write prunes what expired.
    store
        .add(&entry(List::Ip, "10.0.0.0/8"), None, later)
        .await?;
    let mut redis = server.conn().await?;
    let n: u64 = redis.zcard(keys::blocklist("ip")).await?;
    assert_eq!(n, 1);
    Ok(())
}

#[tokio::test]
async fn flood_counts_are_idempotent_and_a_count_past_the_limit_starts_a_ban() -> anyhow::Result<()>
{
    let server = RedisServer::start().await?;
    let flood = FloodStore::new(conn(&server).await?);
    let ip = Dimension::Ip("203.0.113.7".parse()?);
    let window = Duration::from_secs(120);
    let ban = Duration::from_secs(300);
    let mut last = Count {
        count: 0,
        banned_since_ms: None,
    };
    for i in 0..3u64 {
        last = flood
            .count(&ip, &format!("m{i}"), NOW + i, window, 3, ban)
            .await?;
    }
    assert_eq!(
        last,
        Count {
            count: 3,
            banned_since_ms: None
        }
    );
    // A redelivery counts nothing.
    let again = flood.count(&ip, "m2", NOW + 2, window, 3, ban).await?;
    assert_eq!(again, last);
    // The fourth goes past the limit and starts the ban at its receive time.
    let fourth = flood.count(&ip, "m3", NOW + 3, window, 3, ban).await?;
    assert_eq!(
        fourth,
        Count {
            count: 4,
            banned_since_ms: Some(NOW + 3)
        }
    );
    let mut redis = server.conn().await?;
    let (_, ban_key) = keys::flood(&ip);
    let ttl: i64 = redis.pttl(&ban_key).await?;
    assert!(ttl > 290_000 && ttl <= 300_000, "{ttl}");

    // Out of the window, the count starts over, but the ban still stands.
    let later = NOW + 200_000;
    let after = flood.count(&ip, "m4", later, window, 3, ban).await?;
    assert_eq!(
        after,
        Count {
            count: 1,
            banned_since_ms: Some(NOW + 3)
        }
    );
    assert!(flood.unban(&ip).await?);
    let lifted = flood.count(&ip, "m5", later + 1, window, 3, ban).await?;
    assert_eq!(lifted.banned_since_ms, None);
    Ok(())
}

#[tokio::test]
async fn a_late_earlier_message_is_counted_by_its_own_receive_time() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let flood = FloodStore::new(conn(&server).await?);
    let subject = Dimension::Subject(Subject::new("Win BIG").unwrap());
    let w = Duration::from_secs(60);
    let ban = Duration::from_secs(3600);
    flood.count(&subject, "b", NOW + 20, w, 1, ban).await?;
    let c = flood.count(&subject, "c", NOW + 30, w, 1, ban).await?;
    assert_eq!(c.banned_since_ms, Some(NOW + 30));
    // "a" was received first and is handled last: one message up to its time, under the limit;
    // the ban began after it.
    let a = flood.count(&subject, "a", NOW + 10, w, 1, ban).await?;
    assert_eq!(a.count, 1);
    assert_eq!(a.banned_since_ms, Some(NOW + 30));
    // Same subject, other spelling: the same count.
    let other = Dimension::Subject(Subject::new("  win   big ").unwrap());
    let d = flood.count(&other, "d", NOW + 40, w, 1, ban).await?;
    assert_eq!(d.count, 4);
    Ok(())
}

#[tokio::test]
async fn feedback_blocks_extend_but_never_shorten() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let policy = PolicyStore::new(conn(&server).await?);
    let ip = "203.0.113.7".parse()?;
    let mut redis = server.conn().await?;
    let key = keys::blocked_ip(ip);

    assert!(
        policy
            .extend_block(ip, "flood: too many", Duration::from_secs(300))
            .await?
    );
    assert_eq!(
        policy.is_blocked(ip).await?.as_deref(),
        Some("flood: too many")
    );
    assert!(
        !policy
            .extend_block(ip, "shorter", Duration::from_secs(60))
            .await?
    );
    assert!(
        policy
            .extend_block(ip, "longer", Duration::from_secs(900))
            .await?
    );
    let ttl: i64 = redis.pttl(&key).await?;
    assert!(ttl > 890_000, "{ttl}");

    // An operator's block without expiry stays as it is.
    policy.block_ip(ip, "operator", None).await?;
    assert!(
        !policy
            .extend_block(ip, "flood", Duration::from_secs(300))
            .await?
    );
    let ttl: i64 = redis.pttl(&key).await?;
    assert_eq!(ttl, -1);
    assert_eq!(policy.is_blocked(ip).await?.as_deref(), Some("operator"));
    Ok(())
}
