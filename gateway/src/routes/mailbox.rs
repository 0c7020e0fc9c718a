//! A mailbox as a whole: list it, empty it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use maildrop_contract::{Mailbox, MailboxEvent, MessageSummary, event};
use serde::Serialize;

use crate::error::ApiError;
use crate::routes::message::publish;
use crate::state::AppState;

#[derive(Serialize)]
pub struct Listing {
    pub mailbox: Mailbox,
    /// The mailbox's second address (mail to it lands here); see `maildrop_contract::alias`.
    pub alias: Mailbox,
    /// Newest first.
    pub messages: Vec<MessageSummary>,
}

/// `GET /api/mailboxes/{box}`
pub async fn list(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Listing>, ApiError> {
    let mailbox = Mailbox::parse(&name)?;
    let messages = state.mail.list(&mailbox).await?;
    let alias = state.reveal_alias(&mailbox).await?;
    Ok(Json(Listing {
        mailbox,
        alias,
        messages,
    }))
}

/// `DELETE /api/mailboxes/{box}`: removes every message; 204 even if it was empty.
pub async fn clear(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mailbox = Mailbox::parse(&name)?;
    let n = state.mail.clear(&mailbox).await?;
    if n > 0 {
        publish(
            &state,
            &MailboxEvent::Cleared {
                v: event::VERSION,
                mailbox: mailbox.clone(),
            },
        )
        .await?;
    }
    tracing::info!(mailbox = %mailbox, messages = n, "Mailbox emptied.");
    Ok(StatusCode::NO_CONTENT)
}
