//! One message: its document, its raw bytes, its HTML, its deletion.
//!
//! Mail HTML is sanitised twice over, for two audiences. [`sanitize`] is for the JSON (ours and the
//! maildrop.cc compatibility API), which clients may write straight into their own page: no
//! script, no handlers, no styles. [`sanitize_for_frame`] is for `…/html`, which only ever runs in
//! a sandboxed frame under [`MAIL_CSP`]: there the mail keeps its `<style>` and `style=` (CSS there
//! can only restyle the frame's own document, and every URL in it is blocked by the policy), so a
//! newsletter looks as its sender meant. Remote images and styles load only when the reader asks
//! for them (`?remote=1`, [`MAIL_CSP_REMOTE`]); scripts never do.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_nats::jetstream::message::PublishMessage;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maildrop_contract::envelope::header as md_header;
use maildrop_contract::{Mailbox, MailboxEvent, MessageId, event};
use maildrop_store::StoredMessage;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;
use crate::web::{MAIL_CSP, MAIL_CSP_REMOTE};

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

/// Mail HTML as the frame shows it: what [`sanitize`] keeps, plus `<style>` elements and `style`
/// attributes, with relative URLs dropped (a mail has no base to resolve them against).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramedHtml {
    pub html: String,
    /// Whether anything in it would fetch from another host (an image, a CSS `url()` or
    /// `@import`): the page offers to load remote content only then.
    pub remote: bool,
}

/// What mail layouts are made of (style sheets select by class; tables still carry the layout).
const FRAME_LAYOUT_ATTRIBUTES: [&str; 8] = [
    "style", "class", "dir", "align", "valign", "bgcolor", "width", "height",
];

/// Attributes whose value is a URL the browser fetches without a click.
const FETCHING_ATTRIBUTES: [&str; 4] = ["src", "srcset", "background", "poster"];

pub fn sanitize_for_frame(html: &str) -> FramedHtml {
    let remote = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&remote);
    let clean = ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer"))
        .set_tag_attribute_value("a", "target", "_blank")
        .rm_clean_content_tags(&["style"])
        .add_tags(&["style", "font", "center"])
        .add_generic_attributes(&FRAME_LAYOUT_ATTRIBUTES)
        .add_tag_attributes("table", &["border", "cellpadding", "cellspacing"])
        .add_tag_attributes("font", &["color", "face", "size"])
        .url_relative(ammonia::UrlRelative::Deny)
        .attribute_filter(move |_element, attribute, value| {
            let fetches = if attribute == "style" {
                css_fetches(value)
            } else {
                FETCHING_ATTRIBUTES.contains(&attribute) && is_remote_url(value)
            };
            if fetches {
                seen.store(true, Ordering::Relaxed);
            }
            Some(value.into())
        })
        .clean(html)
        .to_string();
    let remote = remote.load(Ordering::Relaxed) || style_elements(&clean).any(css_fetches);
    FramedHtml {
        html: clean,
        remote,
    }
}

/// `http:`, `https:` or scheme-relative (`//host/…`, which the frame resolves to `http:`).
fn is_remote_url(value: &str) -> bool {
    let v = value.trim_start().to_ascii_lowercase();
    v.starts_with("http:") || v.starts_with("https:") || v.starts_with("//")
}

/// Whether CSS would fetch something other than a `data:` URL. Only decides whether the page
/// offers the "load remote content" button: a fetch this misses (CSS escapes, say) is still
/// blocked by the frame's policy, it just cannot be allowed.
fn css_fetches(css: &str) -> bool {
    let css = css.to_ascii_lowercase();
    if css.contains("@import") {
        return true;
    }
    ["url(", "image-set("].iter().any(|opener| {
        css.match_indices(opener).any(|(at, _)| {
            let target = css[at + opener.len()..]
                .trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '"' || c == '\'');
            !target.starts_with("data:")
        })
    })
}

/// The text of each `<style>` element in sanitised output (where `<style` can only be a tag).
fn style_elements(clean: &str) -> impl Iterator<Item = &str> {
    clean.split("<style").skip(1).map(|rest| {
        let body = rest.split_once('>').map_or("", |(_, body)| body);
        body.split("</style").next().unwrap_or(body)
    })
}

/// The message document as the API shows it.
#[derive(Serialize)]
pub struct MessageView {
    #[serde(flatten)]
    pub message: StoredMessage,
    /// Whether the HTML body refers to remote images or styles (see `…/html?remote=1`).
    pub remote_content: bool,
}

/// `GET /api/mailboxes/{box}/messages/{id}`: the stored document, HTML sanitised.
pub async fn get(
    State(state): State<AppState>,
    Path((mailbox, id)): Path<(String, String)>,
) -> Result<Json<MessageView>, ApiError> {
    let (mailbox, id) = parse(&mailbox, &id)?;
    let mut msg = state
        .mail
        .get(&mailbox, &id)
        .await?
        .ok_or(ApiError::MessageNotFound)?;
    let remote_content = msg
        .html
        .as_deref()
        .is_some_and(|html| sanitize_for_frame(html).remote);
    msg.html = msg.html.as_deref().map(sanitize);
    Ok(Json(MessageView {
        message: msg,
        remote_content,
    }))
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

#[derive(Deserialize)]
pub struct FrameQuery {
    pub remote: Option<String>,
}

/// `?remote=1` (or `true`): the reader allowed this message's remote images and styles.
fn remote_allowed(query: &FrameQuery) -> Result<bool, ApiError> {
    match query.remote.as_deref() {
        None | Some("0" | "false") => Ok(false),
        Some("1" | "true") => Ok(true),
        Some(_) => Err(ApiError::InvalidParameter {
            name: "remote",
            expected: "1, true, 0 or false",
        }),
    }
}

/// `GET …/html[?remote=1]`: the sanitised HTML body as its own document, for a sandboxed frame on
/// our page, under a policy that allows no script and, unless `remote=1`, nothing remote.
pub async fn html(
    State(state): State<AppState>,
    Path((mailbox, id)): Path<(String, String)>,
    Query(query): Query<FrameQuery>,
) -> Result<Response, ApiError> {
    let (mailbox, id) = parse(&mailbox, &id)?;
    let policy = if remote_allowed(&query)? {
        MAIL_CSP_REMOTE
    } else {
        MAIL_CSP
    };
    let msg = state
        .mail
        .get(&mailbox, &id)
        .await?
        .ok_or(ApiError::MessageNotFound)?;
    let body = msg
        .html
        .as_deref()
        .map(|html| sanitize_for_frame(html).html)
        .unwrap_or_default();
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(policy),
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
    use super::{FrameQuery, remote_allowed, sanitize, sanitize_for_frame};

    #[test]
    fn the_frame_keeps_styles_but_never_scripts_or_handlers() {
        let dirty = r#"<html><head><style>p { color: red }</style></head><body>
<p class="brand" style="font-weight:bold" onclick="x()">hi<script>console.log(1)</script>
<img src="x" onerror="console.log(2)"><a href="https://e.example">l</a></p></body></html>"#;
        let framed = sanitize_for_frame(dirty);
        assert!(
            framed.html.contains("<style>p { color: red }</style>"),
            "{}",
            framed.html
        );
        assert!(
            framed.html.contains(r#"style="font-weight:bold""#),
            "{}",
            framed.html
        );
        assert!(framed.html.contains(r#"class="brand""#), "{}", framed.html);
        for banned in [
            "<script",
            "onerror",
            "onclick",
            "console.log(1)",
            r#"src="x""#,
        ] {
            assert!(!framed.html.contains(banned), "{banned} in {}", framed.html);
        }
        assert!(framed.html.contains(r#"rel="noopener noreferrer""#));
        assert!(framed.html.contains(r#"target="_blank""#));
        assert!(!framed.remote, "nothing here fetches from another host");
    }

    #[test]
    fn markup_hidden_in_foreign_style_elements_cannot_come_back_to_life() {
        // In SVG and MathML, `<style>` content is markup, not text: the classic mutation-XSS
        // shapes must not serialise into an element with a handler.
        for dirty in [
            r#"<svg><style><img src=x onerror=console.log(1)></style></svg>"#,
            r#"<svg><style>&lt;/style&gt;&lt;img src=x onerror=console.log(1)&gt;</style></svg>"#,
            r#"<math><mtext><table><mglyph><style><img src=x onerror=console.log(1)>"#,
            r#"<style><svg><style></style><img src=x onerror=console.log(1)></style>"#,
        ] {
            let once = sanitize_for_frame(dirty).html;
            // What the browser parses the output into is what a second pass would see.
            let twice = sanitize_for_frame(&once).html;
            assert_eq!(once, twice, "output changes when parsed again: {dirty}");
            let reparsed = ammonia::Builder::empty()
                .add_tags(&["img"])
                .add_tag_attributes("img", &["onerror"])
                .clean(&once)
                .to_string();
            assert!(!reparsed.contains("onerror"), "{dirty} → {once}");
        }
    }

    #[test]
    fn remote_images_and_styles_are_noticed() {
        let remote = [
            r#"<img src="https://t.example/p.gif">"#,
            r#"<p style="background: URL( 'http://t.example/b.png' )">x</p>"#,
            r#"<style>@import "https://t.example/s.css";</style>"#,
            r#"<style>body { background-image: url(https://t.example/b.png) }</style>"#,
        ];
        for html in remote {
            assert!(sanitize_for_frame(html).remote, "{html}");
        }
        let local = [
            r#"<img src="data:image/png;base64,AAAA">"#,
            r#"<p style="background:url(data:image/png;base64,AAAA)">x</p>"#,
            r#"<a href="https://e.example">a link is fetched only when clicked</a>"#,
            r#"<img src="cid:part1">"#,
            "<p>url(https://t.example) in plain text is just text</p>",
        ];
        for html in local {
            assert!(!sanitize_for_frame(html).remote, "{html}");
        }
        // Relative and scheme-relative URLs have no base in a mail: dropped, not fetched.
        let relative = sanitize_for_frame(r#"<img src="//t.example/p.gif"><img src="p.gif">"#);
        assert!(
            !relative.remote && !relative.html.contains("p.gif"),
            "{relative:?}"
        );
    }

    #[test]
    fn the_remote_switch_takes_only_clear_values() {
        let q = |v: Option<&str>| FrameQuery {
            remote: v.map(str::to_owned),
        };
        assert!(!remote_allowed(&q(None)).unwrap());
        assert!(!remote_allowed(&q(Some("0"))).unwrap());
        assert!(remote_allowed(&q(Some("1"))).unwrap());
        assert!(remote_allowed(&q(Some("true"))).unwrap());
        assert!(remote_allowed(&q(Some("yes"))).is_err());
    }

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
