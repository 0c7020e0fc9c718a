//! Live push: WebSocket and SSE clients, resume after a disconnect, and the long-poll `wait`.

mod common;

use std::time::Duration;

use common::Pipeline;
use futures::StreamExt;
use maildrop_testkit::ws;

const T: Duration = Duration::from_secs(30);

/// A minimal Server-Sent Events reader over a streaming HTTP body.
struct Sse {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

#[derive(Debug, Default)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: serde_json::Value,
}

impl Sse {
    async fn open(p: &Pipeline, path: &str, last_event_id: Option<&str>) -> anyhow::Result<Self> {
        let mut req = p.http_client.get(p.url(path));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await?;
        anyhow::ensure!(resp.status() == 200, "SSE answered {}", resp.status());
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Ok(Self {
            body: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        })
    }

    async fn next(&mut self) -> anyhow::Result<SseEvent> {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = SseEvent::default();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                event.data = serde_json::from_str(&data)?;
                return Ok(event);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .map_err(|_| anyhow::anyhow!("no SSE event within {T:?}"))?
                .ok_or_else(|| anyhow::anyhow!("SSE stream ended"))??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test]
async fn websocket_and_sse_clients_both_get_stored() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;
    let mut socket = ws::connect(&p.ws_url("/api/mailboxes/both/ws")).await?;
    let mut sse = Sse::open(&p, "/api/mailboxes/both/events", None).await?;
    p.send("both", "hello live").await?;

    let w = ws::next_event(&mut socket, T).await?;
    let s = sse.next().await?;
    assert_eq!(w["type"], "stored");
    assert_eq!(s.event, "stored");
    assert_eq!(w["summary"]["subject"], "hello live");
    assert_eq!(s.data["summary"]["subject"], "hello live");
    assert!(w["seq"].as_u64().unwrap() > 0);
    assert_eq!(
        s.id.as_deref(),
        Some(w["seq"].to_string().as_str()),
        "the SSE id is the sequence"
    );
    Ok(())
}

#[tokio::test]
async fn a_websocket_that_reconnects_gets_exactly_what_it_missed() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;
    let mut socket = ws::connect(&p.ws_url("/api/mailboxes/resume/ws")).await?;
    p.send("resume", "seen").await?;
    let seen = ws::next_event(&mut socket, T).await?;
    let last = seen["seq"].as_u64().unwrap();
    drop(socket);

    for i in 0..5 {
        p.send("resume", &format!("missed {i}")).await?;
    }
    // Noise in another mailbox must not show up.
    p.send("elsewhere", "not yours").await?;
    p.wait_for_inbox("resume", 6, T).await?;

    let mut socket =
        ws::connect(&p.ws_url(&format!("/api/mailboxes/resume/ws?after={last}"))).await?;
    let mut subjects = Vec::new();
    let mut seqs = Vec::new();
    for _ in 0..5 {
        let e = ws::next_event(&mut socket, T).await?;
        assert_eq!(e["type"], "stored");
        subjects.push(e["summary"]["subject"].as_str().unwrap().to_owned());
        seqs.push(e["seq"].as_u64().unwrap());
    }
    let mut sorted = subjects.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        (0..5).map(|i| format!("missed {i}")).collect::<Vec<_>>()
    );
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");

    // Then live, with nothing repeated in between.
    p.send("resume", "live again").await?;
    let e = ws::next_event(&mut socket, T).await?;
    assert_eq!(e["summary"]["subject"], "live again");
    assert!(e["seq"].as_u64().unwrap() > *seqs.last().unwrap());
    Ok(())
}

#[tokio::test]
async fn sse_resumes_from_last_event_id() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;
    let mut sse = Sse::open(&p, "/api/mailboxes/sse/events", None).await?;
    p.send("sse", "first").await?;
    let first = sse.next().await?;
    let id = first.id.clone().unwrap();
    drop(sse);
    p.send("sse", "second").await?;
    p.send("sse", "third").await?;
    p.wait_for_inbox("sse", 3, T).await?;
    let mut sse = Sse::open(&p, "/api/mailboxes/sse/events", Some(&id)).await?;
    let a = sse.next().await?;
    let b = sse.next().await?;
    let mut got = [
        a.data["summary"]["subject"].clone(),
        b.data["summary"]["subject"].clone(),
    ];
    got.sort_by_key(|v| v.to_string());
    assert_eq!(
        got,
        [serde_json::json!("second"), serde_json::json!("third")]
    );
    Ok(())
}

#[tokio::test]
async fn wait_returns_when_mail_arrives_and_times_out_cleanly() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;
    // Nothing arrives: 204 after the timeout.
    let started = std::time::Instant::now();
    let resp = p
        .http_client
        .get(p.url("/api/mailboxes/patient/wait?timeout=1s"))
        .send()
        .await?;
    assert_eq!(resp.status(), 204);
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A waiting request returns when the message is stored.
    let url = p.url("/api/mailboxes/patient/wait?timeout=30s");
    let client = p.http_client.clone();
    let waiting = tokio::spawn(async move {
        client
            .get(url)
            .send()
            .await?
            .json::<serde_json::Value>()
            .await
    });
    p.send("patient", "your code is 123456").await?;
    let got = tokio::time::timeout(T, waiting).await???;
    assert_eq!(got["message"]["subject"], "your code is 123456");
    let first_id = got["message"]["id"].as_str().unwrap().to_owned();

    // `after` skips what the client has seen; the next one is returned at once once it exists.
    p.send("patient", "second").await?;
    let resp = p
        .http_client
        .get(p.url(&format!(
            "/api/mailboxes/patient/wait?after={first_id}&timeout=30s"
        )))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await?;
    assert_eq!(body["message"]["subject"], "second");

    let (status, body) = p
        .get_json("/api/mailboxes/patient/wait?timeout=soon")
        .await?;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_parameter");
    Ok(())
}

#[tokio::test]
async fn the_watch_command_prints_events_as_json_lines_and_resumes() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;
    let args = |after: Option<u64>, count: u64| maildrop_gateway::watch::WatchArgs {
        mailbox: "script".into(),
        url: format!("http://{}", p.http),
        after,
        count: Some(count),
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let first = {
        let (args, cancel) = (args(None, 1), cancel.clone());
        tokio::spawn(async move {
            let mut out = Vec::new();
            maildrop_gateway::watch::watch_into(args, cancel, &mut out)
                .await
                .map(|()| out)
        })
    };
    // The watcher connects on its own schedule: keep sending until it has printed one.
    let mut sent = 0;
    maildrop_testkit::wait_until(T, "the watcher to print an event", || {
        sent += 1;
        let subject = format!("for the script {sent}");
        let (p, first) = (&p, &first);
        async move {
            p.send("script", &subject).await.ok()?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            first.is_finished().then_some(())
        }
    })
    .await?;
    let mut out = Vec::new();
    out.extend(tokio::time::timeout(T, first).await???);
    let text = String::from_utf8(out)?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let event: serde_json::Value = serde_json::from_str(lines[0])?;
    assert_eq!(event["type"], "stored");
    let seq = event["seq"].as_u64().unwrap();

    // Resuming after that sequence prints the next message only.
    p.send("script", "next one").await?;
    let mut out = Vec::new();
    maildrop_gateway::watch::watch_into(args(Some(seq), 1), cancel, &mut out).await?;
    let event: serde_json::Value = serde_json::from_slice(out.trim_ascii())?;
    assert!(event["seq"].as_u64().unwrap() > seq);
    Ok(())
}
