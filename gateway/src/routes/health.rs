//! Liveness and readiness.
//!
//! `/healthz` says the process serves HTTP. `/readyz` says it can do its job: Redis answers and
//! the NATS connection is up; a load balancer should send no traffic to a gateway that is not ready.

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
    let status = if redis && nats {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "redis": redis, "nats": nats })))
}
