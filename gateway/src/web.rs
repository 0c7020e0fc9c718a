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

/// The policy of our own pages (`font-src 'none'`: system fonts only, no web fonts).
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
font-src 'none'; connect-src 'self'; frame-src 'self'; child-src 'self'; frame-ancestors 'none'; \
base-uri 'none'; form-action 'self'";

/// The policy of a message's HTML: no script, nothing remote, only inline styles and inline images.
pub const MAIL_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox allow-popups allow-popups-to-escape-sandbox";

/// The same once the reader allowed this message's remote content: images, style sheets and
/// fonts from any `http:`/`https:` host. Still no script, no frames, no connections.
pub const MAIL_CSP_REMOTE: &str = "default-src 'none'; style-src 'unsafe-inline' http: https:; \
img-src data: http: https:; font-src data: http: https:; frame-ancestors 'self'; base-uri 'none'; \
form-action 'none'; sandbox allow-popups allow-popups-to-escape-sandbox";

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

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    /// The budget for the whole page, gzipped.
    const BUDGET_BYTES: usize = 30 * 1024;

    fn gzipped_len(body: &str) -> usize {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(body.as_bytes()).expect("writes to memory");
        gz.finish().expect("writes to memory").len()
    }

    #[test]
    fn the_page_stays_under_its_size_budget() {
        let assets = [
            ("index.html", INDEX_HTML),
            ("app.js", APP_JS),
            ("app.css", APP_CSS),
            ("favicon.svg", FAVICON_SVG),
        ];
        let mut total = 0;
        for (name, body) in assets {
            let size = gzipped_len(body);
            // Printed so that `cargo test -- --nocapture` shows where the bytes go.
            println!("{name}: {} bytes, {size} gzipped", body.len());
            total += size;
        }
        println!("total: {total} bytes gzipped (budget {BUDGET_BYTES})");
        assert!(
            total < BUDGET_BYTES,
            "the page is {total} bytes gzipped, over its {BUDGET_BYTES}-byte budget"
        );
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        // No web fonts, no third-party origins: every URL the page names is our own.
        for (name, body) in [
            ("index.html", INDEX_HTML),
            ("app.css", APP_CSS),
            ("app.js", APP_JS),
        ] {
            // The SVG namespace is a name, not a request.
            let body = body.replace("http://www.w3.org/2000/svg", "");
            assert!(!body.contains("@font-face"), "{name} declares a web font");
            for scheme in ["http://", "https://", "//cdn"] {
                assert!(
                    !body.contains(scheme),
                    "{name} names a remote URL ({scheme})"
                );
            }
        }
        assert!(PAGE_CSP.contains("font-src 'none'"));
    }
}
