//! Faults under load, with real processes: the stage binaries are SIGKILLed and started again,
//! nats-server and redis-server are stopped, a node of a three-node JetStream cluster dies. A steady
//! SMTP load runs throughout, and the one promise checked is the one a sender relies on: every
//! message that got a 250 ends up in its mailbox exactly once, and nothing needs a manual step.
//!
//! The in-process `Pipeline` cannot do this: a cancelled stage still finishes its work in hand, a
//! killed one does not. Each message goes to a mailbox of its own (`f<n>`), so "exactly once" is
//! "that mailbox lists exactly one message, with that subject".

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use maildrop_testkit::process::{DOMAIN, StageProcess, Stages};
use maildrop_testkit::{NatsCluster, NatsServer, RedisCluster, RedisServer, wait_until};
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The five stages as processes, sharing one NATS URL and one Redis.
struct System {
    stages: Stages,
    smtp: SocketAddr,
    http: SocketAddr,
    nats_url: String,
    redis_url: String,
    client: reqwest::Client,
}

impl System {
    async fn start(nats_url: &str, redis_url: &str, replicas: u16) -> anyhow::Result<Self> {
        let replicas = replicas.to_string();
        // A killed consumer's messages come back after the ack wait: keep it short.
        let consumer = ["--ack-wait", "2s"];
        let stages = Stages::builder(nats_url, redis_url)
            .all(&["--stream-replicas", &replicas, "--duplicate-window", "2m"])
            .args("maildrop-filter", &consumer)
            .args("maildrop-store-writer", &consumer)
            .args("maildrop-reporter", &consumer)
            .start()
            .await?;
        Ok(Self {
            smtp: stages.smtp,
            http: stages.http,
            stages,
            nats_url: nats_url.to_owned(),
            redis_url: redis_url.to_owned(),
            client: reqwest::Client::new(),
        })
    }

    fn stage(&mut self, name: &str) -> &mut StageProcess {
        self.stages.stage(name)
    }

    async fn wait_serving(&self) -> anyhow::Result<()> {
        self.stages.wait_serving().await
    }

    /// SIGKILLs a stage, leaves it dead for a moment under load, and starts it again.
    async fn crash_and_restart(&mut self, name: &str) -> anyhow::Result<()> {
        tracing::warn!(stage = name, "SIGKILL");
        self.stage(name).kill().await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        self.stage(name).start()?;
        self.wait_serving().await
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let response = self
            .client
            .get(format!("http://{}{path}", self.http))
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    }

    /// Every accepted message is in its mailbox exactly once (waiting for the pipeline to drain).
    async fn assert_all_stored_once(&self, accepted: &[u32]) -> anyhow::Result<()> {
        anyhow::ensure!(!accepted.is_empty(), "no message was accepted at all");
        for n in accepted {
            let path = format!("/api/mailboxes/f{n}");
            let subject = format!("fault {n}");
            let list = wait_until(
                Duration::from_secs(90),
                &format!("message {n} in its mailbox"),
                || async {
                    let (status, body) = self.get(&path).await.ok()?;
                    let list = body["messages"].as_array()?.clone();
                    (status == 200 && !list.is_empty()).then_some(list)
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}\n{}", self.stages.warnings()))?;
            anyhow::ensure!(
                list.len() == 1,
                "mailbox f{n} holds {} messages, expected exactly one: {list:?}",
                list.len()
            );
            anyhow::ensure!(
                list[0]["subject"] == subject.as_str(),
                "f{n}: {:?}",
                list[0]
            );
        }
        Ok(())
    }

    /// Runs `binary` once with the system's NATS and Redis URLs and `args` (a subcommand such as
    /// `rebuild`), as an operator would; fails unless it exits successfully. Returns its stdout.
    async fn run_once(&self, binary: &str, args: &[&str]) -> anyhow::Result<String> {
        let bin = maildrop_testkit::process::stage_binary(binary)?;
        let mut cmd = tokio::process::Command::new(bin);
        for (key, _) in std::env::vars() {
            if key.starts_with("MAILDROP_") {
                cmd.env_remove(key);
            }
        }
        let output = cmd
            .args(["--nats-url", &self.nats_url, "--redis-url", &self.redis_url])
            .args(args)
            .env("MAILDROP_OPS_ADDR", "127.0.0.1:0")
            .output()
            .await?;
        anyhow::ensure!(
            output.status.success(),
            "{binary} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// What the load saw: the numbers that got a 250, and how many got something else.
#[derive(Debug, Default)]
struct Tally {
    accepted: Vec<u32>,
    /// 4xx replies: the sender will retry; such a message may or may not be stored.
    deferred: u32,
    /// No SMTP conversation at all (the ingest was down).
    unreachable: u32,
    /// 5xx replies: never expected here.
    refused: Vec<String>,
}

/// A steady SMTP load: `workers` clients sending one message per connection, each to its own
/// mailbox, until cancelled or `limit` messages were tried.
struct Load {
    cancel: CancellationToken,
    tally: Arc<Mutex<Tally>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(smtp: SocketAddr, workers: usize, limit: u32) -> Self {
        let cancel = CancellationToken::new();
        let tally = Arc::new(Mutex::new(Tally::default()));
        let next = Arc::new(AtomicU32::new(0));
        let tasks = (0..workers)
            .map(|_| {
                let (cancel, tally, next) = (cancel.clone(), tally.clone(), next.clone());
                tokio::spawn(async move {
                    while !cancel.is_cancelled() {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= limit {
                            break;
                        }
                        let result = maildrop_testkit::smtp::send_mail(
                            smtp,
                            "load@example.org",
                            &format!("f{n}@{DOMAIN}"),
                            &format!("fault {n}"),
                            "A message under fault.",
                        )
                        .await;
                        let mut t = tally.lock().await;
                        match result {
                            Ok(_) => t.accepted.push(n),
                            Err(e) if e.is_transient() => t.deferred += 1,
                            Err(e) if e.is_permanent() => t.refused.push(format!("{n}: {e}")),
                            Err(_) => t.unreachable += 1,
                        }
                        drop(t);
                        // A steady trickle, not a flood: the point is the faults, not the speed.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        Self {
            cancel,
            tally,
            tasks,
        }
    }

    async fn accepted_so_far(&self) -> usize {
        self.tally.lock().await.accepted.len()
    }

    /// Waits until `more` further messages were accepted (the system is flowing again).
    async fn wait_flowing(&self, more: usize, timeout: Duration) -> anyhow::Result<()> {
        let start = self.accepted_so_far().await;
        wait_until(timeout, "the load to be accepted again", || async move {
            (self.accepted_so_far().await >= start + more).then_some(())
        })
        .await
    }

    async fn stop(self) -> anyhow::Result<Tally> {
        self.cancel.cancel();
        for task in self.tasks {
            task.await?;
        }
        let tally = std::mem::take(&mut *self.tally.lock().await);
        anyhow::ensure!(
            tally.refused.is_empty(),
            "messages refused with 5xx: {:?}",
            tally.refused
        );
        Ok(tally)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_each_stage_under_load_loses_nothing_and_stores_nothing_twice()
-> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let redis = RedisServer::start().await?;
    let mut system = System::start(&nats.url(), &redis.url(), 1).await?;
    let load = Load::start(system.smtp, 3, 20_000);
    load.wait_flowing(20, Duration::from_secs(30)).await?;
    for stage in maildrop_testkit::process::STAGES {
        system.crash_and_restart(stage).await?;
        load.wait_flowing(20, Duration::from_secs(60)).await?;
    }
    let tally = load.stop().await?;
    tracing::warn!(?tally.deferred, ?tally.unreachable, accepted = tally.accepted.len(), "load done");
    system.assert_all_stored_once(&tally.accepted).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_under_load_means_451_and_resumes_by_itself() -> anyhow::Result<()> {
    let mut nats = NatsServer::start().await?;
    let redis = RedisServer::start().await?;
    let system = System::start(&nats.url(), &redis.url(), 1).await?;
    let load = Load::start(system.smtp, 3, 20_000);
    load.wait_flowing(20, Duration::from_secs(30)).await?;
    nats.stop().await;
    // While the bus is down, the load gets only 4xx: never a 250 (checked below: every 250 is
    // stored), never a 5xx (checked by `stop`).
    let deferred_before = load.tally.lock().await.deferred;
    wait_until(
        Duration::from_secs(30),
        "451s while NATS is down",
        || async { (load.tally.lock().await.deferred >= deferred_before + 5).then_some(()) },
    )
    .await?;
    nats.resume().await?;
    load.wait_flowing(20, Duration::from_secs(60)).await?;
    let tally = load.stop().await?;
    system.assert_all_stored_once(&tally.accepted).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_under_load_defers_storage_and_flush_is_repaired_by_rebuild()
-> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    // Persistent, as in production: what Redis acknowledged survives its crash.
    let mut redis = RedisServer::start_persistent().await?;
    let system = System::start(&nats.url(), &redis.url(), 1).await?;
    let load = Load::start(system.smtp, 3, 20_000);
    load.wait_flowing(20, Duration::from_secs(30)).await?;

    redis.stop().await;
    // The gateway says why it cannot answer, as JSON, with 503.
    let (status, body) = wait_until(
        Duration::from_secs(30),
        "a 503 from the gateway",
        || async {
            let (status, body) = system.get("/api/mailboxes/f0").await.ok()?;
            (status == 503).then_some((status, body))
        },
    )
    .await?;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    // SMTP goes on meanwhile: the bus holds the mail until the store is back.
    load.wait_flowing(20, Duration::from_secs(30)).await?;
    redis.resume().await?;
    load.wait_flowing(20, Duration::from_secs(60)).await?;
    let tally = load.stop().await?;
    system.assert_all_stored_once(&tally.accepted).await?;

    // Losing Redis altogether: `rebuild` restores every mailbox from the streams.
    let mut conn = redis.conn().await?;
    redis::cmd("FLUSHALL").query_async::<()>(&mut conn).await?;
    let (status, body) = system
        .get(&format!("/api/mailboxes/f{}", tally.accepted[0]))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(body["messages"].as_array().map(Vec::len), Some(0));
    let report = system
        .run_once("maildrop-store-writer", &["rebuild"])
        .await?;
    system
        .assert_all_stored_once(&tally.accepted)
        .await
        .map_err(|e| anyhow::anyhow!("after rebuild ({report}): {e}"))
}

/// The name of the node leading `stream`, as JetStream reports it.
async fn stream_leader(url: &str, stream: &str) -> Option<String> {
    let client = async_nats::connect(url).await.ok()?;
    let reply = client
        .request(format!("$JS.API.STREAM.INFO.{stream}"), "".into())
        .await
        .ok()?;
    let info: Value = serde_json::from_slice(&reply.payload).ok()?;
    info["cluster"]["leader"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_node_of_a_three_node_cluster_loses_nothing_acknowledged() -> anyhow::Result<()> {
    let mut cluster = NatsCluster::start().await?;
    let redis = RedisServer::start().await?;
    let system = System::start(&cluster.url(), &redis.url(), 3).await?;
    let load = Load::start(system.smtp, 3, 20_000);
    load.wait_flowing(20, Duration::from_secs(60)).await?;

    // Kill the node that leads RECEIVED, where every 250 was acknowledged: the worst one to lose.
    let first = cluster.node_url(0);
    let leader = wait_until(Duration::from_secs(10), "RECEIVED's leader", || {
        stream_leader(&first, "RECEIVED")
    })
    .await?;
    let victim = cluster
        .index_of(&leader)
        .expect("the leader is one of ours");
    tracing::warn!(node = %leader, "SIGKILL of the RECEIVED leader");
    cluster.kill(victim).await;
    // The remaining two elect a new leader and the stages reconnect by themselves.
    load.wait_flowing(20, Duration::from_secs(90)).await?;
    cluster.resume(victim).await?;
    load.wait_flowing(20, Duration::from_secs(60)).await?;
    let tally = load.stop().await?;
    system.assert_all_stored_once(&tally.accepted).await
}

/// The statistics a recount must give again (the counters and the day's traffic).
fn counted(stats: &Value) -> Value {
    serde_json::json!({
        "received": stats["received"],
        "stored": stats["stored"],
        "rejected": stats["rejected"],
        "rejected_by_rule": stats["rejected_by_rule"],
        "deleted": stats["deleted"],
        "active_mailboxes": stats["active_mailboxes"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_works_against_a_redis_cluster_given_only_its_url() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let cluster = RedisCluster::start().await?;
    let mut system = System::start(&nats.url(), &cluster.url(), 1).await?;

    // Ready: the gateway's PING reaches the cluster.
    let (status, body) = system.get("/readyz").await?;
    assert_eq!(
        (status, &body["redis"]),
        (200, &Value::from(true)),
        "{body}"
    );

    // The filter's blocklists live in the cluster too, edited by the operator's command.
    let said = system
        .run_once(
            "maildrop-filter",
            &[
                "--domains",
                DOMAIN,
                "block",
                "add",
                "sender",
                "spam@bulk.example",
            ],
        )
        .await?;
    assert_eq!(said, "blocked sender spam@bulk.example until removed\n");

    // Forty messages, each to its own mailbox (forty hash tags, spread over the three masters),
    // and one from the blocked sender.
    let load = Load::start(system.smtp, 3, 40);
    wait_until(Duration::from_secs(60), "40 messages tried", || async {
        let t = load.tally.lock().await;
        (t.accepted.len() as u32 + t.deferred + t.unreachable >= 40).then_some(())
    })
    .await?;
    let tally = load.stop().await?;
    assert_eq!(tally.accepted.len(), 40, "{tally:?}");
    maildrop_testkit::smtp::send_mail(
        system.smtp,
        "spam@bulk.example",
        &format!("blocked@{DOMAIN}"),
        "offer",
        "Buy now.",
    )
    .await?;
    system.assert_all_stored_once(&tally.accepted).await?;
    let counts = cluster.key_counts().await?;
    assert!(
        counts.iter().filter(|&&n| n > 0).count() >= 2,
        "the mailboxes are spread over the cluster's masters: {counts:?}"
    );

    // The reporter counted everything (one MULTI on the statistics' slot), and the gateway reads
    // it with the series and the active mailboxes.
    let stats = wait_until(Duration::from_secs(60), "the reporter's counts", || async {
        let (_, stats) = system.get("/api/stats").await.ok()?;
        (stats["stored"] == 40 && stats["rejected"] == 1).then_some(stats)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", system.stages.warnings()))?;
    assert_eq!(stats["received"], 41, "{stats}");
    assert_eq!(stats["rejected_by_rule"]["blocklist"], 1, "{stats}");
    assert_eq!(stats["active_mailboxes"]["day"], 40, "{stats}");
    let (_, blocked) = system.get("/api/mailboxes/blocked").await?;
    assert_eq!(
        blocked["messages"].as_array().map(Vec::len),
        Some(0),
        "{blocked}"
    );

    // The gateway writes too: deleting a message updates its mailbox and the usage index.
    let first = tally.accepted[0];
    let (_, list) = system.get(&format!("/api/mailboxes/f{first}")).await?;
    let id = list["messages"][0]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let response = system
        .client
        .delete(format!(
            "http://{}/api/mailboxes/f{first}/messages/{id}",
            system.http
        ))
        .send()
        .await?;
    assert!(response.status().is_success(), "{}", response.status());
    let (_, list) = system.get(&format!("/api/mailboxes/f{first}")).await?;
    assert_eq!(list["messages"].as_array().map(Vec::len), Some(0), "{list}");
    let before = wait_until(Duration::from_secs(30), "the delete counted", || async {
        let (_, stats) = system.get("/api/stats").await.ok()?;
        (stats["deleted"] == 1).then_some(stats)
    })
    .await?;

    // A recount finds every statistics key on its node (SCAN on the slot's master) and counts
    // the same again.
    system.stage("maildrop-reporter").kill().await;
    let mut recount = StageProcess::new(
        "maildrop-reporter",
        system.stages.dir(),
        &[
            "--nats-url",
            &nats.url(),
            "--redis-url",
            &cluster.url(),
            "recount",
        ],
    )?
    .env("MAILDROP_LOG", "info");
    recount.start()?;
    // The log is the killed reporter's file, appended: the recount's line is the only such line.
    let reset = wait_until(Duration::from_secs(60), "the statistics reset", || async {
        let log = recount.log();
        let line = log.lines().find(|l| l.contains("Statistics reset"))?;
        Some(line.to_owned())
    })
    .await?;
    // The line ends in `keys=<n>` (with colour codes around the `=` on a terminal).
    let digits: String = reset
        .trim_end()
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    let keys: u64 = digits
        .chars()
        .rev()
        .collect::<String>()
        .parse()
        .unwrap_or(0);
    // Counters, marks, two buckets, a top list, two HyperLogLogs at least.
    assert!(keys >= 7, "{reset}");
    wait_until(Duration::from_secs(60), "the recount to agree", || async {
        let (_, stats) = system.get("/api/stats").await.ok()?;
        (counted(&stats) == counted(&before)).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nbefore: {before}\n{}", recount.log()))?;

    // Losing every node's data: `rebuild` restores every mailbox but the deleted message.
    for url in cluster.node_urls() {
        let mut conn = redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await?;
        redis::cmd("FLUSHALL").query_async::<()>(&mut conn).await?;
    }
    system
        .run_once("maildrop-store-writer", &["rebuild"])
        .await?;
    system.assert_all_stored_once(&tally.accepted[1..]).await?;
    let (_, list) = system.get(&format!("/api/mailboxes/f{first}")).await?;
    assert_eq!(list["messages"].as_array().map(Vec::len), Some(0), "{list}");
    Ok(())
}
