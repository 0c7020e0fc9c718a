//! The reporter's statistics through the whole pipeline: after a known sequence of messages and
//! refused attempts, the counters, the per-minute and per-hour series, today's top sources and the
//! active mailboxes say exactly that; and `maildrop-reporter recount` rebuilds the same numbers
//! from the streams.

mod common;

use std::collections::HashMap;
use std::io::Write as _;

use common::{Pipeline, Stage};
use maildrop_testkit::smtp;
use serde_json::{Value, json};

/// A rule set that rejects one sender domain.
fn rules() -> anyhow::Result<tempfile::NamedTempFile> {
    let mut file = tempfile::NamedTempFile::new()?;
    writeln!(file, "[blocked_sender]\nsenders = [\"@spam.example\"]")?;
    Ok(file)
}

/// The sum of `field` over a series.
fn total(series: &Value, field: &str) -> u64 {
    series
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[field].as_u64().unwrap())
        .sum()
}

/// The buckets of a series that counted anything (the window moves with the clock).
fn counted(series: &Value) -> Vec<Value> {
    series
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p.as_object()
                .unwrap()
                .iter()
                .any(|(k, v)| k != "t" && v.as_u64() != Some(0))
        })
        .cloned()
        .collect()
}

/// What must come out the same after a recount.
fn comparable(stats: &Value) -> Value {
    let mut counters = stats.clone();
    let object = counters.as_object_mut().unwrap();
    object.remove("series");
    json!({
        "counters": counters,
        "minute": counted(&stats["series"]["minute"]),
        "hour": counted(&stats["series"]["hour"]),
    })
}

const FULL: &str = "/api/stats?minutes=1440&hours=744&top=100";

#[tokio::test]
async fn series_top_sources_and_a_recount_agree_with_what_was_sent() -> anyhow::Result<()> {
    let rules = rules()?;
    let flags = HashMap::from([(
        Stage::Filter,
        vec!["--rules".to_owned(), rules.path().display().to_string()],
    )]);
    let mut p = Pipeline::start_with(flags, &common::ALL).await?;

    for (mailbox, subject) in [("bob", "one"), ("alice", "two"), ("bob", "three")] {
        p.send(mailbox, subject).await?;
    }
    for n in 0..2 {
        smtp::send_mail(
            p.smtp,
            "boss@spam.example",
            &p.address("carol"),
            &format!("buy now {n}"),
            "x",
        )
        .await?;
    }
    // A relay probe: refused at RCPT, published by the ingest as a refused attempt.
    let relay = smtp::send_mail(
        p.smtp,
        "probe@Relay.Example",
        "someone@elsewhere.example",
        "relay?",
        "x",
    )
    .await;
    assert!(relay.is_err(), "a relay attempt is refused");

    let stats = p
        .wait_for_stats("every event counted", |s| {
            s["received"] == 5
                && s["accepted"] == 3
                && s["rejected"] == 2
                && s["stored"] == 3
                && s["rejected_ingest"] == 1
        })
        .await?;
    assert_eq!(stats["rejected_by_rule"]["blocked_sender"], 2);
    assert_eq!(stats["rejected_ingest_by_reason"]["relay_denied"], 1);

    let (status, full) = p.get_json(FULL).await?;
    assert_eq!(status, 200, "{full}");
    for series in ["minute", "hour"] {
        let s = &full["series"][series];
        assert_eq!(total(s, "received"), 5, "{series}");
        assert_eq!(total(s, "accepted"), 3, "{series}");
        assert_eq!(total(s, "rejected"), 2, "{series}");
        assert_eq!(total(s, "rejected_ingest"), 1, "{series}");
        assert_eq!(total(s, "stored"), 3, "{series}");
        assert_eq!(total(s, "deleted"), 0, "{series}");
        assert_eq!(
            total(s, "bytes_received"),
            full["bytes_received"].as_u64().unwrap(),
            "{series}"
        );
    }
    assert_eq!(full["series"]["minute"].as_array().unwrap().len(), 1440);
    assert_eq!(full["series"]["hour"].as_array().unwrap().len(), 744);
    // Two rejected messages and one refused attempt, all from the test's address.
    assert_eq!(
        full["top"]["ips"],
        json!([{"name": "127.0.0.1", "count": 3}])
    );
    assert_eq!(
        full["top"]["domains"],
        json!([
            {"name": "spam.example", "count": 2},
            {"name": "relay.example", "count": 1}
        ])
    );
    assert_eq!(full["active_mailboxes"], json!({"hour": 2, "day": 2}));

    // The defaults, and a bad parameter.
    let (_, small) = p.get_json("/api/stats").await?;
    assert_eq!(small["series"]["minute"].as_array().unwrap().len(), 60);
    assert_eq!(small["series"]["hour"].as_array().unwrap().len(), 48);
    let (status, bad) = p.get_json("/api/stats?minutes=1441").await?;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"]["code"], "invalid_parameter");

    // Recount: spoil a counter, then delete everything and count the streams again.
    let before = comparable(&full);
    p.stop_stage(Stage::Reporter).await?;
    let mut redis = p.redis.conn().await?;
    let () = redis::cmd("HSET")
        .arg(maildrop_store::keys::STATS)
        .arg("received")
        .arg(999)
        .query_async(&mut redis)
        .await?;
    p.set_flags(Stage::Reporter, vec!["recount".to_owned()]);
    p.start_stage(Stage::Reporter).await?;
    let after = p.wait_for_json(FULL, |s| comparable(s) == before).await;
    let after = match after {
        Ok(v) => v,
        Err(e) => {
            let (_, now) = p.get_json(FULL).await?;
            panic!(
                "{e}: the recount differs\nbefore: {before}\nafter:  {}",
                comparable(&now)
            );
        }
    };
    assert_eq!(after["received"], 5);
    Ok(())
}
