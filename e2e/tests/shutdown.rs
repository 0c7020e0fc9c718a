//! Issue 7, checked with the real binaries: every stage logs JSON when asked
//! (`MAILDROP_LOG_FORMAT=json`) and stops by itself on SIGTERM, with exit code 0 and a last word in
//! its log; the ingest ends its SMTP sessions the way `docs/operations.md` promises (idle sessions
//! get `421 4.3.2`, a transaction being published gets its real answer).
//!
//! The in-process `Pipeline` cannot show any of this: its stages share the test's subscriber and
//! are stopped by a token, not a signal, and never exit.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt as _;
use maildrop_testkit::process::{DOMAIN, StageProcess, Stages};
use maildrop_testkit::{NatsServer, RedisServer, wait_until};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long a stage may take from SIGTERM to its exit, with nothing slow in hand.
const STOP_WITHIN: Duration = Duration::from_secs(10);
const T: Duration = Duration::from_secs(60);
/// What `maildrop_runtime::shutdown::on_signal` logs when the signal arrives.
const SIGNAL_LINE: &str = "Shutdown signal received; finishing work in hand.";

/// The five stages as processes logging JSON, sharing one Redis; the ingest's NATS URL may differ
/// from the others' (a proxy in front of the same server).
struct System {
    stages: Stages,
    smtp: SocketAddr,
    http: SocketAddr,
    client: reqwest::Client,
}

impl System {
    async fn start(nats_url: &str, ingest_nats_url: &str, redis_url: &str) -> anyhow::Result<Self> {
        let stages = Stages::builder(nats_url, redis_url)
            .ingest_nats_url(ingest_nats_url)
            // Long enough for the publish the in-flight test holds back.
            .args("maildrop-ingest", &["--publish-timeout", "20s"])
            .env("MAILDROP_LOG_FORMAT", "json")
            .start()
            .await?;
        let system = Self {
            smtp: stages.smtp,
            http: stages.http,
            stages,
            client: reqwest::Client::new(),
        };
        system.wait_consuming().await?;
        Ok(system)
    }

    fn stage(&mut self, name: &str) -> &mut StageProcess {
        self.stages.stage(name)
    }

    /// Waits until every consumer consumes (the gateway and the ingest already serve).
    async fn wait_consuming(&self) -> anyhow::Result<()> {
        for name in [
            "maildrop-filter",
            "maildrop-store-writer",
            "maildrop-reporter",
        ] {
            let path = self.stages.dir().join(format!("{name}.log"));
            wait_until(T, &format!("{name} to consume"), || {
                let path = path.clone();
                let consuming =
                    |l: &Value| l["message"] == "Consuming." || l["message"] == "Counting.";
                async move { logged(&path, consuming).then_some(()) }
            })
            .await?;
        }
        Ok(())
    }

    /// The messages listed in `mailbox`, once there are `n`.
    async fn wait_for_inbox(&self, mailbox: &str, n: usize) -> anyhow::Result<Vec<Value>> {
        let url = format!("http://{}/api/mailboxes/{mailbox}", self.http);
        wait_until(T, &format!("{n} message(s) in {mailbox}"), || {
            let (url, client) = (url.clone(), self.client.clone());
            async move {
                let body: Value = client.get(url).send().await.ok()?.json().await.ok()?;
                let list = body["messages"].as_array()?.clone();
                (list.len() == n).then_some(list)
            }
        })
        .await
    }
}

/// The stage's log as JSON objects; fails on the first line that is not one, or lacks the fields
/// `flatten_event(true)` writes (`timestamp`, `level`, `target`, and the event's `message` at the
/// top level).
fn json_log(name: &str, text: &str) -> anyhow::Result<Vec<Map<String, Value>>> {
    let mut lines = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = || format!("{name}.log line {}: {line}", n + 1);
        let Ok(Value::Object(object)) = serde_json::from_str::<Value>(line) else {
            anyhow::bail!("not a JSON object: {}", at());
        };
        for field in ["timestamp", "level", "target", "message"] {
            anyhow::ensure!(
                object.get(field).is_some_and(Value::is_string),
                "no string {field:?}: {}",
                at()
            );
        }
        let level = object["level"].as_str().unwrap_or_default();
        anyhow::ensure!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
            "level {level:?}: {}",
            at()
        );
        lines.push(object);
    }
    anyhow::ensure!(!lines.is_empty(), "{name} logged nothing");
    Ok(lines)
}

/// Whether some JSON line of the log at `path` matches (lines that are not JSON match nothing).
fn logged(path: &Path, matches: impl Fn(&Value) -> bool) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| {
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|l| matches(&l))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_logs_json_and_exits_zero_on_sigterm() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let redis = RedisServer::start().await?;
    let mut system = System::start(&nats.url(), &nats.url(), &redis.url()).await?;

    // Some real traffic, through every stage: accepted, filtered, stored, counted, read back.
    maildrop_testkit::smtp::send_mail(
        system.smtp,
        "sender@example.org",
        &format!("json-logs@{DOMAIN}"),
        "Logged as JSON",
        "One line per event.",
    )
    .await?;
    system.wait_for_inbox("json-logs", 1).await?;

    // The ingest first, as an orchestrator draining the system would; each one alone, so a stage
    // that hangs is named.
    for name in maildrop_testkit::process::STAGES {
        let stage = system.stage(name);
        stage.signal("TERM")?;
        let status = stage
            .wait_exit(STOP_WITHIN)
            .await
            .map_err(|e| anyhow::anyhow!("{e}\n{}", stage.log()))?;
        assert_eq!(status.code(), Some(0), "{name}: {status}\n{}", stage.log());
    }

    let mut msg_id = None;
    for stage in system.stages.all() {
        let name = stage.name();
        let lines = json_log(name, &stage.log())?;
        let signal = lines
            .iter()
            .position(|l| l["message"] == SIGNAL_LINE)
            .unwrap_or_else(|| panic!("{name} logged no shutdown line: {lines:#?}"));
        // Nothing went wrong on the way out.
        let after: Vec<_> = lines[signal..]
            .iter()
            .filter(|l| l["level"] == "ERROR")
            .collect();
        assert!(after.is_empty(), "{name} after the signal: {after:#?}");
        // The event's own fields are top-level keys, next to the message.
        if name == "maildrop-ingest" {
            let accepted = lines
                .iter()
                .find(|l| l["message"] == "Message accepted.")
                .unwrap_or_else(|| panic!("no Message accepted.: {lines:#?}"));
            msg_id = accepted["msg_id"].as_str().map(str::to_owned);
        }
    }
    // One grep follows the mail: the id the ingest logged is in the filter's and the
    // store-writer's lines about it (STAGES lists the ingest first).
    let msg_id = msg_id.expect("the ingest logged the message id");
    for name in ["maildrop-filter", "maildrop-store-writer"] {
        let path = system.stages.dir().join(format!("{name}.log"));
        assert!(
            logged(&path, |l| l["msg_id"] == msg_id.as_str()),
            "{name} logged no line with msg_id {msg_id}"
        );
    }
    Ok(())
}

/// A TCP proxy to `upstream` that forwards the server's bytes only while the gate is open (the
/// client's always): JetStream acknowledgements can be held back while the server stays up.
async fn gated_proxy(upstream: SocketAddr) -> anyhow::Result<(SocketAddr, watch::Sender<bool>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (gate, _) = watch::channel(true);
    let opened = gate.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(upstream).await else {
                continue;
            };
            let mut open = opened.subscribe();
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match server_read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if open.wait_for(|open| *open).await.is_err()
                        || client_write.write_all(&buf[..n]).await.is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    Ok((addr, gate))
}

/// A raw SMTP client, one reply at a time.
struct Smtp {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Smtp {
    /// Connects and reads the `220`, then says EHLO.
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let (read, writer) = TcpStream::connect(addr).await?.into_split();
        let mut smtp = Self {
            reader: BufReader::new(read),
            writer,
        };
        let greeting = smtp.reply().await?;
        anyhow::ensure!(greeting.starts_with("220"), "{greeting}");
        smtp.command("EHLO client.example.org", "250").await?;
        Ok(smtp)
    }

    /// The last line of the next reply (`None` once the server closed the connection), within 30 s.
    async fn next_reply(&mut self) -> anyhow::Result<Option<String>> {
        let read = async {
            loop {
                let mut line = String::new();
                if self.reader.read_line(&mut line).await? == 0 {
                    return Ok::<_, anyhow::Error>(None);
                }
                // `250-…` continues a reply, `250 …` ends it.
                if line.as_bytes().get(3) != Some(&b'-') {
                    return Ok(Some(line.trim_end().to_owned()));
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .map_err(|_| anyhow::anyhow!("no SMTP reply within 30 s"))?
    }

    async fn reply(&mut self) -> anyhow::Result<String> {
        self.next_reply()
            .await?
            .ok_or_else(|| anyhow::anyhow!("the server closed the connection"))
    }

    async fn send(&mut self, bytes: &str) -> anyhow::Result<()> {
        self.writer.write_all(bytes.as_bytes()).await?;
        Ok(())
    }

    async fn command(&mut self, line: &str, code: &str) -> anyhow::Result<String> {
        self.send(&format!("{line}\r\n")).await?;
        let reply = self.reply().await?;
        anyhow::ensure!(reply.starts_with(code), "{line}: {reply}");
        Ok(reply)
    }

    /// MAIL, RCPT and DATA up to the `354`.
    async fn start_data(&mut self, mailbox: &str) -> anyhow::Result<()> {
        self.command("MAIL FROM:<sender@example.org>", "250")
            .await?;
        self.command(&format!("RCPT TO:<{mailbox}@{DOMAIN}>"), "250")
            .await?;
        self.command("DATA", "354").await?;
        Ok(())
    }

    /// The session's goodbye: a `421 4.3.2`, then the connection closed.
    async fn expect_shutdown(&mut self, who: &str) -> anyhow::Result<()> {
        let reply = self.reply().await?;
        anyhow::ensure!(reply.starts_with("421 4.3.2"), "{who}: {reply}");
        let after = self.next_reply().await?;
        anyhow::ensure!(after.is_none(), "{who}: {after:?} after the 421");
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_says_421_to_idle_sessions_and_lets_a_publish_in_flight_finish_with_250()
-> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let redis = RedisServer::start().await?;
    let upstream: SocketAddr = format!("127.0.0.1:{}", nats.port()).parse()?;
    let (proxy, gate) = gated_proxy(upstream).await?;
    let proxied = format!("nats://{proxy}");
    let mut system = System::start(&nats.url(), &proxied, &redis.url()).await?;
    let mut received = async_nats::connect(nats.url())
        .await?
        .subscribe("maildrop.received")
        .await?;

    // One session between commands, one in the middle of a message, one whose message is complete
    // and being published: JetStream has it, but its acknowledgement is held back.
    let mut idle = Smtp::open(system.smtp).await?;
    let mut half = Smtp::open(system.smtp).await?;
    half.start_data("half").await?;
    half.send("Subject: never finished\r\n\r\nThe first half")
        .await?;
    let mut publishing = Smtp::open(system.smtp).await?;
    publishing.start_data("in-flight").await?;
    gate.send_replace(false);
    let message = maildrop_testkit::smtp::message(
        "sender@example.org",
        &format!("in-flight@{DOMAIN}"),
        "Published during shutdown",
        "Acknowledged after the signal.",
    );
    publishing.send(std::str::from_utf8(&message)?).await?;
    publishing.send(".\r\n").await?;
    tokio::time::timeout(T, received.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("no message on maildrop.received"))?;

    let ingest = system.stage("maildrop-ingest");
    ingest.signal("TERM")?;
    let log = ingest.log_path().to_owned();
    wait_until(T, "the ingest to log the signal", || {
        let log = log.clone();
        async move { logged(&log, |l| l["message"] == SIGNAL_LINE).then_some(()) }
    })
    .await?;

    // Sessions with nothing in hand are told at once, with the acknowledgement still held back.
    idle.expect_shutdown("the idle session").await?;
    half.expect_shutdown("the session in the middle of DATA")
        .await?;

    // The transaction in flight gets its real answer once JetStream answers, and only then the
    // goodbye.
    gate.send_replace(true);
    let answer = publishing.reply().await?;
    assert!(
        answer.starts_with("250 "),
        "the message in flight: {answer}"
    );
    publishing
        .expect_shutdown("the session that published")
        .await?;

    let ingest = system.stage("maildrop-ingest");
    let status = ingest
        .wait_exit(STOP_WITHIN)
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", ingest.log()))?;
    assert_eq!(status.code(), Some(0), "{status}\n{}", ingest.log());
    // The acknowledgement really came after the signal: the ingest logs the acceptance only then.
    let lines = json_log("maildrop-ingest", &ingest.log())?;
    let at = |message: &str| {
        lines
            .iter()
            .position(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} in the ingest's log: {lines:#?}"))
    };
    assert!(
        at(SIGNAL_LINE) < at("Message accepted."),
        "the message was accepted before the signal: {lines:#?}"
    );
    assert!(
        TcpStream::connect(system.smtp).await.is_err(),
        "the SMTP port still accepts connections"
    );

    // The 250 was true: the mail is stored and readable. The half message was never published:
    // RECEIVED holds exactly the one message, and the ingest that could add another is gone.
    let list = system.wait_for_inbox("in-flight", 1).await?;
    assert_eq!(list[0]["subject"], "Published during shutdown", "{list:?}");
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await?);
    let state = js.get_stream("RECEIVED").await?.info().await?.state.clone();
    assert_eq!(state.messages, 1, "{state:?}");
    Ok(())
}
