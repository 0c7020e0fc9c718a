//! Compatibility with maildrop.cc's public APIs, so that an existing client moves to us by changing
//! one URL.
//!
//! - [`graphql`]: `POST`/`GET /graphql`, the API maildrop.cc documents today
//!   (<https://docs.maildrop.cc/api-reference/overview>): the same operations, argument names,
//!   types and nullability, so documented queries and generated clients keep working.
//! - [`v2`]: `/v2/mailbox/…` and `/v2/statistics`, the older REST API that third-party clients
//!   still call (`https://api.maildrop.cc/v2/…`).
//!
//! Both are thin translations onto the same store, alias and event code as our own `/api`: they
//! own no storage and no business rule, only the old field names and the old edge cases (see each
//! module for the deviations we chose, and why).
//!
//! [`router`] is merged into the application by `routes::app`, so the application's layers (rate
//! limit, CORS, security headers) apply to it as to `/api`. CORS matters here: maildrop.cc's API was
//! called from web pages on other origins, and v2 clients send an `x-api-key` header (which we
//! ignore), so the preflight must allow `POST`, `DELETE`, `content-type` and `x-api-key`.

pub mod graphql;
pub mod v2;

use axum::Router;
use axum::routing::get;
use maildrop_store::{Stats, StoredMessage};
use serde::Serialize;
use time::OffsetDateTime;

use crate::routes::message::sanitize;
use crate::state::AppState;

/// The compatibility routes: `/graphql` and `/v2/…`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/v2/mailbox/{mailbox}", get(v2::inbox))
        .route(
            "/v2/mailbox/{mailbox}/{id}",
            get(v2::message).delete(v2::delete),
        )
        .route("/v2/statistics", get(v2::statistics))
        .layer(axum::Extension(graphql::schema()))
}

/// maildrop.cc's statistics: `blocked` is what the filter rejected, `saved` what was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, async_graphql::SimpleObject)]
pub struct Statistics {
    /// Messages the spam filter refused.
    pub blocked: Option<u64>,
    /// Clean messages delivered to a mailbox.
    pub saved: Option<u64>,
}

impl From<&Stats> for Statistics {
    fn from(stats: &Stats) -> Self {
        Self {
            blocked: Some(stats.rejected),
            saved: Some(stats.stored),
        }
    }
}

/// The receive time as maildrop.cc wrote it: RFC 3339 / ISO 8601 in UTC with milliseconds, like
/// JavaScript's `toISOString()` (`2023-02-09T23:51:14.411Z`).
pub fn iso_date(received_ms: u64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    let nanos = i128::from(received_ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_default()
}

/// maildrop.cc's `html`: "if the message contained a MIME multipart html, that html data is here,
/// otherwise this field contains the plain text body". Ours is sanitised HTML; a plain-text body is
/// HTML-escaped, because clients write this field straight into a page or frame.
pub fn html_or_text(msg: &StoredMessage) -> Option<String> {
    match (&msg.html, &msg.text) {
        (Some(html), _) => Some(sanitize(html)),
        (None, Some(text)) => Some(escape_html(text)),
        (None, None) => None,
    }
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_look_like_javascript_iso_strings() {
        assert_eq!(iso_date(1_675_986_674_411), "2023-02-09T23:51:14.411Z");
        assert_eq!(iso_date(1_675_986_674_000), "2023-02-09T23:51:14.000Z");
        assert_eq!(iso_date(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn plain_text_cannot_become_markup() {
        assert_eq!(
            escape_html(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }
}
