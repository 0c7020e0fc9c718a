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
    #[error("no such message")]
    MessageNotFound,
    #[error("no such route")]
    RouteNotFound,
    #[error("storage is unavailable, try again shortly")]
    StoreUnavailable(#[source] StoreError),
    #[error("the message bus is unavailable, try again shortly")]
    BusUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidMailbox(_) | Self::InvalidId(_) => StatusCode::BAD_REQUEST,
            Self::MessageNotFound | Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::StoreUnavailable(_) | Self::BusUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidMailbox(_) => "invalid_mailbox",
            Self::InvalidId(_) => "invalid_id",
            Self::MessageNotFound => "message_not_found",
            Self::RouteNotFound => "not_found",
            Self::StoreUnavailable(_) => "store_unavailable",
            Self::BusUnavailable(_) => "bus_unavailable",
        }
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
        (status, Json(body)).into_response()
    }
}
