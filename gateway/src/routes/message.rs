//! One message: its document, its raw bytes, its HTML, its deletion.

use async_nats::jetstream::message::PublishMessage;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maildrop_contract::envelope::header as md_header;
use maildrop_contract::{Mailbox, MailboxEvent, MessageId, event};
use maildrop_store::StoredMessage;

use crate::error::ApiError;
use crate::state::AppState;
use crate::web::MAIL_CSP;

fn parse(mailbox: &str, id: &str) -> Result<(Mailbox, MessageId), ApiError> {
    Ok((Mailbox::parse(mailbox)?, id.parse()?))
}

/// Mail HTML made safe to show: no script, no event handlers, no forms; links open in a new tab
/// without a referrer or a handle back to us.
pub fn sanitize(html: &str) -> String {
    ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer"))
        .set_tag_attribute_value("a", "target", "_blank")
        .clean(html)
        .to_string()
}

/// `GET /api/mailboxes/{box}/messages/{id}`: the stored document, HTML sanitised.
pub async fn get(
    State(state): State<AppState>,
    Path((mailbox, id)): Path<(String, String)>,
) -> Result<Json<StoredMessage>, ApiError> {
    let (mailbox, id) = parse(&mailbox, &id)?;
    let mut msg = state
        .mail
        .get(&mailbox, &id)
        .await?
        .ok_or(ApiError::MessageNotFound)?;
    msg.html = msg.html.as_deref().map(sanitize);
    Ok(Json(msg))
}

/// `GET …/raw`: the message as received, as an `.eml` download.
pub async fn raw(
    State(state): State<AppState>,
    Path((mailbox, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (mailbox, id) = parse(&mailbox, &id)?;
    let raw = state
        .mail
        .raw(&mailbox, &id)
        .await?
        .ok_or(ApiError::MessageNotFound)?;
    let disposition = format!("attachment; filename=\"{id}.eml\"");
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("message/rfc822"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .unwrap_or(HeaderValue::from_static("attachment")),
            ),
        ],
        raw,
    )
        .into_response())
}

/// `GET …/html`: the sanitised HTML body as its own document, for a sandboxed frame on our page,
/// under a policy that allows no script and nothing remote.
pub async fn html(
    State(state): State<AppState>,
    Path((mailbox, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (mailbox, id) = parse(&mailbox, &id)?;
    let msg = state
        .mail
        .get(&mailbox, &id)
        .await?
        .ok_or(ApiError::MessageNotFound)?;
    let body = msg.html.as_deref().map(sanitize).unwrap_or_default();
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(MAIL_CSP),
            ),
            (
                header::X_FRAME_OPTIONS,
                HeaderValue::from_static("SAMEORIGIN"),
            ),
        ],
        body,
    )
        .into_response())
}

/// `DELETE /api/mailboxes/{box}/messages/{id}`: 204, or 404 if the mailbox does not have it.
pub async fn delete(
    State(state): State<AppState>,
    Path((mailbox, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (mailbox, id) = parse(&mailbox, &id)?;
    if !state.mail.delete(&mailbox, &id).await? {
        return Err(ApiError::MessageNotFound);
    }
    publish(
        &state,
        &MailboxEvent::Deleted {
            v: event::VERSION,
            mailbox: mailbox.clone(),
            id,
        },
    )
    .await?;
    tracing::info!(msg_id = %id, mailbox = %mailbox, "Message deleted.");
    Ok(StatusCode::NO_CONTENT)
}

/// Publishes a mailbox event on its stream and waits for the stream to have it.
pub async fn publish(state: &AppState, event: &MailboxEvent) -> Result<(), ApiError> {
    let payload = serde_json::to_vec(event).map_err(|e| ApiError::BusUnavailable(e.into()))?;
    let mut msg = PublishMessage::build()
        .payload(payload.into())
        .message_id(event.dedupe_id());
    if let MailboxEvent::Deleted { id, .. } = event {
        msg = msg.header(md_header::ID, id.to_string().as_str());
    }
    state
        .js
        .send_publish(event.subject(), msg)
        .await
        .map_err(|e| ApiError::BusUnavailable(e.into()))?
        .await
        .map_err(|e| ApiError::BusUnavailable(e.into()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn scripts_handlers_and_remote_tricks_are_removed() {
        let dirty = r#"<p onclick="x()">hi<script>alert(1)</script><img src=x onerror=alert(1)><a href="https://e.example">l</a></p>"#;
        let clean = sanitize(dirty);
        assert!(!clean.contains("script"));
        assert!(!clean.contains("onerror"));
        assert!(!clean.contains("onclick"));
        assert!(clean.contains(r#"rel="noopener noreferrer""#));
        assert!(clean.contains(r#"target="_blank""#));
    }
}
