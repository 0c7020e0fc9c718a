//! Service-wide information: statistics and the page's configuration.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
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

/// `GET /api/stats/events`: SSE, one `stats` event now and one per change.
pub async fn stats_events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.live_stats.clone();
    let changes = tokio_stream::wrappers::WatchStream::new(rx)
        .filter_map(|stats| async move { stats })
        .map(|stats| {
            Ok(Event::default()
                .event("stats")
                .json_data(stats)
                .unwrap_or_default())
        })
        .take_until(state.cancel.clone().cancelled_owned());
    Sse::new(changes).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
