//! The gateway's HTTP surface against real servers.

mod common;

use std::time::Duration;

use common::Pipeline;

#[tokio::test]
async fn bad_requests_get_json_errors() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;
    let (status, body) = p.get_json("/api/mailboxes/no%20spaces").await?;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_mailbox");

    let (status, body) = p.get_json("/api/mailboxes/bob/messages/not-an-id").await?;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_id");

    let (status, body) = p
        .get_json("/api/mailboxes/bob/messages/01JDQ3M7V9G8W2Z1X5K4T6R0YA")
        .await?;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "message_not_found");

    let (status, body) = p.get_json("/api/nothing-here").await?;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");

    let del = p
        .http_client
        .delete(p.url("/api/mailboxes/bob/messages/01JDQ3M7V9G8W2Z1X5K4T6R0YA"))
        .send()
        .await?;
    assert_eq!(del.status(), 404);
    Ok(())
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_policy() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;
    for path in ["/", "/inbox/bob", "/inbox/bob/01JDQ3M7V9G8W2Z1X5K4T6R0YA"] {
        let page = p.http_client.get(p.url(path)).send().await?;
        assert_eq!(page.status(), 200, "{path}");
        let csp = page.headers()["content-security-policy"]
            .to_str()?
            .to_owned();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert_eq!(page.headers()["x-frame-options"], "DENY");
        assert!(page.text().await?.contains("/assets/app.js"));
    }
    let js = p.http_client.get(p.url("/assets/app.js")).send().await?;
    assert!(
        js.headers()["content-type"]
            .to_str()?
            .starts_with("text/javascript")
    );
    Ok(())
}

#[tokio::test]
async fn mail_html_is_sanitised_and_served_under_its_own_policy() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;
    let raw = b"From: a@example.org\r\nTo: h@maildrop.test\r\nSubject: html\r\nContent-Type: text/html\r\n\r\n\
<p>Hi<script>alert(1)</script><img src=\"https://tracker.example/p.gif\" onerror=\"alert(2)\"></p>\r\n";
    maildrop_testkit::smtp::send_raw(p.smtp, "a@example.org", &[&p.address("h")], raw).await?;
    let list = p.wait_for_inbox("h", 1, Duration::from_secs(30)).await?;
    let id = list[0]["id"].as_str().unwrap();
    let (_, doc) = p
        .get_json(&format!("/api/mailboxes/h/messages/{id}"))
        .await?;
    let html = doc["html"].as_str().unwrap();
    assert!(html.contains("<p>Hi"));
    assert!(
        !html.contains("script") && !html.contains("onerror"),
        "{html}"
    );

    let frame = p
        .http_client
        .get(p.url(&format!("/api/mailboxes/h/messages/{id}/html")))
        .send()
        .await?;
    let csp = frame.headers()["content-security-policy"]
        .to_str()?
        .to_owned();
    assert!(
        csp.starts_with("default-src 'none'") && csp.contains("sandbox"),
        "{csp}"
    );
    assert!(!frame.text().await?.contains("<script"));

    // The tracker image is noticed, and loads only once the reader allows it.
    assert_eq!(doc["remote_content"], true, "{doc}");
    let allowed = p
        .http_client
        .get(p.url(&format!("/api/mailboxes/h/messages/{id}/html?remote=1")))
        .send()
        .await?;
    let csp = allowed.headers()["content-security-policy"].to_str()?;
    assert!(
        csp.contains("img-src data: http: https:")
            && csp.contains("sandbox")
            && !csp.contains("script-src"),
        "{csp}"
    );
    let unclear = p
        .http_client
        .get(p.url(&format!("/api/mailboxes/h/messages/{id}/html?remote=yes")))
        .send()
        .await?;
    assert_eq!(unclear.status(), 400);
    Ok(())
}

#[tokio::test]
async fn emptying_a_mailbox_pushes_cleared() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;
    p.send("full", "one").await?;
    p.send("full", "two").await?;
    p.wait_for_inbox("full", 2, Duration::from_secs(30)).await?;
    let mut socket = maildrop_testkit::ws::connect(&p.ws_url("/api/mailboxes/full/ws")).await?;
    let del = p
        .http_client
        .delete(p.url("/api/mailboxes/full"))
        .send()
        .await?;
    assert_eq!(del.status(), 204);
    let event = maildrop_testkit::ws::next_event(&mut socket, Duration::from_secs(10)).await?;
    assert_eq!(event["type"], "cleared");
    assert!(p.inbox("full").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_full_mailbox_keeps_the_newest_and_announces_evictions() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;
    let mut socket = maildrop_testkit::ws::connect(&p.ws_url("/api/mailboxes/small/ws")).await?;
    for i in 0..11 {
        p.send("small", &format!("m{i}")).await?;
    }
    let list = p
        .wait_for_inbox("small", 10, Duration::from_secs(30))
        .await?;
    let mut deleted = 0;
    let mut stored = 0;
    while stored < 11 || deleted < 1 {
        let e = maildrop_testkit::ws::next_event(&mut socket, Duration::from_secs(10)).await?;
        match e["type"].as_str() {
            Some("stored") => stored += 1,
            Some("deleted") => deleted += 1,
            other => panic!("unexpected event {other:?}"),
        }
    }
    let list = if list.len() == 10 && list.iter().all(|m| m["subject"] != "m0") {
        list
    } else {
        p.inbox("small").await?
    };
    assert_eq!(list.len(), 10);
    assert!(
        list.iter().all(|m| m["subject"] != "m0"),
        "the oldest went first"
    );
    Ok(())
}

#[tokio::test]
async fn the_rate_limit_answers_429_then_recovers() -> anyhow::Result<()> {
    let flags = std::collections::HashMap::from([(
        common::Stage::Gateway,
        vec!["--rate-limit".to_owned(), "3/2s".to_owned()],
    )]);
    let p = Pipeline::start_with(flags, &[common::Stage::Gateway]).await?;
    for _ in 0..3 {
        let (status, _) = p.get_json("/api/mailboxes/limited").await?;
        assert_eq!(status, 200);
    }
    let resp = p
        .http_client
        .get(p.url("/api/mailboxes/limited"))
        .send()
        .await?;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"].to_str()?.parse()?;
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let body: serde_json::Value = resp.json().await?;
    assert_eq!(body["error"]["code"], "rate_limited");
    // Health checks and the page are not limited.
    assert_eq!(
        p.http_client.get(p.url("/healthz")).send().await?.status(),
        200
    );
    // After Retry-After, the client is served again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let (status, _) = p.get_json("/api/mailboxes/limited").await?;
    assert_eq!(status, 200);
    Ok(())
}

#[tokio::test]
async fn cors_preflight_is_answered() -> anyhow::Result<()> {
    let p =
        Pipeline::start_with(std::collections::HashMap::new(), &[common::Stage::Gateway]).await?;
    let resp = p
        .http_client
        .request(reqwest::Method::OPTIONS, p.url("/api/mailboxes/bob"))
        .header("Origin", "https://example.org")
        .header("Access-Control-Request-Method", "DELETE")
        .send()
        .await?;
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let methods = resp.headers()["access-control-allow-methods"]
        .to_str()?
        .to_owned();
    assert!(methods.contains("DELETE"), "{methods}");
    Ok(())
}

#[tokio::test]
async fn live_feeds_are_capped_per_client() -> anyhow::Result<()> {
    let flags = std::collections::HashMap::from([(
        common::Stage::Gateway,
        vec!["--max-watchers-per-ip".to_owned(), "2".to_owned()],
    )]);
    let p = Pipeline::start_with(flags, &[common::Stage::Gateway]).await?;
    let _a = maildrop_testkit::ws::connect(&p.ws_url("/api/mailboxes/a/ws")).await?;
    let _b = maildrop_testkit::ws::connect(&p.ws_url("/api/mailboxes/b/ws")).await?;
    let (status, body) = p.get_json("/api/mailboxes/c/wait?timeout=1s").await?;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "too_many_watchers");
    drop(_a);
    // The slot comes back once the server notices the close.
    maildrop_testkit::wait_until(Duration::from_secs(10), "a freed slot", || async {
        let resp = p
            .http_client
            .get(p.url("/api/mailboxes/c/wait?timeout=1ms"))
            .send()
            .await
            .ok()?;
        (resp.status() == 204).then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn attachments_download_decoded_and_never_rendered() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;
    let raw = b"From: a@example.org\r\nTo: att@maildrop.test\r\nSubject: with a file\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
--b\r\nContent-Type: text/html; name=\"evil.html\"\r\nContent-Disposition: attachment; filename=\"../evil.html\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nPHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\r\n--b--\r\n";
    maildrop_testkit::smtp::send_raw(p.smtp, "a@example.org", &[&p.address("att")], raw).await?;
    let list = p.wait_for_inbox("att", 1, Duration::from_secs(30)).await?;
    let id = list[0]["id"].as_str().unwrap();
    let (_, doc) = p
        .get_json(&format!("/api/mailboxes/att/messages/{id}"))
        .await?;
    assert_eq!(doc["attachments"][0]["index"], 0);
    assert_eq!(doc["attachments"][0]["stripped"], false);

    let resp = p
        .http_client
        .get(p.url(&format!("/api/mailboxes/att/messages/{id}/attachments/0")))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    let disposition = resp.headers()["content-disposition"].to_str()?.to_owned();
    assert_eq!(disposition, "attachment; filename=\".._evil.html\"");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(&resp.bytes().await?[..], b"<script>alert(1)</script>");

    let (status, body) = p
        .get_json(&format!("/api/mailboxes/att/messages/{id}/attachments/5"))
        .await?;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "attachment_not_found");
    Ok(())
}
