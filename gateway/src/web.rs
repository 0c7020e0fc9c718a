//! The web page: four files embedded in the binary, served with strict security headers.
//!
//! No build step, no third-party origin. The Content-Security-Policy allows only our own scripts,
//! styles and connections; mail HTML is never part of our pages: it is served by its own route
//! with its own, stricter policy and shown in a sandboxed frame.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

pub const INDEX_HTML: &str = include_str!("../web/index.html");
pub const APP_JS: &str = include_str!("../web/app.js");
pub const APP_CSS: &str = include_str!("../web/app.css");
pub const FAVICON_SVG: &str = include_str!("../web/favicon.svg");

/// The policy of our own pages.
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; frame-src 'self'; child-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The policy of a message's HTML: no script, nothing remote, only inline styles and inline images.
pub const MAIL_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox allow-popups allow-popups-to-escape-sandbox";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

pub async fn favicon() -> Response {
    asset("image/svg+xml", FAVICON_SVG)
}
