//! The whole pipeline in one test process: real nats-server and redis-server from the testkit, the
//! five stages run in-process through their libraries' `run` functions, each with its own
//! cancellation token so a test can stop and restart any one of them.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use maildrop_testkit::{NatsServer, RedisServer, wait_until};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Ingest,
    Filter,
    StoreWriter,
    Gateway,
    Reporter,
}

pub const ALL: [Stage; 5] = [
    Stage::Ingest,
    Stage::Filter,
    Stage::StoreWriter,
    Stage::Gateway,
    Stage::Reporter,
];

pub const DOMAIN: &str = "maildrop.test";

pub struct Pipeline {
    pub nats: NatsServer,
    pub redis: RedisServer,
    pub smtp: SocketAddr,
    pub http: SocketAddr,
    /// Each stage's ops endpoints (`/healthz`, `/readyz`, `/metrics`), on free ports; the
    /// gateway serves them on [`Pipeline::http`].
    pub ops: HashMap<Stage, SocketAddr>,
    /// Extra flags for every stage (each stage's parser sees only the flags it knows: pass
    /// stage-specific flags with [`Pipeline::with_flags`]).
    flags: HashMap<Stage, Vec<String>>,
    running: HashMap<Stage, (CancellationToken, JoinHandle<()>)>,
    /// Filters started beside the pipeline's own ([`Pipeline::start_extra_filter`]).
    extra_filters: Vec<(CancellationToken, JoinHandle<()>)>,
    pub http_client: reqwest::Client,
}

fn common(nats: &str) -> Vec<String> {
    vec![
        "--nats-url".into(),
        nats.into(),
        "--duplicate-window".into(),
        "2m".into(),
    ]
}

impl Pipeline {
    /// Servers and every stage.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(HashMap::new(), &ALL).await
    }

    /// Servers, and only `stages`, with extra `flags` per stage.
    pub async fn start_with(
        flags: HashMap<Stage, Vec<String>>,
        stages: &[Stage],
    ) -> anyhow::Result<Self> {
        maildrop_testkit::init_tracing();
        let nats = NatsServer::start().await?;
        let redis = RedisServer::start().await?;
        let smtp = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
        let http = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
        let mut ops = HashMap::new();
        for stage in [
            Stage::Ingest,
            Stage::Filter,
            Stage::StoreWriter,
            Stage::Reporter,
        ] {
            ops.insert(stage, TcpListener::bind("127.0.0.1:0").await?.local_addr()?);
        }
        let mut pipeline = Self {
            nats,
            redis,
            smtp,
            http,
            ops,
            flags,
            running: HashMap::new(),
            extra_filters: Vec::new(),
            http_client: reqwest::Client::new(),
        };
        for stage in stages {
            pipeline.start_stage(*stage).await?;
        }
        Ok(pipeline)
    }

    fn args(&self, stage: Stage) -> Vec<String> {
        let mut args = vec!["maildrop-test".to_owned()];
        args.extend(common(&self.nats.url()));
        if let Some(addr) = self.ops.get(&stage) {
            args.extend(["--ops-addr".into(), addr.to_string()]);
        }
        let redis = vec!["--redis-url".to_owned(), self.redis.url()];
        let consumer = vec![
            "--ack-wait".to_owned(),
            "3s".to_owned(),
            "--max-deliver".to_owned(),
            "3".to_owned(),
        ];
        match stage {
            Stage::Ingest => {
                args.extend(redis);
                args.extend(["--domains".into(), DOMAIN.into()]);
            }
            Stage::Filter => {
                args.extend(redis);
                args.extend(["--domains".into(), DOMAIN.into()]);
                args.extend(consumer);
                // Tests never ask the internet: no DNS unless a test brings its own server.
                let own = self
                    .flags
                    .get(&stage)
                    .is_some_and(|f| f.iter().any(|a| a == "--dns-servers"));
                if !own {
                    args.extend(["--dns-servers".into(), "off".into()]);
                }
            }
            Stage::StoreWriter => {
                args.extend(redis);
                args.extend(consumer);
            }
            Stage::Gateway => {
                args.extend(redis);
                args.extend(["--domains".into(), DOMAIN.into()]);
                // Tests poll the API far faster than a person; the limiter has its own test.
                let own = self
                    .flags
                    .get(&stage)
                    .is_some_and(|f| f.iter().any(|a| a == "--rate-limit"));
                if !own {
                    args.extend(["--rate-limit".into(), "off".into()]);
                }
            }
            Stage::Reporter => {
                args.extend(redis);
                args.extend(consumer);
            }
        }
        args.extend(self.flags.get(&stage).cloned().unwrap_or_default());
        args
    }

    /// Starts one stage (again). For the listeners, on the same address as before.
    pub async fn start_stage(&mut self, stage: Stage) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.running.contains_key(&stage),
            "{stage:?} is already running"
        );
        let cancel = CancellationToken::new();
        let args = self.args(stage);
        let c = cancel.clone();
        let handle = match stage {
            Stage::Ingest => {
                let config = maildrop_ingest::Config::try_parse_from(args)?;
                let listener = TcpListener::bind(self.smtp)
                    .await
                    .context("re-binding SMTP")?;
                tokio::spawn(async move {
                    maildrop_ingest::run(config, listener, c)
                        .await
                        .expect("ingest runs")
                })
            }
            Stage::Filter => {
                let config = maildrop_filter::Config::try_parse_from(args)?;
                tokio::spawn(
                    async move { maildrop_filter::run(config, c).await.expect("filter runs") },
                )
            }
            Stage::StoreWriter => {
                let config = maildrop_store_writer::Config::try_parse_from(args)?;
                tokio::spawn(async move {
                    maildrop_store_writer::run(config, c)
                        .await
                        .expect("store-writer runs")
                })
            }
            Stage::Gateway => {
                let config = maildrop_gateway::Config::try_parse_from(args)?;
                let listener = TcpListener::bind(self.http)
                    .await
                    .context("re-binding HTTP")?;
                tokio::spawn(async move {
                    maildrop_gateway::run(config, listener, c)
                        .await
                        .expect("gateway runs")
                })
            }
            Stage::Reporter => {
                let config = maildrop_reporter::Config::try_parse_from(args)?;
                tokio::spawn(async move {
                    maildrop_reporter::run(config, c)
                        .await
                        .expect("reporter runs")
                })
            }
        };
        self.running.insert(stage, (cancel, handle));
        if stage == Stage::Gateway {
            let url = self.url("/healthz");
            let client = self.http_client.clone();
            wait_until(Duration::from_secs(20), "the gateway to serve", || {
                let (url, client) = (url.clone(), client.clone());
                async move { client.get(url).send().await.ok().map(|_| ()) }
            })
            .await?;
        }
        if stage == Stage::Ingest {
            let addr = self.smtp;
            // Behind PROXY protocol the test is a trusted peer and must say who the client is
            // before the ingest greets: `UNKNOWN` means "the peer itself".
            let proxy = self
                .flags
                .get(&stage)
                .is_some_and(|f| f.iter().any(|a| a == "--proxy-protocol"));
            wait_until(
                Duration::from_secs(20),
                "the ingest to greet",
                || async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
                    if proxy {
                        s.write_all(b"PROXY UNKNOWN\r\n").await.ok()?;
                    }
                    let mut buf = [0u8; 3];
                    s.read_exact(&mut buf).await.ok()?;
                    (&buf == b"220").then_some(())
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Starts another filter instance beside the pipeline's (e.g. `--shadow` with a candidate rule
    /// file): the filter's arguments plus `flags`, with no ops endpoints. It runs until the test ends.
    pub async fn start_extra_filter(&mut self, flags: &[&str]) -> anyhow::Result<()> {
        let mut args = self.args(Stage::Filter);
        if let Some(i) = args.iter().position(|a| a == "--ops-addr") {
            args[i + 1] = "off".to_owned();
        }
        args.extend(flags.iter().map(|f| (*f).to_owned()));
        let config = maildrop_filter::Config::try_parse_from(args)?;
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let handle = tokio::spawn(async move {
            maildrop_filter::run(config, c)
                .await
                .expect("extra filter runs")
        });
        self.extra_filters.push((cancel, handle));
        Ok(())
    }

    /// Replaces the extra flags of `stage` for its next start (e.g. a subcommand to run once).
    pub fn set_flags(&mut self, stage: Stage, flags: Vec<String>) {
        self.flags.insert(stage, flags);
    }

    /// Stops one stage gracefully and waits for it.
    pub async fn stop_stage(&mut self, stage: Stage) -> anyhow::Result<()> {
        let (cancel, handle) = self.running.remove(&stage).context("stage not running")?;
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .context("stage did not stop within 30 s")??;
        Ok(())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// The URL of `path` on `stage`'s ops endpoints (the gateway's own port for the gateway).
    pub fn ops_url(&self, stage: Stage, path: &str) -> String {
        let addr = self.ops.get(&stage).copied().unwrap_or(self.http);
        format!("http://{addr}{path}")
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.http)
    }

    pub fn address(&self, mailbox: &str) -> String {
        format!("{mailbox}@{DOMAIN}")
    }

    /// `GET` a JSON document; returns the status and the body.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let response = self.http_client.get(self.url(path)).send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    }

    /// The raw bytes of a message, as `…/raw` serves them.
    pub async fn raw(&self, mailbox: &str, id: &str) -> anyhow::Result<Vec<u8>> {
        let path = format!("/api/mailboxes/{mailbox}/messages/{id}/raw");
        let response = self.http_client.get(self.url(&path)).send().await?;
        anyhow::ensure!(response.status() == 200, "{path}: {}", response.status());
        Ok(response.bytes().await?.to_vec())
    }

    /// The summaries of a mailbox, newest first.
    pub async fn inbox(&self, mailbox: &str) -> anyhow::Result<Vec<Value>> {
        let (status, body) = self.get_json(&format!("/api/mailboxes/{mailbox}")).await?;
        anyhow::ensure!(status == 200, "listing {mailbox}: {status} {body}");
        Ok(body["messages"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until `mailbox` lists `n` messages; returns them.
    pub async fn wait_for_inbox(
        &self,
        mailbox: &str,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Value>> {
        wait_until(
            timeout,
            &format!("{n} messages in {mailbox}"),
            || async move {
                let list = self.inbox(mailbox).await.ok()?;
                (list.len() >= n).then_some(list)
            },
        )
        .await
    }

    /// Waits until `/api/stats` satisfies `check`.
    pub async fn wait_for_stats(
        &self,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let check = &check;
        wait_until(Duration::from_secs(30), what, || async move {
            let (status, stats) = self.get_json("/api/stats").await.ok()?;
            (status == 200 && check(&stats)).then_some(stats)
        })
        .await
    }

    /// Waits until the JSON at `path` satisfies `check`; returns it.
    pub async fn wait_for_json(
        &self,
        path: &str,
        check: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let check = &check;
        wait_until(Duration::from_secs(30), path, || async move {
            let (status, body) = self.get_json(path).await.ok()?;
            (status == 200 && check(&body)).then_some(body)
        })
        .await
    }

    /// Sends a small message to `mailbox` over SMTP.
    pub async fn send(
        &self,
        mailbox: &str,
        subject: &str,
    ) -> Result<String, lettre::transport::smtp::Error> {
        maildrop_testkit::smtp::send_mail(
            self.smtp,
            "sender@example.org",
            &self.address(mailbox),
            subject,
            "Hello from the test.",
        )
        .await
    }
}
