//! Service-wide information: statistics and the page's configuration.

use axum::Json;
use axum::extract::State;
use maildrop_store::Stats;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /api/stats`: the reporter's counters.
pub async fn stats(State(state): State<AppState>) -> Result<Json<Stats>, ApiError> {
    Ok(Json(state.stats.read().await?))
}

/// `GET /api/config`: what the web page needs to know (our domains).
pub async fn config(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "domains": *state.domains }))
}
