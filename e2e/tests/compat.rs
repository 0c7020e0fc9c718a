//! maildrop.cc compatibility, end to end: mail goes in by SMTP, and comes out through the GraphQL
//! and v2 APIs exactly as maildrop.cc's clients ask for it.
//!
//! The GraphQL requests are copied from docs.maildrop.cc, character for character where the
//! documentation gives a complete request (its mailbox is `testing`, so ours is too; each test has
//! its own servers). Where a documented request is broken or missing, the comment says what was
//! changed. The documentation pages are listed in `gateway/src/compat/graphql.rs`.

mod common;

use std::time::Duration;

use common::Pipeline;
use maildrop_testkit::wait_until;
use serde_json::{Value, json};

const MAILBOX: &str = "testing";

/// An HTML message with something to sanitise, and a recognisable raw header.
fn html_mail(to: &str) -> Vec<u8> {
    format!(
        "From: Test Sender <test@test.com>\r\nTo: {to}\r\nSubject: Testing!\r\n\
         X-Compat-Marker: raw-source\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <p>Hello<script>alert(1)</script> <a href=\"https://example.org/confirm?a=1&b=2\">confirm</a></p>\r\n"
    )
    .into_bytes()
}

/// POSTs `body` (a JSON string, as a client would send it) to `/graphql`.
async fn graphql(p: &Pipeline, body: &str) -> anyhow::Result<(u16, Value)> {
    let response = p
        .http_client
        .post(p.url("/graphql"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

/// POSTs a query with variables, as Apollo and other generated clients do.
async fn graphql_vars(p: &Pipeline, query: &str, variables: Value) -> anyhow::Result<Value> {
    let body = json!({ "query": query, "variables": variables }).to_string();
    let (status, json) = graphql(p, &body).await?;
    anyhow::ensure!(status == 200, "{status} {json}");
    Ok(json)
}

async fn deliver_one(p: &Pipeline) -> anyhow::Result<String> {
    maildrop_testkit::smtp::send_raw(
        p.smtp,
        "bounces@test.com",
        &[&p.address(MAILBOX)],
        &html_mail(&p.address(MAILBOX)),
    )
    .await?;
    let list = p
        .wait_for_inbox(MAILBOX, 1, Duration::from_secs(30))
        .await?;
    let id = list[0]["id"].as_str().unwrap_or_default().to_owned();
    anyhow::ensure!(!id.is_empty(), "listing without an id: {list:?}");
    Ok(id)
}

fn is_iso_utc_millis(date: &str) -> bool {
    // 2023-02-09T23:51:14.411Z
    let b = date.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[23] == b'Z'
        && date.chars().filter(char::is_ascii_digit).count() == 17
}

fn is_our_alias(alias: &str) -> bool {
    alias.strip_prefix("d-").is_some_and(|body| {
        body.len() == 16
            && body
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    })
}

#[tokio::test]
async fn a_graphql_session_with_the_documented_queries() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;
    let id = deliver_one(&p).await?;

    // Get a Mailbox Listing: the curl example's --data, verbatim.
    let (status, listing) = graphql(
        &p,
        r#"{"query":"query Example { inbox(mailbox:\"testing\") { id headerfrom subject date } }"}"#,
    )
    .await?;
    assert_eq!(status, 200, "{listing}");
    assert!(listing.get("errors").is_none(), "{listing}");
    let inbox = listing["data"]["inbox"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(inbox.len(), 1, "{listing}");
    assert_eq!(inbox[0]["id"], id.as_str());
    assert_eq!(inbox[0]["headerfrom"], "Test Sender <test@test.com>");
    assert_eq!(inbox[0]["subject"], "Testing!");
    let date = inbox[0]["date"].as_str().unwrap_or_default();
    assert!(is_iso_utc_millis(date), "{date}");

    // "the list of messages in the mailbox will come back with the data and html fields set to
    // null"; the envelope fields are there.
    let listed = graphql_vars(
        &p,
        "query Listing($mailbox: String!) { inbox(mailbox: $mailbox) { id data html ip mailfrom rcptto } }",
        json!({ "mailbox": MAILBOX }),
    )
    .await?;
    let entry = &listed["data"]["inbox"][0];
    assert_eq!(entry["data"], Value::Null, "{listed}");
    assert_eq!(entry["html"], Value::Null, "{listed}");
    assert_eq!(entry["mailfrom"], "bounces@test.com", "{listed}");
    assert_eq!(entry["ip"], "127.0.0.1", "{listed}");

    // Get a Specific Message: that page was not retrievable; this is the overview's sample call
    // `message(mailbox: "testing", id: "abc123")` with our id, asking for every documented field.
    let body = json!({
        "query": format!(
            "query Example {{ message(mailbox:\"testing\", id:\"{id}\") {{ id ip helo date mailfrom rcptto headerfrom subject data html }} }}"
        )
    })
    .to_string();
    let (status, message) = graphql(&p, &body).await?;
    assert_eq!(status, 200, "{message}");
    let m = &message["data"]["message"];
    assert_eq!(m["id"], id.as_str(), "{message}");
    assert_eq!(m["ip"], "127.0.0.1");
    assert!(m["helo"].as_str().is_some_and(|h| !h.is_empty()), "{m}");
    assert_eq!(m["mailfrom"], "bounces@test.com");
    assert_eq!(m["rcptto"], json!([p.address(MAILBOX)]));
    assert_eq!(m["headerfrom"], "Test Sender <test@test.com>");
    assert_eq!(m["subject"], "Testing!");
    assert_eq!(m["date"], date);
    let data = m["data"].as_str().unwrap_or_default();
    assert!(
        data.contains("X-Compat-Marker: raw-source") && data.contains("<script>"),
        "data is the raw message: {data}"
    );
    let html = m["html"].as_str().unwrap_or_default();
    assert!(html.contains("<p>Hello"), "{html}");
    assert!(
        html.contains("https://example.org/confirm?a=1&amp;b=2"),
        "{html}"
    );
    assert!(!html.contains("script"), "html is sanitised: {html}");

    // Get a Mailbox Alias: the page's request body (the curl example lacks its closing brace).
    let (_, alias) = graphql(
        &p,
        r#"{"query":"query Example { altinbox(mailbox:\"testing\") }"}"#,
    )
    .await?;
    let alias = alias["data"]["altinbox"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(is_our_alias(&alias), "{alias}");
    // The React example's query, with `$mailbox: String!` (its stray closing brace removed).
    let again = graphql_vars(
        &p,
        "query GetAlias($mailbox: String!) {\naltinbox(mailbox: $mailbox)\n}",
        json!({ "mailbox": "Testing" }),
    )
    .await?;
    assert_eq!(
        again["data"]["altinbox"],
        alias.as_str(),
        "stable, case-insensitive"
    );
    let (_, rest) = p.get_json("/api/mailboxes/testing").await?;
    assert_eq!(
        rest["alias"],
        alias.as_str(),
        "the same alias as our own API"
    );
    // Mail sent to `<alias>@maildrop.test` is being wired into the ingest separately; once it is,
    // this test should also deliver to the alias and find the message in `testing`.

    // Maildrop Statistics: the curl example's --data, verbatim. The reporter counts
    // asynchronously.
    let stats = wait_until(
        Duration::from_secs(30),
        "statistics to count the message",
        || {
            let p = &p;
            async move {
                let (_, s) = graphql(
                    p,
                    r#"{"query":"query Example {\n  statistics { blocked saved }\n}"}"#,
                )
                .await
                .ok()?;
                (s["data"]["statistics"]["saved"].as_u64()? >= 1).then_some(s)
            }
        },
    )
    .await?;
    assert_eq!(stats["data"]["statistics"]["blocked"], 0, "{stats}");

    // The echo resolver: the schema page's sample and its documented answer.
    let ping = json!({ "query": "query PingSample {\n    ping(message: \"Hello, world!\")\n}" });
    let (_, pong) = graphql(&p, &ping.to_string()).await?;
    assert_eq!(pong, json!({ "data": { "ping": "pong Hello, world!" } }));

    // Service Status: the curl example's --data, verbatim.
    let (_, status) = graphql(&p, r#"{"query":"query Example {\n  status\n}"}"#).await?;
    assert_eq!(status, json!({ "data": { "status": "operational" } }));

    // Delete a Message: the curl example's --data, verbatim. "Incorrect mailbox/id combinations
    // will still return true."
    let (_, deleted) = graphql(
        &p,
        r#"{"query":"mutation Example { delete(mailbox:\"testing\", id:\"abc123\") }"}"#,
    )
    .await?;
    assert_eq!(deleted, json!({ "data": { "delete": true } }));
    assert_eq!(p.inbox(MAILBOX).await?.len(), 1, "nothing was deleted");

    // The React example's mutation (its stray closing brace removed), on the real message.
    let deleted = graphql_vars(
        &p,
        "mutation DeleteMessage($mailbox: String!, $id: String!) {\ndelete(mailbox: $mailbox, id: $id)\n}",
        json!({ "mailbox": MAILBOX, "id": id }),
    )
    .await?;
    assert_eq!(deleted, json!({ "data": { "delete": true } }));
    assert!(p.inbox(MAILBOX).await?.is_empty(), "deleted");
    let gone = graphql_vars(
        &p,
        "query Gone($mailbox: String, $id: String) { message(mailbox: $mailbox, id: $id) { id } }",
        json!({ "mailbox": MAILBOX, "id": id }),
    )
    .await?;
    assert_eq!(
        gone,
        json!({ "data": { "message": null } }),
        "unknown id is null"
    );
    Ok(())
}

#[tokio::test]
async fn graphql_errors_follow_the_conventions() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;

    // A bad mailbox name: the field is null, `errors` says why, with our code.
    let (status, bad) = graphql(
        &p,
        r#"{"query":"query Example { inbox(mailbox:\"no spaces\") { id } }"}"#,
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(bad["data"]["inbox"], Value::Null, "{bad}");
    assert_eq!(
        bad["errors"][0]["extensions"]["code"], "invalid_mailbox",
        "{bad}"
    );
    assert_eq!(bad["errors"][0]["path"], json!(["inbox"]), "{bad}");

    let (_, missing) = graphql(&p, r#"{"query":"{ altinbox }"}"#).await?;
    assert_eq!(
        missing["errors"][0]["extensions"]["code"], "missing_argument",
        "{missing}"
    );

    let (_, malformed) = graphql(
        &p,
        r#"{"query":"{ message(mailbox:\"testing\", id:\"abc123\") { id } }"}"#,
    )
    .await?;
    assert_eq!(malformed["data"]["message"], Value::Null, "{malformed}");
    assert_eq!(
        malformed["errors"][0]["extensions"]["code"], "invalid_id",
        "{malformed}"
    );

    // A syntax error is reported by the executor, as GraphQL servers do.
    let (status, syntax) = graphql(&p, r#"{"query":"query Example { inbox( }"}"#).await?;
    assert_eq!(status, 200);
    assert!(syntax["errors"][0]["message"].is_string(), "{syntax}");

    // Not a GraphQL request at all.
    let (status, not_json) = graphql(&p, "query=status").await?;
    assert_eq!(status, 400);
    assert_eq!(not_json["errors"][0]["extensions"]["code"], "bad_request");

    // Too large.
    let padding = " ".repeat(10 * 1024);
    let (status, large) = graphql(&p, &format!(r#"{{"query":"{{ status {padding}}}"}}"#)).await?;
    assert_eq!(status, 413, "{large}");
    assert_eq!(
        large["errors"][0]["extensions"]["code"],
        "payload_too_large"
    );

    // GET runs queries, and refuses mutations (a link must not delete mail).
    let get = p
        .http_client
        .get(p.url("/graphql"))
        .query(&[("query", "query Example { ping(message: \"hi\") }")])
        .send()
        .await?;
    assert_eq!(get.status(), 200);
    assert_eq!(
        get.json::<Value>().await?,
        json!({ "data": { "ping": "pong hi" } })
    );
    let get = p
        .http_client
        .get(p.url("/graphql"))
        .query(&[(
            "query",
            "mutation { delete(mailbox:\"testing\", id:\"abc123\") }",
        )])
        .send()
        .await?;
    assert_eq!(get.status(), 405);

    // Introspection stays on for client generators.
    let (_, schema) = graphql(
        &p,
        r#"{"query":"{ __type(name: \"Message\") { fields { name } } }"}"#,
    )
    .await?;
    let fields: Vec<&str> = schema["data"]["__type"]["fields"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        fields,
        [
            "id",
            "ip",
            "helo",
            "date",
            "mailfrom",
            "rcptto",
            "headerfrom",
            "subject",
            "data",
            "html"
        ]
    );

    // Browsers on other origins could call maildrop.cc's API; they can call ours.
    let preflight = p
        .http_client
        .request(reqwest::Method::OPTIONS, p.url("/graphql"))
        .header("origin", "https://client.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await?;
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    Ok(())
}

#[tokio::test]
async fn the_v2_api_answers_in_its_old_shape() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;
    let id = deliver_one(&p).await?;

    let (status, inbox) = p.get_json("/v2/mailbox/testing").await?;
    assert_eq!(status, 200, "{inbox}");
    assert!(
        inbox["altinbox"].as_str().is_some_and(is_our_alias),
        "{inbox}"
    );
    let entry = &inbox["messages"][0];
    assert_eq!(entry["id"], id.as_str());
    assert_eq!(entry["from"], "Test Sender <test@test.com>");
    assert_eq!(entry["to"], MAILBOX);
    assert_eq!(entry["subject"], "Testing!");
    assert!(
        entry["date"].as_str().is_some_and(is_iso_utc_millis),
        "{entry}"
    );

    let (status, message) = p.get_json(&format!("/v2/mailbox/testing/{id}")).await?;
    assert_eq!(status, 200, "{message}");
    assert_eq!(message["id"], id.as_str());
    assert_eq!(message["subject"], "Testing!");
    assert!(
        message["body"]
            .as_str()
            .is_some_and(|b| b.contains("X-Compat-Marker: raw-source")),
        "body is the raw message: {message}"
    );
    let html = message["html"].as_str().unwrap_or_default();
    assert!(
        html.contains("<p>Hello") && !html.contains("script"),
        "{html}"
    );

    let (status, stats) = p.get_json("/v2/statistics").await?;
    assert_eq!(status, 200);
    assert!(
        stats["blocked"].is_u64() && stats["saved"].is_u64(),
        "{stats}"
    );

    let delete = |p: &Pipeline, id: String| {
        let request = p
            .http_client
            .delete(p.url(&format!("/v2/mailbox/testing/{id}")))
            .header("x-api-key", "any key or none");
        async move {
            let response = request.send().await?;
            Ok::<_, anyhow::Error>((response.status().as_u16(), response.json::<Value>().await?))
        }
    };
    assert_eq!(
        delete(&p, id.clone()).await?,
        (200, json!({ "deleted": true }))
    );
    assert_eq!(
        delete(&p, id.clone()).await?,
        (200, json!({ "deleted": false }))
    );

    let (status, gone) = p.get_json(&format!("/v2/mailbox/testing/{id}")).await?;
    assert_eq!(status, 404);
    assert_eq!(gone["error"]["code"], "message_not_found");

    let (status, bad) = p.get_json("/v2/mailbox/no%20spaces").await?;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["code"], "invalid_mailbox");
    let (status, bad) = p.get_json("/v2/mailbox/testing/abc123").await?;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["code"], "invalid_id");
    Ok(())
}

#[tokio::test]
async fn the_openapi_document_is_served() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;
    let response = p.http_client.get(p.url("/api/openapi.json")).send().await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc: Value = response.json().await?;
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/mailboxes/{mailbox}"].is_object());
    // The `/api` fallback still answers unknown routes next to it.
    let (status, body) = p.get_json("/api/openapi.yaml").await?;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    Ok(())
}

#[tokio::test]
async fn mail_to_a_mailbox_alias_lands_in_the_mailbox() -> anyhow::Result<()> {
    let p = Pipeline::start().await?;
    let (status, listing) = p.get_json("/api/mailboxes/secretbox").await?;
    assert_eq!(status, 200);
    let alias = listing["alias"].as_str().unwrap().to_owned();
    assert!(
        alias.starts_with("d-") && !alias.contains("secretbox"),
        "{alias}"
    );

    // Upper-case, as people copy it from old clients: addresses are case-insensitive.
    p.send(&alias.to_uppercase(), "via the alias").await?;
    let list = p
        .wait_for_inbox("secretbox", 1, std::time::Duration::from_secs(30))
        .await?;
    assert_eq!(list[0]["subject"], "via the alias");
    assert!(
        p.inbox(&alias).await?.is_empty(),
        "nothing lands in a mailbox named like the alias"
    );
    Ok(())
}
