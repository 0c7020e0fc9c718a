//! The routes, one file per group, assembled by [`app`].
//!
//! | route | file |
//! |---|---|
//! | `GET /api/mailboxes/{box}`, `DELETE /api/mailboxes/{box}` | [`mailbox`] |
//! | `GET`/`DELETE /api/mailboxes/{box}/messages/{id}`, `…/raw`, `…/html` | [`message`] |
//! | `GET /api/mailboxes/{box}/ws`, `…/events` (SSE), `…/wait` | [`live`] |
//! | `GET /api/stats`, `GET /api/stats/events` (SSE), `GET /api/config` | [`info`] |
//! | `GET /healthz`, `GET /readyz`, `GET /metrics` | [`health`] |
//! | `/`, `/inbox/…`, `/assets/…` | [`crate::web`] |

pub mod health;
pub mod info;
pub mod live;
pub mod mailbox;
pub mod message;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::ApiError;
use crate::guard;
use crate::state::AppState;
use crate::web;

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route(
            "/mailboxes/{mailbox}",
            get(mailbox::list).delete(mailbox::clear),
        )
        .route(
            "/mailboxes/{mailbox}/messages/{id}",
            get(message::get).delete(message::delete),
        )
        .route("/mailboxes/{mailbox}/messages/{id}/raw", get(message::raw))
        .route(
            "/mailboxes/{mailbox}/messages/{id}/attachments/{index}",
            get(message::attachment),
        )
        .route(
            "/mailboxes/{mailbox}/messages/{id}/html",
            get(message::html),
        )
        .route("/mailboxes/{mailbox}/ws", get(live::websocket))
        .route("/mailboxes/{mailbox}/events", get(live::sse))
        .route("/mailboxes/{mailbox}/wait", get(live::wait))
        .route("/stats", get(info::stats))
        .route("/stats/events", get(info::stats_events))
        .route("/config", get(info::config))
        .route("/openapi.json", get(crate::openapi::document))
        .fallback(|| async { ApiError::RouteNotFound });
    // Everything a script can call is rate-limited per client and open to other origins.
    let public = Router::new()
        .nest("/api", api)
        .merge(crate::compat::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::rate_limit,
        ))
        .layer(cors(&state.cors_origins));
    Router::new()
        .merge(public)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/", get(web::index))
        .route("/inbox/{*rest}", get(web::index))
        .route("/assets/app.js", get(web::app_js))
        .route("/assets/app.css", get(web::app_css))
        .route("/assets/favicon.svg", get(web::favicon))
        .fallback(|| async { ApiError::RouteNotFound })
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::from_fn(crate::http_metrics::record))
        .with_state(state)
}

/// Browsers may call the API from other origins: it is public and uses no cookies.
fn cors(origins: &str) -> tower_http::cors::CorsLayer {
    use axum::http::Method;
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = if origins.trim() == "*" {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .split(',')
                .filter_map(|o| HeaderValue::from_str(o.trim()).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([header::RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(3600))
}

/// Headers every response carries; a response that set its own policy (the mail HTML) keeps it.
async fn security_headers(mut response: Response) -> impl IntoResponse {
    let h = response.headers_mut();
    let defaults: [(HeaderName, &'static str); 4] = [
        (header::CONTENT_SECURITY_POLICY, web::PAGE_CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in defaults {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}
