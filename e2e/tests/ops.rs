//! The operations endpoints of every stage, over HTTP, with the whole pipeline running: health,
//! readiness that follows Redis going away and coming back, and Prometheus counters that move when
//! a mail goes through.
//!
//! All five stages run in this process and share one metrics recorder, so every stage's
//! `/metrics` renders every stage's series; each test reads a series where its stage serves it,
//! and compares before and after (other tests of a `cargo test` run share the recorder too).

mod common;

use std::time::Duration;

use common::{ALL, Pipeline, Stage};
use maildrop_testkit::wait_until;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// The sum of the samples of `name` whose labels include every `labels` pair, in Prometheus text.
/// `None` when no sample matches.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.strip_suffix('}').unwrap_or(rest)),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let wanted = labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
        if wanted && let Ok(v) = value.parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

async fn get(p: &Pipeline, stage: Stage, path: &str) -> anyhow::Result<(u16, String)> {
    let response = p.http_client.get(p.ops_url(stage, path)).send().await?;
    Ok((response.status().as_u16(), response.text().await?))
}

async fn metrics(p: &Pipeline, stage: Stage) -> anyhow::Result<String> {
    let (status, text) = get(p, stage, "/metrics").await?;
    anyhow::ensure!(status == 200, "{stage:?} /metrics: {status}");
    Ok(text)
}

async fn wait_ready(p: &Pipeline, stage: Stage) -> anyhow::Result<Value> {
    wait_until(T, &format!("{stage:?} to be ready"), || async move {
        let (status, body) = get(p, stage, "/readyz").await.ok()?;
        (status == 200).then(|| serde_json::from_str(&body).ok())?
    })
    .await
}

/// Waits until `stage`'s `/metrics` has `name{labels}` above `floor`; returns the value.
async fn wait_above(
    p: &Pipeline,
    stage: Stage,
    name: &str,
    labels: &[(&str, &str)],
    floor: f64,
) -> anyhow::Result<f64> {
    let what = format!("{name}{labels:?} above {floor} on {stage:?}");
    wait_until(T, &what, || async move {
        let text = metrics(p, stage).await.ok()?;
        sample(&text, name, labels).filter(|v| *v > floor)
    })
    .await
}

#[tokio::test]
async fn every_stage_is_alive_ready_and_counts_a_mail_going_through() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;
    for stage in ALL {
        let (status, body) = get(&p, stage, "/healthz").await?;
        assert_eq!(status, 200, "{stage:?} /healthz: {body}");
        let ready = wait_ready(&p, stage).await?;
        assert_eq!(ready["status"], "ready", "{stage:?}: {ready}");
    }

    let accepted = ("maildrop_ingest_messages_accepted_total", &[][..]);
    let stored = (
        "maildrop_store_writer_messages_total",
        &[("outcome", "stored")][..],
    );
    let filtered = (
        "maildrop_consumer_messages_total",
        &[("consumer", "filter"), ("outcome", "ack")][..],
    );
    let written = (
        "maildrop_consumer_messages_total",
        &[("consumer", "store-writer"), ("outcome", "ack")][..],
    );
    let verdicts = (
        "maildrop_filter_verdicts_total",
        &[("verdict", "accepted")][..],
    );
    let counted = ("maildrop_reporter_events_total", &[][..]);
    let before = |text: &str, (name, labels): (&str, &[(&str, &str)])| {
        sample(text, name, labels).unwrap_or(0.0)
    };
    let text = metrics(&p, Stage::Ingest).await?;
    let floors = [
        (Stage::Ingest, accepted, before(&text, accepted)),
        (Stage::StoreWriter, stored, before(&text, stored)),
        (Stage::Filter, filtered, before(&text, filtered)),
        (Stage::StoreWriter, written, before(&text, written)),
        (Stage::Filter, verdicts, before(&text, verdicts)),
        (Stage::Reporter, counted, before(&text, counted)),
    ];

    p.send("ops-counted", "Counted").await?;
    p.wait_for_inbox("ops-counted", 1, T).await?;

    for (stage, (name, labels), floor) in floors {
        wait_above(&p, stage, name, labels, floor).await?;
    }
    let text = metrics(&p, Stage::Ingest).await?;
    assert!(
        sample(&text, "maildrop_ingest_accepted_bytes_total", &[]).unwrap_or(0.0) > 0.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            "maildrop_ingest_publish_seconds_count",
            &[("result", "acked")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            "maildrop_ingest_connections_total",
            &[("result", "accepted")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            "maildrop_consumer_processing_seconds_count",
            &[("consumer", "store-writer")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    // The lag gauges are polled from the consumers' info; once the mail is through, none waits.
    for consumer in ["filter", "store-writer", "reporter-received"] {
        let labels = [("consumer", consumer)];
        let pending = wait_until(T, &format!("the lag of {consumer}"), || {
            let labels = &labels;
            let p = &p;
            async move {
                let text = metrics(p, Stage::Filter).await.ok()?;
                sample(&text, "maildrop_consumer_pending_messages", labels)
            }
        })
        .await?;
        assert_eq!(pending, 0.0, "{consumer}");
    }

    // The gateway labels requests by route template, never by the mailbox asked for.
    let text = metrics(&p, Stage::Gateway).await?;
    let listed = sample(
        &text,
        "maildrop_gateway_http_requests_total",
        &[("route", "/api/mailboxes/{mailbox}"), ("status", "200")],
    );
    assert!(listed.unwrap_or(0.0) >= 1.0, "{text}");
    assert!(
        !text.contains("ops-counted"),
        "a mailbox name in a label: {text}"
    );
    for stage in ["ingest", "filter", "store-writer", "reporter", "gateway"] {
        assert!(
            sample(&text, "maildrop_build_info", &[("stage", stage)]) == Some(1.0),
            "{stage}: {text}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn readiness_follows_redis_away_and_back() -> anyhow::Result<()> {
    let mut p = Pipeline::start().await?;
    for stage in ALL {
        wait_ready(&p, stage).await?;
    }
    p.redis.stop().await;
    let needs_redis = [
        Stage::Filter,
        Stage::StoreWriter,
        Stage::Reporter,
        Stage::Gateway,
    ];
    for stage in needs_redis {
        let body = wait_until(T, &format!("{stage:?} to be not ready"), || {
            let p = &p;
            async move {
                let (status, body) = get(p, stage, "/readyz").await.ok()?;
                (status == 503).then(|| serde_json::from_str::<Value>(&body).ok())?
            }
        })
        .await?;
        assert_eq!(body["status"], "not_ready", "{stage:?}: {body}");
        let reason = body["reason"].as_str().unwrap_or_default();
        assert!(reason.starts_with("redis"), "{stage:?}: {body}");
    }
    // The ingest's Redis checks fail open: without Redis it still takes mail, so it stays ready.
    let (status, body) = get(&p, Stage::Ingest, "/readyz").await?;
    assert_eq!(status, 200, "{body}");

    p.redis.resume().await?;
    for stage in needs_redis {
        wait_ready(&p, stage).await?;
    }
    Ok(())
}

#[test]
fn samples_are_found_by_name_and_labels() {
    let text = "# TYPE x counter\n\
                x{a=\"1\",route=\"/api/{mailbox}\"} 2\n\
                x{a=\"2\"} 3\n\
                xy 7\n";
    assert_eq!(sample(text, "x", &[]), Some(5.0));
    assert_eq!(sample(text, "x", &[("route", "/api/{mailbox}")]), Some(2.0));
    assert_eq!(sample(text, "xy", &[]), Some(7.0));
    assert_eq!(sample(text, "x", &[("a", "3")]), None);
}
