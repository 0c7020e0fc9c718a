//! The web page in a real browser: Debian's headless Chromium, driven by `e2e/browser/page-test.mjs`
//! (Node and playwright-core, installed by `npm ci` in `e2e/browser`), against the whole pipeline.
//!
//! This test owns the world: the pipeline (real nats-server and redis-server), a "remote" HTTP host
//! on loopback that records every request (the tracker a hostile mail points at), and the SMTP
//! client. The script acts as a reader and asks for mail or for the remote host's log in JSON
//! lines; its final `result` line holds what it saw, and the assertions are here.
//!
//! Without Chromium or `e2e/browser/node_modules` the test prints `SKIPPED …` and passes, unless
//! `MAILDROP_REQUIRE_BROWSER` is set (CI sets it): then it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use common::Pipeline;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const CHROMIUM: &str = "/usr/bin/chromium";
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// `$CARGO_TARGET_DIR`, else the workspace's `target/`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// What is missing to run the browser, if anything.
fn missing_tools() -> Option<String> {
    let chromium = std::env::var("MAILDROP_CHROMIUM").unwrap_or_else(|_| CHROMIUM.into());
    if !Path::new(&chromium).exists() {
        return Some(format!(
            "{chromium} is missing (scripts/deps.sh chromium installs it)"
        ));
    }
    if !browser_dir().join("node_modules/playwright-core").exists() {
        return Some("e2e/browser/node_modules is missing (run `npm ci` in e2e/browser)".into());
    }
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        return Some("node is missing".into());
    }
    None
}

/// One request the remote host saw.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    referer: Option<String>,
}

/// A tiny HTTP server standing for every remote host a mail can name: it answers any path with
/// a 1×1 PNG (an empty style sheet for `.css`, 404 for `missing…`) and records the request.
async fn remote_host() -> anyhow::Result<(String, Arc<Mutex<Vec<Seen>>>)> {
    const PNG: [u8; 68] = [
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x04, 0x00, 0x00, 0x00, 0xb5,
        0x1c, 0x0c, 0x02, 0x00, 0x00, 0x00, 0x0b, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x64,
        0x60, 0x00, 0x00, 0x00, 0x06, 0x00, 0x02, 0x30, 0x81, 0xd0, 0x2f, 0x00, 0x00, 0x00, 0x00,
        0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                let referer = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Referer: ").or(l.strip_prefix("referer: ")))
                    .map(str::to_owned);
                // `missing…` answers 404, so an image's error handler would fire if it survived.
                let (status, kind, body): (&str, &str, &[u8]) = if path.contains("missing") {
                    ("404 Not Found", "text/plain", b"")
                } else if path.ends_with(".css") {
                    ("200 OK", "text/css", b"")
                } else {
                    ("200 OK", "image/png", &PNG)
                };
                log.lock()
                    .expect("not poisoned")
                    .push(Seen { path, referer });
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
                let _ = socket.write_all(body).await;
            });
        }
    });
    Ok((url, seen))
}

/// The hostile mail: a script, an `onerror` handler and remote content in three forms. Each
/// would call home to a `/pwned-…` path (and log to the console) if it ever ran.
fn hostile(to: &str, remote: &str) -> Vec<u8> {
    format!(
        "From: Newsletter <news@example.org>\r\nTo: {to}\r\nSubject: Hostile test mail\r\n\
Date: Mon, 2 Feb 2026 10:00:00 +0000\r\nMessage-ID: <hostile@example.org>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlain version: hello from the browser test.\r\n\
--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<html><head><style>.brand {{ color: rgb(1, 2, 3); font-size: 20px }} .bg {{ background-image: url({remote}/bg.png) }}</style></head>\r\n\
<body><p class=\"brand\">Hello from the browser test</p>\r\n\
<script>console.log('maildrop-pwned-script'); new Image().src = '{remote}/pwned-script';</script>\r\n\
<img src=\"{remote}/missing.gif\" alt=\"broken\" onerror=\"console.log('maildrop-pwned-onerror'); this.src='{remote}/pwned-onerror'\">\r\n\
<img src=\"{remote}/img.png\" alt=\"remote\" width=\"40\" height=\"40\">\r\n\
<div class=\"bg\" style=\"width:10px;height:10px\"></div>\r\n\
<p><a href=\"https://example.org/\">A link</a></p></body></html>\r\n\
--b--\r\n"
    )
    .into_bytes()
}

async fn send(p: &Pipeline, to: &str, raw: &[u8]) -> anyhow::Result<()> {
    maildrop_testkit::smtp::send_raw(p.smtp, "news@example.org", &[to], raw).await?;
    Ok(())
}

/// Runs the script, answering its questions, until its result.
async fn drive(
    p: &Pipeline,
    remote: &str,
    seen: &Arc<Mutex<Vec<Seen>>>,
    shots: &Path,
) -> anyhow::Result<Value> {
    let mut child = tokio::process::Command::new("node")
        .arg(browser_dir().join("page-test.mjs"))
        .args(["--gateway", &p.url("")])
        .args(["--remote", remote])
        .arg("--shots")
        .arg(shots)
        .args([
            "--chromium",
            &std::env::var("MAILDROP_CHROMIUM").unwrap_or_else(|_| CHROMIUM.into()),
        ])
        .current_dir(browser_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting node")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut plain = 0;
    while let Some(line) = lines.next_line().await? {
        let msg: Value =
            serde_json::from_str(&line).with_context(|| format!("script wrote {line:?}"))?;
        let answer = if let Some(progress) = msg.get("log") {
            tracing::info!(%progress, "Browser script.");
            continue;
        } else if let Some(result) = msg.get("result") {
            return Ok(result.clone());
        } else if let Some(error) = msg.get("error") {
            bail!(
                "the browser script failed: {}",
                error.as_str().unwrap_or("")
            );
        } else if msg["need"] == "send" {
            let to = p.address(msg["mailbox"].as_str().context("mailbox")?);
            if msg["kind"] == "hostile" {
                send(p, &to, &hostile(&to, remote)).await?;
            } else {
                for _ in 0..2 {
                    plain += 1;
                    let raw = maildrop_testkit::smtp::message(
                        "friend@example.org",
                        &to,
                        &format!("Plain message {plain}"),
                        "Hello.",
                    );
                    send(p, &to, &raw).await?;
                }
            }
            json!({ "sent": true })
        } else if msg["need"] == "remote" {
            let paths: Vec<String> = seen
                .lock()
                .expect("not poisoned")
                .iter()
                .map(|s| s.path.clone())
                .collect();
            json!({ "requests": paths })
        } else {
            bail!("unknown question {msg}");
        };
        stdin.write_all(format!("{answer}\n").as_bytes()).await?;
    }
    let status = child.wait().await?;
    bail!("the browser script ended ({status}) without a result")
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_reader_gets_mail_live_and_hostile_mail_does_nothing() -> anyhow::Result<()> {
    if let Some(missing) = missing_tools() {
        ensure!(
            std::env::var_os("MAILDROP_REQUIRE_BROWSER").is_none(),
            "MAILDROP_REQUIRE_BROWSER is set but {missing}"
        );
        // Straight to stderr: the harness hides `eprintln!` of a passing test, and a skip must show.
        use std::io::Write as _;
        writeln!(
            std::io::stderr(),
            "SKIPPED a_reader_gets_mail_live_and_hostile_mail_does_nothing: {missing}"
        )?;
        return Ok(());
    }
    let p = Pipeline::start().await?;
    let (remote, seen) = remote_host().await?;
    let shots = target_dir().join("browser-screenshots");
    std::fs::create_dir_all(&shots)?;
    let result = tokio::time::timeout(SCRIPT_TIMEOUT, drive(&p, &remote, &seen, &shots))
        .await
        .context("the browser script took too long")??;
    let r = &result;

    // Our pages: clickjacking, sniffing, and a policy without inline script.
    assert_eq!(r["headers"]["x_frame_options"], "DENY");
    assert_eq!(r["headers"]["nosniff"], "nosniff");
    let csp = r["headers"]["csp"].as_str().unwrap_or("");
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );

    // The inbox: a random adjective-noun name, the address and the alias, live.
    let name = r["random_name"].as_str().unwrap_or("");
    assert_eq!(name.split('-').count(), 3, "{name}");
    assert_eq!(r["inbox_path"], format!("/inbox/{name}"));
    assert_eq!(r["inbox_address"], p.address(name));
    let alias = r["alias"].as_str().unwrap_or("");
    assert!(
        alias.starts_with("d-") && alias.ends_with(common::DOMAIN),
        "{alias}"
    );
    assert_eq!(r["appeared_without_reload"], true);
    assert!(
        r["row_text"]
            .as_str()
            .is_some_and(|t| t.contains("Hostile test mail") && t.contains("Newsletter")),
        "{}",
        r["row_text"]
    );
    assert_eq!(r["unread_before_open"], true);
    assert!(
        r["title_with_unread"]
            .as_str()
            .is_some_and(|t| t.starts_with("(1) ")),
        "{}",
        r["title_with_unread"]
    );
    assert_eq!(r["unread_after_open"], false);

    // The hostile mail: no script, no handler, nothing remote until allowed.
    assert_eq!(r["frame"]["scripts"], 0);
    assert_eq!(r["frame"]["handlers"], 0);
    assert_eq!(
        r["frame_sandbox"],
        "allow-popups allow-popups-to-escape-sandbox"
    );
    assert_eq!(
        r["frame"]["brand_color"], "rgb(1, 2, 3)",
        "the mail's own style sheet applies"
    );
    assert_eq!(r["frame"]["link_rel"], "noopener noreferrer");
    assert_eq!(r["frame"]["link_target"], "_blank");
    assert_eq!(r["frame"]["remote_img_loaded"], false);
    assert!(
        strings(&r["remote_before_allow"]).is_empty(),
        "the remote host was asked before the reader allowed it: {}",
        r["remote_before_allow"]
    );
    assert_eq!(r["remote_button"], true);
    let origin = p.url("");
    let elsewhere: Vec<&str> = strings(&r["requests_before_allow"])
        .into_iter()
        .filter(|u| !u.starts_with(&origin) && !u.starts_with("data:"))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "requests to other origins: {elsewhere:?}"
    );

    // Allowed: images and style sheets load, scripts and handlers still never run.
    assert_eq!(r["remote_img_loaded_after_allow"], true);
    let after = strings(&r["remote_after_allow"]);
    assert!(after.contains(&"/img.png"), "{after:?}");
    assert!(
        after.contains(&"/bg.png"),
        "CSS url() loads once allowed: {after:?}"
    );
    let all_seen = seen.lock().expect("not poisoned").clone();
    assert!(
        all_seen.iter().all(|s| !s.path.contains("pwned")),
        "{all_seen:?}"
    );
    assert!(
        all_seen.iter().all(|s| s.referer.is_none()),
        "a remote host learnt where the reader was: {all_seen:?}"
    );
    let console: Vec<String> = r["console"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| format!("{}: {}", m["type"], m["text"]))
        .collect();
    // The only console lines are Chromium's own: what the frame's policy blocked, and the 404 of
    // the broken image once allowed. Nothing from the mail, nothing from our page.
    println!("console: {console:#?}\nblocked: {}", r["blocked"]);
    let expected = |m: &String| {
        m.starts_with("\"error\": ")
            && !m.contains("pwned")
            && (m.contains("violates the following Content Security Policy directive")
                || m.contains("404 (Not Found)"))
    };
    let unexpected: Vec<&String> = console.iter().filter(|m| !expected(m)).collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    assert!(
        strings(&r["page_errors"]).is_empty(),
        "{}",
        r["page_errors"]
    );

    // The message's other views.
    assert!(
        r["text_view"]
            .as_str()
            .is_some_and(|t| t.contains("Plain version"))
    );
    let details = r["details_view"].as_str().unwrap_or("");
    assert!(
        details.contains("Spam verdict") && details.contains("Client IP"),
        "{details}"
    );
    assert!(
        r["source_view"]
            .as_str()
            .is_some_and(|t| t.contains("Subject: Hostile test mail")),
    );
    assert!(r["eml_href"].as_str().is_some_and(|h| h.ends_with("/raw")));

    // Deleting: from the message, with Del in the list, and emptying the inbox.
    assert_eq!(r["deleted_from_message"], true);
    assert_eq!(r["deleted_by_key"], true);
    assert_eq!(r["emptied"], true);
    assert!(p.inbox(name).await?.is_empty());
    assert_eq!(r["jumped_to"], "/inbox/jumped.here");

    // Every control has a name; the page works without cookies and sets none; no web fonts.
    for page in ["unnamed_on_home", "unnamed_on_inbox", "unnamed_on_message"] {
        assert!(strings(&r[page]).is_empty(), "{page}: {}", r[page]);
    }
    assert_eq!(r["cookies"], 0);
    assert_eq!(r["document_cookie"], "");
    assert_eq!(r["set_cookie_seen"], false);
    let fonts = r["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|q| q["type"] == "font")
        .count();
    assert_eq!(fonts, 0);
    assert!(
        r["stats_text"]
            .as_str()
            .is_some_and(|t| t.contains("saved")),
        "{}",
        r["stats_text"]
    );

    assert_eq!(
        r["chart_shown"], true,
        "the home page charts the day's traffic"
    );

    let screenshots = strings(&r["screenshots"]);
    assert!(screenshots.len() >= 12, "{screenshots:?}");
    for path in screenshots {
        assert!(std::fs::metadata(path)?.len() > 1000, "{path}");
    }
    println!("screenshots in {}", shots.display());
    Ok(())
}
