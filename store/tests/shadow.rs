//! Pairing production and shadow verdicts on a real Redis: either order, redeliveries counted once.

use std::time::Duration;

use maildrop_store::StatsStore;
use maildrop_store::shadow::{Pairing, ShadowStats, Side};
use maildrop_testkit::RedisServer;

fn verdict(id: &str, side: Side, accepted: bool) -> Pairing {
    Pairing {
        id: id.into(),
        side,
        accepted,
        ruleset: match side {
            Side::Production => "prod".into(),
            Side::Shadow => "cand".into(),
        },
    }
}

#[tokio::test]
async fn pairs_count_once_in_either_order() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let conn = maildrop_store::Redis::open(&server.url()).await?;
    let stats = StatsStore::new(conn);
    let ttl = Duration::from_secs(60);
    assert_eq!(stats.shadow().await?, ShadowStats::default());

    let (p, s) = (Side::Production, Side::Shadow);
    // Production first, shadow first, and every combination of outcomes.
    for (id, first, second) in [
        ("a", verdict("a", p, true), verdict("a", s, true)),
        ("b", verdict("b", s, false), verdict("b", p, false)),
        ("c", verdict("c", p, true), verdict("c", s, false)),
        ("d", verdict("d", s, true), verdict("d", p, false)),
    ] {
        assert!(!stats.pair(&first, ttl).await?, "{id}: first side waits");
        assert!(
            !stats.pair(&first, ttl).await?,
            "{id}: a redelivery waits too"
        );
        assert!(stats.pair(&second, ttl).await?, "{id}: second side pairs");
        assert!(!stats.pair(&second, ttl).await?, "{id}: counted once");
        assert!(!stats.pair(&first, ttl).await?, "{id}: counted once");
    }
    // One side only: nothing counted.
    assert!(!stats.pair(&verdict("e", p, true), ttl).await?);

    assert_eq!(
        stats.shadow().await?,
        ShadowStats {
            agree_accepted: 1,
            agree_rejected: 1,
            accepted_now_rejected: 1,
            rejected_now_accepted: 1,
            ruleset: Some("cand".into()),
        }
    );
    Ok(())
}
