//! API errors: a status, a stable machine-readable code, and a sentence.
//!
//! Body: `{"error": {"code": "invalid_mailbox", "message": "…"}}`. Clients match on `code`; the
//! message is for people and may change.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maildrop_contract::id::InvalidMessageId;
use maildrop_contract::mailbox::InvalidMailbox;
use maildrop_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid mailbox name: {0}")]
    InvalidMailbox(#[from] InvalidMailbox),
    #[error("invalid message id: {0}")]
    InvalidId(#[from] InvalidMessageId),
    #[error("invalid parameter {name}: expected {expected}")]
    InvalidParameter {
        name: &'static str,
        expected: &'static str,
    },
    #[error("no such message")]
    MessageNotFound,
    #[error("no such attachment")]
    AttachmentNotFound,
    #[error("this attachment was not kept (too large, or attachments are stripped here)")]
    AttachmentStripped,
    #[error("no such route")]
    RouteNotFound,
    #[error("too many requests; try again in {} s", retry_after.as_secs().max(1))]
    RateLimited { retry_after: std::time::Duration },
    #[error("too many live feeds open from {scope}")]
    TooManyWatchers { scope: &'static str },
    #[error("storage is unavailable, try again shortly")]
    StoreUnavailable(#[source] StoreError),
    #[error("the message bus is unavailable, try again shortly")]
    BusUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidMailbox(_) | Self::InvalidId(_) | Self::InvalidParameter { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::MessageNotFound | Self::AttachmentNotFound | Self::RouteNotFound => {
                StatusCode::NOT_FOUND
            }
            Self::AttachmentStripped => StatusCode::GONE,
            Self::RateLimited { .. } | Self::TooManyWatchers { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::StoreUnavailable(_) | Self::BusUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidMailbox(_) => "invalid_mailbox",
            Self::InvalidId(_) => "invalid_id",
            Self::InvalidParameter { .. } => "invalid_parameter",
            Self::MessageNotFound => "message_not_found",
            Self::AttachmentNotFound => "attachment_not_found",
            Self::AttachmentStripped => "attachment_stripped",
            Self::RouteNotFound => "not_found",
            Self::RateLimited { .. } => "rate_limited",
            Self::TooManyWatchers { .. } => "too_many_watchers",
            Self::StoreUnavailable(_) => "store_unavailable",
            Self::BusUnavailable(_) => "bus_unavailable",
        }
    }
}

impl From<crate::hub::WatchError> for ApiError {
    fn from(e: crate::hub::WatchError) -> Self {
        Self::BusUnavailable(e.into())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::StoreUnavailable(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            let mut cause = String::new();
            let mut source = std::error::Error::source(&self);
            while let Some(s) = source {
                cause.push_str(&format!(": {s}"));
                source = s.source();
            }
            tracing::warn!(code = self.code(), error = %self, cause, "API request failed.");
        }
        let body = serde_json::json!({
            "error": { "code": self.code(), "message": self.to_string() }
        });
        let mut response = (status, Json(body)).into_response();
        if let Self::RateLimited { retry_after } = &self {
            // Whole seconds, rounded up: a client that waits this long finds a token.
            let secs = retry_after.as_millis().div_ceil(1000).max(1);
            if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        response
    }
}
