//! Attachments: which MIME parts count as one and in what order, their bytes, and how a body is
//! stripped before storing.
//!
//! Why this lives in the store crate: the store-writer lists (and may strip) attachments when it
//! stores a message, and the gateway serves `…/attachments/{index}` by re-parsing the stored raw
//! message. Both must agree on what "attachment 2" is, so both go through [`list`] and
//! [`extract`], which number the top-level message's attachments in mail-parser's order.
//!
//! **Stripping.** With `MAILDROP_ATTACHMENTS=strip`, or for an attachment larger than
//! `MAILDROP_ATTACHMENT_MAX_SIZE`, the store-writer keeps the part but not its body: [`strip`]
//! cuts the body out of the raw bytes and adds a header `X-Maildrop-Stripped: <reason>; size=<n>`
//! to the part, and the document marks the attachment `stripped`. The raw message is rewritten
//! (rather than kept whole with only a flag) because the point of the cap is memory: a 20 MB
//! attachment kept in Redis "but not downloadable" would still cost 20 MB. The `.eml` stays
//! truthful: every other byte is as received, and the part itself says that and why its body was
//! removed. Only the part's body and one header line change, so the MIME structure, the
//! boundaries and the numbering of the attachments are the same before and after.
//!
//! Whether an attachment was stripped is read from the document ([`Attachment::stripped`]), never
//! from the header in the raw bytes, which a sender could write too.

use std::fmt;
use std::str::FromStr;

use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders};
use serde::{Deserialize, Serialize};

use crate::message::Attachment;

/// The header added to a part whose body was removed.
pub const STRIPPED_HEADER: &str = "X-Maildrop-Stripped";

/// Why an attachment's body was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StripReason {
    /// `MAILDROP_ATTACHMENTS=strip`: no attachment bodies are kept.
    Policy,
    /// Larger than `MAILDROP_ATTACHMENT_MAX_SIZE`.
    TooLarge,
}

impl StripReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Policy => "policy",
            Self::TooLarge => "too_large",
        }
    }
}

impl fmt::Display for StripReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a strip reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a strip reason (expected `policy` or `too_large`)")]
pub struct InvalidStripReason;

impl FromStr for StripReason {
    type Err = InvalidStripReason;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "policy" => Ok(Self::Policy),
            "too_large" => Ok(Self::TooLarge),
            _ => Err(InvalidStripReason),
        }
    }
}

/// `type/subtype` of a part, without parameters; `application/octet-stream` when it has none.
fn content_type(part: &MessagePart<'_>) -> String {
    part.content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_owned(),
        })
        .unwrap_or_else(|| "application/octet-stream".to_owned())
}

/// The attachments of a parsed message, numbered, none stripped.
pub fn list(message: &Message<'_>) -> Vec<Attachment> {
    message
        .attachments()
        .enumerate()
        .map(|(index, part)| Attachment {
            index,
            name: part.attachment_name().map(str::to_owned),
            content_type: content_type(part),
            size: part.len() as u64,
            stripped: false,
            stripped_reason: None,
        })
        .collect()
}

/// One attachment's content, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentBody {
    pub name: Option<String>,
    /// `type/subtype`, without parameters. The body of a `text/*` part is UTF-8 (decoded from its
    /// declared charset), so serve it with `charset=utf-8`.
    pub content_type: String,
    pub body: Vec<u8>,
}

/// Attachment `index` of the raw message, decoded (base64 and quoted-printable undone; a
/// `message/rfc822` attachment is the nested message's raw bytes). `None` if there is no such
/// attachment. A stripped attachment extracts as an empty body: check the document first.
pub fn extract(raw: &[u8], index: usize) -> Option<AttachmentBody> {
    let message = MessageParser::default().parse(raw)?;
    let part = message.attachment(u32::try_from(index).ok()?)?;
    Some(AttachmentBody {
        name: part.attachment_name().map(str::to_owned),
        content_type: content_type(part),
        body: part.contents().to_vec(),
    })
}

/// The result of [`strip`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stripped {
    /// The raw message with the bodies removed.
    pub raw: Vec<u8>,
    /// The attachments whose body was removed, with the reason. An attachment of the plan whose
    /// header block could not be found safely is kept whole and is not listed here.
    pub stripped: Vec<(usize, StripReason)>,
}

/// What identifies a message's attachments, in order: checked before and after stripping.
fn outline(message: &Message<'_>) -> Vec<(Option<String>, String)> {
    message
        .attachments()
        .map(|part| {
            (
                part.attachment_name().map(str::to_owned),
                content_type(part),
            )
        })
        .collect()
}

/// Where the header block of a part ends (the position of its empty line) and its line ending.
fn header_end(raw: &[u8], header: usize, body: usize) -> Option<(usize, &'static [u8])> {
    let block = raw.get(header..body)?;
    if block == b"\r\n" || block.ends_with(b"\n\r\n") {
        Some((body - 2, b"\r\n"))
    } else if block == b"\n" || block.ends_with(b"\n\n") {
        Some((body - 1, b"\n"))
    } else {
        None
    }
}

/// Removes the bodies of the attachments in `plan` (index, reason) from `raw`: each such part keeps
/// its headers, gains `X-Maildrop-Stripped: <reason>; size=<decoded bytes>`, and has an empty body.
/// Every other byte is kept. Raw bytes that do not parse are returned unchanged, and so are bytes
/// whose stripped form would not list the same attachments in the same order (a malformed
/// message that mail-parser reads differently once changed): numbering must not shift.
pub fn strip(raw: &[u8], plan: &[(usize, StripReason)]) -> Stripped {
    let unchanged = || Stripped {
        raw: raw.to_vec(),
        stripped: Vec::new(),
    };
    if plan.is_empty() {
        return unchanged();
    }
    let Some(message) = MessageParser::default().parse(raw) else {
        return unchanged();
    };
    // (insert at, header line, cut from, cut to), one per part, in the order of the raw bytes.
    let mut edits: Vec<(usize, Vec<u8>, usize, usize)> = Vec::new();
    let mut stripped = Vec::new();
    for &(index, reason) in plan {
        let Some(part) = u32::try_from(index)
            .ok()
            .and_then(|i| message.attachment(i))
        else {
            continue;
        };
        let (header, body, end) = (
            part.raw_header_offset() as usize,
            part.raw_body_offset() as usize,
            part.raw_end_offset() as usize,
        );
        let Some((insert, eol)) = header_end(raw, header, body) else {
            tracing::debug!(index, "Attachment has no header block to mark; kept whole.");
            continue;
        };
        if end < body || end > raw.len() {
            continue;
        }
        let mut line = format!("{STRIPPED_HEADER}: {reason}; size={}", part.len()).into_bytes();
        line.extend_from_slice(eol);
        edits.push((insert, line, body, end));
        stripped.push((index, reason));
    }
    if edits.is_empty() {
        return unchanged();
    }
    edits.sort_by_key(|e| e.0);
    // Parts of one message never overlap; refuse to guess if these would.
    if edits.windows(2).any(|w| w[1].0 < w[0].3) {
        return unchanged();
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    for (insert, line, from, to) in &edits {
        out.extend_from_slice(&raw[at..*insert]);
        out.extend_from_slice(line);
        out.extend_from_slice(&raw[*insert..*from]);
        at = *to;
    }
    out.extend_from_slice(&raw[at..]);
    let same = MessageParser::default()
        .parse(&out)
        .is_some_and(|after| outline(&after) == outline(&message));
    if !same {
        tracing::debug!("Stripping would change how the attachments read; kept whole.");
        return unchanged();
    }
    stripped.sort_by_key(|s| s.0);
    Stripped { raw: out, stripped }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PDF_B64: &str = "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoK";

    fn mixed() -> Vec<u8> {
        format!(
            "From: a@example.org\r\nTo: b@example.org\r\nSubject: files\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\n\
Content-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n--b2\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n--b2\r\n\
Content-Type: text/html; charset=utf-8\r\n\r\n<p>hello</p>\r\n--b2--\r\n\
--b1\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\n\
Content-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
{PDF_B64}\r\n--b1\r\nContent-Type: text/plain; name=\"notes.txt\"\r\n\
Content-Disposition: attachment; filename=\"notes.txt\"\r\n\r\nsome notes\r\n\
--b1\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n\
From: c@example.org\r\nSubject: inner\r\n\r\ninner body\r\n--b1--\r\nepilogue\r\n"
        )
        .into_bytes()
    }

    fn parse(raw: &[u8]) -> Message<'_> {
        MessageParser::default().parse(raw).unwrap()
    }

    #[test]
    fn attachments_are_numbered_and_described() {
        let raw = mixed();
        let list = list(&parse(&raw));
        let names: Vec<_> = list.iter().map(|a| a.name.as_deref()).collect();
        assert_eq!(names, [Some("a.pdf"), Some("notes.txt"), None]);
        let types: Vec<_> = list.iter().map(|a| a.content_type.as_str()).collect();
        assert_eq!(types, ["application/pdf", "text/plain", "message/rfc822"]);
        assert_eq!(list.iter().map(|a| a.index).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(
            list.iter()
                .all(|a| !a.stripped && a.stripped_reason.is_none())
        );
        assert_eq!(list[1].size, "some notes".len() as u64);
    }

    #[test]
    fn extraction_decodes_by_index() {
        let raw = mixed();
        let pdf = extract(&raw, 0).unwrap();
        assert_eq!(pdf.name.as_deref(), Some("a.pdf"));
        assert!(pdf.body.starts_with(b"%PDF-1.4"));
        assert_eq!(extract(&raw, 1).unwrap().body, b"some notes");
        let inner = extract(&raw, 2).unwrap();
        assert!(inner.body.starts_with(b"From: c@example.org"), "{inner:?}");
        assert_eq!(extract(&raw, 3), None);
        assert_eq!(extract(b"\xff\xfe", 0), None);
    }

    #[test]
    fn stripping_removes_only_the_bodies_and_says_so() {
        let raw = mixed();
        let out = strip(
            &raw,
            &[(2, StripReason::Policy), (0, StripReason::TooLarge)],
        );
        assert_eq!(
            out.stripped,
            [(0, StripReason::TooLarge), (2, StripReason::Policy)]
        );
        let text = String::from_utf8(out.raw.clone()).unwrap();
        assert!(!text.contains(PDF_B64));
        assert!(!text.contains("inner body"));
        assert!(
            text.contains("X-Maildrop-Stripped: too_large; size="),
            "{text}"
        );
        assert!(
            text.contains("X-Maildrop-Stripped: policy; size="),
            "{text}"
        );
        // Everything else is as it was.
        assert!(text.starts_with("From: a@example.org\r\n"));
        assert!(text.ends_with("--b1--\r\nepilogue\r\n"));
        assert!(text.contains("\r\n\r\nsome notes\r\n--b1\r\n"));

        // The same parts, in the same order, and the bodies read as before.
        let before = parse(&raw);
        let after = parse(&out.raw);
        let describe = |m: &Message<'_>| {
            list(m)
                .into_iter()
                .map(|a| (a.index, a.name, a.content_type))
                .collect::<Vec<_>>()
        };
        assert_eq!(describe(&before), describe(&after));
        assert_eq!(after.body_text(0).as_deref().map(str::trim), Some("hello"));
        assert!(after.body_html(0).unwrap().contains("<p>hello</p>"));
        assert!(extract(&out.raw, 0).unwrap().body.is_empty());
        assert_eq!(extract(&out.raw, 1).unwrap().body, b"some notes");
    }

    #[test]
    fn a_message_that_is_one_attachment_keeps_its_headers() {
        let raw = b"From: a@example.org\nSubject: x\nContent-Type: application/zip\n\
Content-Disposition: attachment; filename=x.zip\nContent-Transfer-Encoding: base64\n\nUEsDBA==\n";
        let before = list(&parse(raw));
        assert_eq!(before.len(), 1, "{before:?}");
        let out = strip(raw, &[(0, StripReason::Policy)]);
        assert_eq!(out.stripped, [(0, StripReason::Policy)]);
        let text = String::from_utf8(out.raw).unwrap();
        assert_eq!(
            text,
            "From: a@example.org\nSubject: x\nContent-Type: application/zip\n\
Content-Disposition: attachment; filename=x.zip\nContent-Transfer-Encoding: base64\n\
X-Maildrop-Stripped: policy; size=4\n\n"
        );
    }

    #[test]
    fn nothing_to_strip_or_nothing_parsable_leaves_the_bytes_alone() {
        let raw = mixed();
        assert_eq!(strip(&raw, &[]).raw, raw);
        assert_eq!(strip(&raw, &[(9, StripReason::Policy)]).raw, raw);
        assert_eq!(strip(b"\xff", &[(0, StripReason::Policy)]).raw, b"\xff");
    }

    #[test]
    fn any_truncation_is_stripped_safely_or_left_alone() {
        let raw = mixed();
        let plan = [
            (0, StripReason::Policy),
            (1, StripReason::Policy),
            (2, StripReason::Policy),
        ];
        let mut stripped_some = 0;
        for end in 0..=raw.len() {
            let cut = &raw[..end];
            let out = strip(cut, &plan);
            if out.stripped.is_empty() {
                assert_eq!(out.raw, cut);
                continue;
            }
            stripped_some += 1;
            let (before, after) = (MessageParser::default().parse(cut), parse(&out.raw));
            assert_eq!(outline(&before.unwrap()), outline(&after), "cut at {end}");
        }
        assert!(stripped_some > 0);
    }

    #[test]
    fn reasons_read_back() {
        for r in [StripReason::Policy, StripReason::TooLarge] {
            assert_eq!(r.as_str().parse::<StripReason>(), Ok(r));
        }
        assert!("other".parse::<StripReason>().is_err());
    }
}
