//! maildrop.cc's older REST API, `https://api.maildrop.cc/v2/…`, still called by third-party
//! clients and scripts.
//!
//! maildrop.cc never documented v2 publicly; its shape is taken from the clients that use it:
//! - `GET /v2/mailbox/{name}` → `{"altinbox", "messages": [{"id", "from", "to", "subject",
//!   "date"}]}`: say4n/maildrop.cli `maildrop/inbox.go`
//!   (<https://github.com/say4n/maildrop.cli/blob/master/maildrop/inbox.go>), whose `to` is the
//!   mailbox name per hedcet/maildrop's README (<https://github.com/hedcet/maildrop>).
//! - `GET /v2/mailbox/{name}/{id}` → `{"id", "from", "to", "subject", "date", "body", "html"}`,
//!   `body` the raw message: hedcet/maildrop `main.js` and README; the web client that writes
//!   `html` into a frame and reads `messages`, `from`, `subject`, `date`.
//! - `DELETE /v2/mailbox/{name}/{id}` → `{"deleted": true}`: hedcet/maildrop `main.js`.
//! - Clients send an `x-api-key` header (a key published in maildrop.cc's own page script); we
//!   accept any key or none.
//!
//! **Not found in any source**: `GET /v2/statistics`. We answer `{"blocked", "saved"}`, the field
//! names of the GraphQL `Statistics` type, with the same meaning.
//!
//! **Chosen where clients are silent**: an id the mailbox does not have is our `404
//! message_not_found`; deleting one answers `200 {"deleted": false}` (a cleanup script racing an
//! eviction should not fail); a bad mailbox name or id is our `400` JSON error. Ids are our ULIDs,
//! the alias is ours (see [`super::graphql`] for both), dates are ISO 8601 in UTC with
//! milliseconds, and `html` is sanitised, with a plain-text body HTML-escaped in its place.

use axum::Json;
use axum::extract::{Path, State};
use maildrop_contract::{Mailbox, MessageId, MessageSummary};
use serde::Serialize;

use super::{Statistics, html_or_text, iso_date};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Serialize)]
pub struct Inbox {
    pub altinbox: String,
    /// Newest first.
    pub messages: Vec<Entry>,
}

/// One message in a listing.
#[derive(Debug, Serialize)]
pub struct Entry {
    pub id: String,
    pub from: String,
    /// The mailbox name.
    pub to: String,
    pub subject: String,
    pub date: String,
}

impl From<MessageSummary> for Entry {
    fn from(s: MessageSummary) -> Self {
        Self {
            id: s.id.to_string(),
            from: s.from,
            to: s.mailbox.to_string(),
            subject: s.subject,
            date: iso_date(s.received_ms),
        }
    }
}

/// One message in full.
#[derive(Debug, Serialize)]
pub struct Message {
    #[serde(flatten)]
    pub entry: Entry,
    /// The raw message as received.
    pub body: String,
    pub html: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Deleted {
    pub deleted: bool,
}

/// `GET /v2/mailbox/{name}`
pub async fn inbox(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Inbox>, ApiError> {
    let mailbox = Mailbox::parse(&name)?;
    let messages = state.mail.list(&mailbox).await?;
    let alias = state.reveal_alias(&mailbox).await?;
    Ok(Json(Inbox {
        altinbox: alias.to_string(),
        messages: messages.into_iter().map(Entry::from).collect(),
    }))
}

/// `GET /v2/mailbox/{name}/{id}`
pub async fn message(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<Message>, ApiError> {
    let mailbox = Mailbox::parse(&name)?;
    let id: MessageId = id.parse()?;
    let doc = state
        .mail
        .get(&mailbox, &id)
        .await?
        .ok_or(ApiError::MessageNotFound)?;
    // A message evicted between the two reads has no raw bytes left: it is gone, say so.
    let raw = state
        .mail
        .raw(&mailbox, &id)
        .await?
        .ok_or(ApiError::MessageNotFound)?;
    let html = html_or_text(&doc);
    Ok(Json(Message {
        entry: Entry::from(doc.summary),
        body: String::from_utf8_lossy(&raw).into_owned(),
        html,
    }))
}

/// `DELETE /v2/mailbox/{name}/{id}`: `{"deleted": true}`, or `false` if the mailbox did not have it.
pub async fn delete(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<Deleted>, ApiError> {
    // The REST handler owns deleting: the store, the `deleted` event, the log line.
    match crate::routes::message::delete(State(state), Path((name, id))).await {
        Ok(_) => Ok(Json(Deleted { deleted: true })),
        Err(ApiError::MessageNotFound) => Ok(Json(Deleted { deleted: false })),
        Err(e) => Err(e),
    }
}

/// `GET /v2/statistics`: `{"blocked", "saved"}`.
pub async fn statistics(State(state): State<AppState>) -> Result<Json<Statistics>, ApiError> {
    let stats = state.stats.read().await?;
    Ok(Json(Statistics::from(&stats)))
}
