//! Liveness, readiness and metrics.
//!
//! `/healthz` says the process serves HTTP. `/readyz` says it can do its job: Redis answers and
//! the NATS connection is up; a load balancer should send no traffic to a gateway that is not ready
//! (`503` with a `reason`). `/metrics` is the Prometheus text of `maildrop_runtime::metrics`. The
//! other stages serve the same three on `MAILDROP_OPS_ADDR` (`maildrop_runtime::ops`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::state::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let redis = state.mail.ping().await.is_ok();
    let nats = matches!(
        state.js.client().connection_state(),
        async_nats::connection::State::Connected
    );
    if redis && nats {
        return (
            StatusCode::OK,
            Json(json!({ "status": "ready", "redis": redis, "nats": nats })),
        );
    }
    let reason = if nats {
        "redis: no answer to PING"
    } else {
        "nats: not connected"
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "not_ready", "reason": reason, "redis": redis, "nats": nats })),
    )
}

pub async fn metrics() -> impl axum::response::IntoResponse {
    maildrop_runtime::ops::metrics_response().await
}
