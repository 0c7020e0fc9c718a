//! Spam-source reports reach a webhook exactly once although it fails at first: a local HTTP
//! server answers 500 to the first POSTs, then 200; the reporter retries with backoff and acks only
//! what was accepted. The accepted reports are exactly the rejected messages (by message id) and
//! the refused attempts (by event id), each once.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use common::{Pipeline, Stage};
use futures::StreamExt;
use maildrop_contract::{IngestRejection, Verdict, consumer, subject};
use maildrop_testkit::{smtp, wait_until};
use serde_json::Value;

/// What the webhook saw: failed attempts, and the reports of accepted batches.
#[derive(Default)]
struct Hook {
    failures_left: usize,
    failed: usize,
    accepted: Vec<Value>,
}

async fn hook(State(state): State<Arc<Mutex<Hook>>>, Json(batch): Json<Value>) -> StatusCode {
    let mut hook = state.lock().unwrap();
    if hook.failures_left > 0 {
        hook.failures_left -= 1;
        hook.failed += 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    assert_eq!(batch["v"], 1);
    hook.accepted
        .extend(batch["reports"].as_array().unwrap().iter().cloned());
    StatusCode::OK
}

/// The ids of every message on `filter` in `stream`, decoded by `id`.
async fn ids_on(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
    id: impl Fn(&[u8]) -> String,
) -> anyhow::Result<BTreeSet<String>> {
    let consumer = js
        .get_stream(stream)
        .await?
        .create_consumer(pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            ..Default::default()
        })
        .await?;
    let pending = consumer.cached_info().num_pending as usize;
    let mut ids = BTreeSet::new();
    if pending == 0 {
        return Ok(ids);
    }
    let mut messages = consumer.messages().await?.take(pending);
    while let Some(m) = messages.next().await {
        ids.insert(id(&m?.payload));
    }
    Ok(ids)
}

#[tokio::test]
async fn every_report_arrives_exactly_once_despite_failures() -> anyhow::Result<()> {
    let state = Arc::new(Mutex::new(Hook {
        failures_left: 3,
        ..Hook::default()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut rules = tempfile::NamedTempFile::new()?;
    writeln!(rules, "[blocked_sender]\nsenders = [\"@spam.example\"]")?;
    let flags = HashMap::from([
        (
            Stage::Filter,
            vec!["--rules".to_owned(), rules.path().display().to_string()],
        ),
        (
            Stage::Reporter,
            [
                "--report-webhook-url",
                &url,
                "--report-batch",
                "3",
                "--report-max-wait",
                "300ms",
                "--report-retry-min",
                "50ms",
                "--report-retry-max",
                "200ms",
            ]
            .map(str::to_owned)
            .to_vec(),
        ),
    ]);
    let p = Pipeline::start_with(flags, &common::ALL).await?;
    for n in 0..5 {
        smtp::send_mail(
            p.smtp,
            &format!("boss{n}@spam.example"),
            &p.address("carol"),
            "buy now",
            "x",
        )
        .await?;
    }
    p.send("bob", "ham").await?;
    for n in 0..2 {
        let refused = smtp::send_mail(
            p.smtp,
            "probe@relay.example",
            &format!("someone{n}@elsewhere.example"),
            "relay?",
            "x",
        )
        .await;
        assert!(refused.is_err());
    }

    let js = jetstream::new(async_nats::connect(p.nats.url()).await?);
    let expected = wait_until(
        Duration::from_secs(30),
        "5 rejected verdicts and 2 refused attempts on the streams",
        || {
            let js = js.clone();
            async move {
                let rejected = ids_on(
                    &js,
                    subject::VERDICTS_STREAM,
                    subject::VERDICT_REJECTED,
                    |p| serde_json::from_slice::<Verdict>(p).unwrap().id.to_string(),
                )
                .await
                .ok()?;
                let refused = ids_on(
                    &js,
                    subject::REJECTED_STREAM,
                    subject::REJECTED_INGEST,
                    |p| {
                        serde_json::from_slice::<IngestRejection>(p)
                            .unwrap()
                            .id
                            .to_string()
                    },
                )
                .await
                .ok()?;
                (rejected.len() == 5 && refused.len() == 2)
                    .then(|| rejected.into_iter().chain(refused).collect::<BTreeSet<_>>())
            }
        },
    )
    .await?;

    wait_until(Duration::from_secs(30), "7 reports accepted", || {
        let state = state.clone();
        async move { (state.lock().unwrap().accepted.len() >= 7).then_some(()) }
    })
    .await?;
    // Everything acked: nothing can come back and be posted again.
    for (stream, durable) in [
        (subject::VERDICTS_STREAM, consumer::REPORTS_VERDICTS),
        (subject::REJECTED_STREAM, consumer::REPORTS_REJECTED),
    ] {
        let js = js.clone();
        wait_until(Duration::from_secs(10), "every report acked", || {
            let js = js.clone();
            async move {
                let mut c: jetstream::consumer::Consumer<pull::Config> = js
                    .get_stream(stream)
                    .await
                    .ok()?
                    .get_consumer(durable)
                    .await
                    .ok()?;
                let info = c.info().await.ok()?;
                (info.num_ack_pending == 0 && info.num_pending == 0).then_some(())
            }
        })
        .await?;
    }

    let hook = state.lock().unwrap();
    assert_eq!(hook.failed, 3, "the webhook failed the first tries");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for report in &hook.accepted {
        *seen
            .entry(report["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(
        seen.values().all(|n| *n == 1),
        "a report arrived twice: {seen:?}"
    );
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), expected);
    let kinds: BTreeMap<&str, usize> = hook.accepted.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r["kind"].as_str().unwrap()).or_default() += 1;
        m
    });
    assert_eq!(
        kinds,
        BTreeMap::from([("refused_attempt", 2), ("rejected_message", 5)])
    );
    Ok(())
}
