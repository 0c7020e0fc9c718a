//! The operations endpoints every stage serves: `/healthz`, `/readyz` and `/metrics`.
//!
//! - `/healthz`: the process is alive and its runtime answers. Restart it when this fails.
//! - `/readyz`: the stage can do its work: its NATS connection is up and, for a stage that needs
//!   Redis, Redis answers a `PING` within [`PING_TIMEOUT`]. `503` with a JSON reason otherwise, so
//!   an orchestrator holds traffic (or a rollout) back. Until the stage has connected, it is not
//!   ready.
//! - `/metrics`: Prometheus text ([`crate::metrics`]).
//!
//! The stages without an HTTP port of their own (ingest, filter, store-writer, reporter) serve
//! these on `MAILDROP_OPS_ADDR` (`off` to serve none); each has its own default port, so all of
//! them run side by side on one machine (`make run`). The gateway serves them on its HTTP port.
//!
//! The server is started before the stage connects (so `/healthz` answers and `/readyz` says why
//! not while it waits for NATS), and stops with the stage's cancellation token, or when the
//! [`OpsServer`] is dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use clap::Args;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Default `MAILDROP_OPS_ADDR` of each stage (the gateway uses its HTTP port).
pub const DEFAULT_INGEST_ADDR: &str = "127.0.0.1:9101";
pub const DEFAULT_FILTER_ADDR: &str = "127.0.0.1:9102";
pub const DEFAULT_STORE_WRITER_ADDR: &str = "127.0.0.1:9103";
pub const DEFAULT_REPORTER_ADDR: &str = "127.0.0.1:9104";

/// How long `/readyz` waits for Redis to answer `PING`.
pub const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the ops endpoints are served, or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpsAddr {
    Off,
    At(SocketAddr),
}

/// `host:port` (an IP address and a port), or `off`.
pub fn parse_addr(s: &str) -> Result<OpsAddr, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Ok(OpsAddr::Off);
    }
    s.parse().map(OpsAddr::At).map_err(|_| {
        format!("{s:?} is neither an IP address with a port (127.0.0.1:9101) nor `off`")
    })
}

/// The ops server's flag. A stage sets its own default with
/// `#[command(mut_arg("ops_addr", ops::default_at(ops::DEFAULT_…_ADDR)))]` on its `Config`.
#[derive(Debug, Clone, Args)]
pub struct OpsArgs {
    /// Address of the operations endpoints: /healthz, /readyz, /metrics (Prometheus). `off`
    /// serves none.
    #[arg(id = "ops_addr", long = "ops-addr", env = "MAILDROP_OPS_ADDR", value_parser = parse_addr)]
    pub addr: OpsAddr,
}

/// Gives `--ops-addr` a stage's default (see [`OpsArgs`]).
pub fn default_at(addr: &'static str) -> impl FnOnce(clap::Arg) -> clap::Arg {
    move |arg| arg.default_value(addr).required(false)
}

/// What `/readyz` checks: a stage hands over its real clients once it has connected.
#[derive(Clone, Default)]
pub struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    needs_redis: bool,
    nats: OnceLock<async_nats::Client>,
    redis: OnceLock<maildrop_store::Redis>,
}

impl Readiness {
    /// A stage that needs NATS only.
    pub fn nats() -> Self {
        Self::default()
    }

    /// A stage that needs NATS and Redis.
    pub fn nats_and_redis() -> Self {
        Self {
            inner: Arc::new(Inner {
                needs_redis: true,
                ..Inner::default()
            }),
        }
    }

    /// The stage's NATS client, once connected.
    pub fn set_nats(&self, client: &async_nats::Client) {
        let _ = self.inner.nats.set(client.clone());
    }

    /// The stage's Redis connection, once connected.
    pub fn set_redis(&self, conn: &maildrop_store::Redis) {
        let _ = self.inner.redis.set(conn.clone());
    }

    /// Every dependency's state (`"ok"` or why not) and whether all are ok.
    pub async fn check(&self) -> (bool, BTreeMap<&'static str, String>) {
        let mut checks = BTreeMap::new();
        checks.insert(
            "nats",
            match self.inner.nats.get() {
                None => "not connected yet".to_owned(),
                Some(c) => match c.connection_state() {
                    async_nats::connection::State::Connected => "ok".to_owned(),
                    other => format!("connection {other}"),
                },
            },
        );
        if self.inner.needs_redis {
            let state = match self.inner.redis.get() {
                None => "not connected yet".to_owned(),
                Some(conn) => ping(conn.clone()).await,
            };
            checks.insert("redis", state);
        }
        (checks.values().all(|v| v == "ok"), checks)
    }
}

async fn ping(mut conn: maildrop_store::Redis) -> String {
    let cmd = redis::cmd("PING");
    let pong = cmd.query_async::<String>(&mut conn);
    match tokio::time::timeout(PING_TIMEOUT, pong).await {
        Ok(Ok(_)) => "ok".to_owned(),
        Ok(Err(e)) => format!("PING failed: {e}"),
        Err(_) => format!("no answer to PING within {PING_TIMEOUT:?}"),
    }
}

/// The ops server could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on MAILDROP_OPS_ADDR={addr}")]
pub struct OpsError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// A running ops server; stops when dropped or when its token is cancelled.
pub struct OpsServer {
    addr: SocketAddr,
    _stop: DropGuard,
}

impl OpsServer {
    /// The address it listens on (the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// The three routes, for a stage's ops server. (The gateway mounts [`readyz_response`] and
/// [`metrics_response`] on its own router.)
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_response))
        .with_state(readiness)
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(readiness): State<Readiness>) -> (StatusCode, Json<Value>) {
    let (ready, checks) = readiness.check().await;
    readyz_response(ready, &checks)
}

/// `/readyz`'s answer: `200 {"status":"ready",…}`, or `503` with the first failing check as the
/// `reason`.
pub fn readyz_response(
    ready: bool,
    checks: &BTreeMap<&'static str, String>,
) -> (StatusCode, Json<Value>) {
    if ready {
        return (
            StatusCode::OK,
            Json(json!({ "status": "ready", "checks": checks })),
        );
    }
    let reason = checks
        .iter()
        .find(|(_, v)| *v != "ok")
        .map(|(k, v)| format!("{k}: {v}"))
        .unwrap_or_default();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "not_ready", "reason": reason, "checks": checks })),
    )
}

/// `/metrics`: the Prometheus text format.
pub async fn metrics_response() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
}

/// Starts the ops server for `stage` (installing the metrics recorder), or nothing when `off`.
/// Binding fails now, with the variable's name.
pub async fn start(
    args: &OpsArgs,
    stage: &'static str,
    readiness: Readiness,
    cancel: &CancellationToken,
) -> Result<Option<OpsServer>, OpsError> {
    let OpsAddr::At(addr) = args.addr else {
        return Ok(None);
    };
    crate::metrics::install();
    build_info(stage);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| OpsError { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| OpsError { addr, source })?;
    let stop = cancel.child_token();
    let app = router(readiness);
    let until = stop.clone();
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(until.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "Ops server failed.");
        }
    });
    tracing::info!(%addr, stage, "Ops endpoints listening (/healthz, /readyz, /metrics).");
    Ok(Some(OpsServer {
        addr,
        _stop: stop.drop_guard(),
    }))
}

/// `maildrop_build_info{stage, version} 1`: which stages a scrape sees, and their versions.
pub fn build_info(stage: &'static str) {
    metrics::gauge!("maildrop_build_info", "stage" => stage, "version" => env!("CARGO_PKG_VERSION"))
        .set(1.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    #[command(mut_arg("ops_addr", default_at(DEFAULT_FILTER_ADDR)))]
    struct Cli {
        #[command(flatten)]
        ops: OpsArgs,
    }

    #[test]
    fn a_stage_gives_its_own_default_and_off_turns_it_off() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.ops.addr, OpsAddr::At("127.0.0.1:9102".parse().unwrap()));
        let cli = Cli::try_parse_from(["x", "--ops-addr", "off"]).unwrap();
        assert_eq!(cli.ops.addr, OpsAddr::Off);
        let err = Cli::try_parse_from(["x", "--ops-addr", "localhost"]).unwrap_err();
        assert!(err.to_string().contains("nor `off`"), "{err}");
    }

    #[test]
    fn not_ready_names_the_failing_check() {
        let mut checks = BTreeMap::new();
        checks.insert("nats", "ok".to_owned());
        checks.insert("redis", "no answer".to_owned());
        let (status, Json(body)) = readyz_response(false, &checks);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["reason"], "redis: no answer");
        let (status, Json(body)) = readyz_response(true, &BTreeMap::new());
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ready");
    }

    #[tokio::test]
    async fn before_connecting_a_stage_is_not_ready() {
        let (ready, checks) = Readiness::nats_and_redis().check().await;
        assert!(!ready);
        assert_eq!(checks["nats"], "not connected yet");
        assert_eq!(checks["redis"], "not connected yet");
    }
}
