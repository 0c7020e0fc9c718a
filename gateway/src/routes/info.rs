//! Service-wide information: statistics and the page's configuration.
//!
//! `/api/stats` adds to the all-time counters the last `?minutes=` (default 60, at most a day) and
//! `?hours=` (default 48, at most 31 days) of the per-minute and per-hour series, today's top
//! `?top=` (default 10) client IPs and sender domains of rejected mail, and the number of
//! mailboxes that received mail this hour and today, and under `shadow` how a shadow filter's
//! candidate rule set compared with production's verdicts. The live feed (`/api/stats/events`) carries
//! the counters only: it is pushed every second and should stay small.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use maildrop_store::Stats;
use maildrop_store::series::{Active, Point, Ranked, Resolution, TopKind};
use maildrop_store::shadow::ShadowStats;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

/// Buckets of each series and entries of each top list when the query does not say.
pub const DEFAULT_MINUTES: usize = 60;
pub const DEFAULT_HOURS: usize = 48;
pub const DEFAULT_TOP: usize = 10;
pub const MAX_TOP: usize = 100;

/// `?minutes=&hours=&top=`: how much of the series and top lists to return.
#[derive(Debug, Default, Deserialize)]
pub struct StatsQuery {
    minutes: Option<String>,
    hours: Option<String>,
    top: Option<String>,
}

fn count(
    value: Option<&str>,
    default: usize,
    max: usize,
    name: &'static str,
    expected: &'static str,
) -> Result<usize, ApiError> {
    match value {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or(ApiError::InvalidParameter { name, expected }),
    }
}

/// The reporter's counters, their recent history, the day's top rejected sources and the
/// mailboxes that received mail lately.
#[derive(Debug, Serialize)]
pub struct StatsDocument {
    #[serde(flatten)]
    pub counters: Stats,
    pub series: Series,
    pub top: Top,
    pub active_mailboxes: Active,
    /// Shadow mode: production and shadow verdicts of the same messages, compared.
    pub shadow: ShadowStats,
}

/// Per-minute and per-hour buckets, oldest first, the last one the current (partial) bucket.
#[derive(Debug, Serialize)]
pub struct Series {
    pub minute: Vec<Point>,
    pub hour: Vec<Point>,
}

/// Today's (UTC) most frequent client IPs and sender domains of rejected mail and refused attempts.
#[derive(Debug, Serialize)]
pub struct Top {
    pub ips: Vec<Ranked>,
    pub domains: Vec<Ranked>,
}

/// `GET /api/stats`: the reporter's counters, series and top lists.
pub async fn stats(
    State(state): State<AppState>,
    Query(query): Query<StatsQuery>,
) -> Result<Json<StatsDocument>, ApiError> {
    let minutes = count(
        query.minutes.as_deref(),
        DEFAULT_MINUTES,
        Resolution::Minute.max_points(),
        "minutes",
        "a number of minutes from 0 to 1440",
    )?;
    let hours = count(
        query.hours.as_deref(),
        DEFAULT_HOURS,
        Resolution::Hour.max_points(),
        "hours",
        "a number of hours from 0 to 744",
    )?;
    let top = count(
        query.top.as_deref(),
        DEFAULT_TOP,
        MAX_TOP,
        "top",
        "a number of entries from 0 to 100",
    )?;
    let now = maildrop_contract::now_ms();
    let stats = &state.stats;
    let (counters, minute, hour, ips, domains, active, shadow) = tokio::try_join!(
        stats.read(),
        stats.series(Resolution::Minute, minutes, now),
        stats.series(Resolution::Hour, hours, now),
        stats.top(TopKind::Ip, now, top),
        stats.top(TopKind::Domain, now, top),
        stats.active(now),
        stats.shadow(),
    )?;
    Ok(Json(StatsDocument {
        counters,
        series: Series { minute, hour },
        top: Top { ips, domains },
        active_mailboxes: active,
        shadow,
    }))
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
