//! The gateway stage: the HTTP API, live push, and the web page.
//!
//! - [`routes`]: one file per group of routes; [`app`] assembles them into a `Router`.
//! - [`hub`]: live push. A gateway subscribes (core NATS) to a mailbox's subject only while someone
//!   watches it, and fans events out to every watcher through a bounded broadcast channel, so a slow
//!   watcher lags alone and is told to resync.
//! - [`error`]: [`ApiError`](error::ApiError), JSON errors with a stable code, so handlers use `?`.
//! - [`web`]: the page's files, embedded in the binary, and the security headers.

pub mod compat;
pub mod config;
pub mod error;
pub mod guard;
pub mod http_metrics;
pub mod hub;
pub mod openapi;
pub mod routes;
pub mod state;
pub mod stats_feed;
pub mod watch;
pub mod web;

use std::sync::Arc;

pub use config::Config;
pub use routes::app;
pub use state::AppState;

use maildrop_runtime::{connect, streams};
use maildrop_store::{AliasStore, MailStore, StatsStore};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const STAGE: &str = "gateway";

/// Why the stage could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] connect::ConnectError),
    #[error(transparent)]
    Setup(#[from] streams::SetupError),
    #[error("cannot open the MAILBOX stream")]
    MailboxStream(#[source] async_nats::jetstream::context::GetStreamError),
    #[error("HTTP server failed")]
    Serve(#[source] std::io::Error),
}

/// Serves HTTP on `listener` until `cancel` is cancelled.
pub async fn run(
    config: Config,
    listener: TcpListener,
    cancel: CancellationToken,
) -> Result<(), Error> {
    // The gateway serves /healthz, /readyz and /metrics on its own port (routes::health).
    maildrop_runtime::metrics::install();
    maildrop_runtime::ops::build_info(STAGE);
    let (client, js) =
        streams::connect(&config.nats, &config.streams, "maildrop-gateway", &cancel).await?;
    let mailbox_stream = js
        .get_stream(maildrop_contract::subject::MAILBOX_STREAM)
        .await
        .map_err(Error::MailboxStream)?;
    let redis = connect::redis(&config.redis.url, &cancel).await?;
    let state = AppState {
        mail: MailStore::new(redis.clone(), Default::default()),
        stats: StatsStore::new(redis.clone()),
        live_stats: stats_feed::spawn(StatsStore::new(redis.clone()), cancel.clone()),
        rate_limiter: config
            .rate_limit
            .0
            .map(|rate| maildrop_store::ratelimit::RateLimiter::new(redis.clone(), rate)),
        trusted_proxies: Arc::new(config.trusted_proxies.clone()),
        cors_origins: Arc::from(config.cors_origins.as_str()),
        watchers: Arc::new(guard::WatcherSlots::new(
            config.max_watchers_per_ip,
            config.max_watchers,
        )),
        aliases: AliasStore::new(redis),
        alias_key: config.alias_key.as_bytes().into(),
        alias_ttl: config.alias_ttl,
        js,
        hub: Arc::new(hub::Hub::new(
            client,
            mailbox_stream,
            config.ws_buffer,
            config.max_replay,
        )),
        domains: Arc::new(config.domains.domains.clone()),
        cancel: cancel.clone(),
    };
    let addr = listener.local_addr().map_err(Error::Serve)?;
    tracing::info!(%addr, "Gateway listening.");
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(cancel.cancelled_owned())
    .await
    .map_err(Error::Serve)
}
