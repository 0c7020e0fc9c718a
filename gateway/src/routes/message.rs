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

/// `GET …/attachments/{index}`: one attachment's decoded bytes, as a download (never rendered by
/// the browser: `Content-Disposition: attachment` and `nosniff`, whatever type the sender claimed).
pub async fn attachment(
    State(state): State<AppState>,
    Path((mailbox, id, index)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let (mailbox, id) = parse(&mailbox, &id)?;
    let index: usize = index.parse().map_err(|_| ApiError::InvalidParameter {
        name: "index",
        expected: "an attachment number from 0",
    })?;
    let doc = state
        .mail
        .get(&mailbox, &id)
        .await?
        .ok_or(ApiError::MessageNotFound)?;
    let listed = doc
        .attachments
        .iter()
        .find(|a| a.index == index)
        .ok_or(ApiError::AttachmentNotFound)?;
    if listed.stripped {
        return Err(ApiError::AttachmentStripped);
    }
    let raw = state
        .mail
        .raw(&mailbox, &id)
        .await?
        .ok_or(ApiError::MessageNotFound)?;
    let part =
        maildrop_store::attachment::extract(&raw, index).ok_or(ApiError::AttachmentNotFound)?;
    let name = part
        .name
        .as_deref()
        .map(download_name)
        .unwrap_or_else(|| format!("attachment-{index}"));
    let disposition = format!("attachment; filename=\"{name}\"");
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .unwrap_or(HeaderValue::from_static("attachment")),
            ),
        ],
        part.body,
    )
        .into_response())
}

/// A file name safe inside a quoted header value: printable ASCII without quotes, slashes or
/// backslashes (anything else becomes `_`), at most 100 characters; `attachment` if nothing
/// readable is left.
fn download_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '/') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.chars().any(|c| c.is_ascii_alphanumeric()) {
        cleaned
    } else {
        "attachment".into()
    }
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
    fn download_names_cannot_break_the_header_or_the_path() {
        assert_eq!(super::download_name("report.pdf"), "report.pdf");
        assert_eq!(super::download_name("../../etc/passwd"), ".._.._etc_passwd");
        assert_eq!(super::download_name("a\"b\r\nX: y"), "a_b__X: y");
        assert_eq!(super::download_name("été.txt"), "_t_.txt");
        assert_eq!(super::download_name("\r\n"), "attachment");
    }

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
