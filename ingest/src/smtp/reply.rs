//! SMTP replies: a code, an optional RFC 3463 enhanced status code, and one or more lines of text.
//!
//! A reply is a plain value so that handlers can return it and tests can compare it; only
//! [`Reply::write_to`] knows the wire format (RFC 5321 §4.2: `250-` on every line but the last,
//! `250 ` on the last). Reply text is sometimes built from what a client sent, so the writer
//! replaces control characters: no reply can ever carry a line break of its own. The replies that
//! several verbs share are named here, so their wording is the same everywhere.

use bytes::{BufMut, Bytes, BytesMut};

/// One SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// The enhanced status code (`class.subject.detail`), written at the start of every line.
    pub enhanced: Option<(u8, u16, u16)>,
    /// The text, one entry per line; an empty list is written as a bare code.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced status code.
    pub fn new(code: u16, enhanced: (u8, u16, u16), text: impl Into<String>) -> Self {
        Self {
            code,
            enhanced: Some(enhanced),
            lines: vec![text.into()],
        }
    }

    /// A one-line reply without an enhanced status code (the greeting, `354`, `HELO`).
    pub fn plain(code: u16, text: impl Into<String>) -> Self {
        Self {
            code,
            enhanced: None,
            lines: vec![text.into()],
        }
    }

    /// A reply of several lines.
    pub fn multiline(code: u16, enhanced: Option<(u8, u16, u16)>, lines: Vec<String>) -> Self {
        Self {
            code,
            enhanced,
            lines,
        }
    }

    /// 2xx and 3xx: the client may go on.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// The text of all lines, joined by a space (for logs and tests).
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// Appends the reply in wire format, so a caller can batch pipelined replies in one buffer.
    pub fn write_to(&self, out: &mut BytesMut) {
        let last = self.lines.len().saturating_sub(1);
        if self.lines.is_empty() {
            self.write_line(out, ' ', "");
        }
        for (i, line) in self.lines.iter().enumerate() {
            self.write_line(out, if i == last { ' ' } else { '-' }, line);
        }
    }

    /// The reply in wire format.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64 * self.lines.len().max(1));
        self.write_to(&mut out);
        out.freeze()
    }

    /// One line: `code`, the separator (when anything follows or more lines do), the enhanced
    /// code, the text with control characters replaced, CRLF; written straight into `out`, with
    /// no allocation (every reply of every session goes through here).
    fn write_line(&self, out: &mut BytesMut, separator: char, text: &str) {
        let start = out.len();
        put_decimal(out, self.code, 3);
        if self.enhanced.is_some() || !text.is_empty() || separator == '-' {
            out.put_u8(separator as u8);
        }
        if let Some((class, subject, detail)) = self.enhanced {
            put_decimal(out, class.into(), 1);
            out.put_u8(b'.');
            put_decimal(out, subject, 1);
            out.put_u8(b'.');
            put_decimal(out, detail, 1);
            if !text.is_empty() {
                out.put_u8(b' ');
            }
        }
        // RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its CRLF. Text that echoes
        // the client (an unknown parameter, say) is cut to fit, on a character boundary.
        let room = (start + MAX_LINE - 2).saturating_sub(out.len());
        if text.bytes().all(|b| (b' '..0x7f).contains(&b)) {
            // Printable ASCII (nearly every reply): as it is, every byte a character boundary.
            out.put_slice(&text.as_bytes()[..text.len().min(room)]);
        } else {
            let end = out.len() + room;
            let mut utf8 = [0u8; 4];
            for c in text.chars() {
                let encoded = printable(c).encode_utf8(&mut utf8);
                if out.len() + encoded.len() > end {
                    break;
                }
                out.put_slice(encoded.as_bytes());
            }
        }
        out.put_slice(b"\r\n");
    }

    /// Whether this reply to a command line counts against `max_bad_commands`: every permanent
    /// failure except the two that are about limits or outcomes rather than client mistakes (552, a
    /// size limit; 554, no valid recipients).
    pub(super) fn counts_as_error(&self) -> bool {
        self.code >= 500 && !matches!(self.code, 552 | 554)
    }
}

/// `n` in decimal, zero-padded to `width` digits.
fn put_decimal(out: &mut BytesMut, mut n: u16, width: usize) {
    let mut digits = [b'0'; 5];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i.min(digits.len() - width)..]);
}

fn printable(c: char) -> char {
    if c.is_control() { '?' } else { c }
}

pub(super) fn ok(enhanced: (u8, u16, u16)) -> Reply {
    Reply::new(250, enhanced, "Ok")
}

pub(super) fn unrecognized() -> Reply {
    Reply::new(500, (5, 5, 1), "Error: command not recognized")
}

pub(super) fn syntax(usage: &str) -> Reply {
    Reply::new(501, (5, 5, 4), format!("Syntax: {usage}"))
}

pub(super) fn bad_sequence(what: &str) -> Reply {
    Reply::new(503, (5, 5, 1), format!("Error: {what}"))
}

pub(super) fn line_too_long() -> Reply {
    Reply::new(500, (5, 5, 2), "Error: line too long")
}

pub(super) fn no_valid_recipients() -> Reply {
    Reply::new(554, (5, 5, 1), "Error: no valid recipients")
}

pub(super) fn message_too_big() -> Reply {
    Reply::new(
        552,
        (5, 3, 4),
        "Message size exceeds fixed maximum message size",
    )
}

/// The longest reply line, CRLF included (RFC 5321 4.5.3.1.5).
const MAX_LINE: usize = 512;

pub(super) fn too_many_errors(hostname: &str) -> Reply {
    Reply::new(421, (4, 7, 0), format!("{hostname} Error: too many errors"))
}

pub(super) fn too_many_commands(hostname: &str) -> Reply {
    Reply::new(
        421,
        (4, 7, 0),
        format!("{hostname} Error: too many commands"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_to_512_octets_per_line() {
        let reply = Reply::new(
            555,
            (5, 5, 4),
            format!("Unsupported parameter {}", "é".repeat(400)),
        );
        let bytes = reply.to_bytes();
        assert!(bytes.len() <= 512, "{}", bytes.len());
        assert!(bytes.ends_with(b"\r\n"));
        assert!(std::str::from_utf8(&bytes).is_ok());
    }

    #[test]
    fn ascii_texts_are_cut_exactly_and_controls_replaced() {
        let long = Reply::new(500, (5, 5, 2), "x".repeat(600)).to_bytes();
        assert_eq!(long.len(), 512);
        assert!(long.starts_with(b"500 5.5.2 xxx") && long.ends_with(b"x\r\n"));
        assert_eq!(
            &Reply::new(501, (5, 5, 4), "bad\targ\u{7f}").to_bytes()[..],
            b"501 5.5.4 bad?arg?\r\n"
        );
        assert_eq!(
            &Reply::new(550, (5, 1, 10), "caf\u{e9}\u{85}").to_bytes()[..],
            "550 5.1.10 caf\u{e9}?\r\n".as_bytes()
        );
        assert_eq!(
            &Reply::multiline(421, None, vec![]).to_bytes()[..],
            b"421\r\n"
        );
    }

    #[test]
    fn one_line_with_enhanced_code() {
        assert_eq!(&ok((2, 1, 0)).to_bytes()[..], b"250 2.1.0 Ok\r\n");
    }

    #[test]
    fn one_line_without_enhanced_code() {
        assert_eq!(
            &Reply::plain(354, "End data with <CR><LF>.<CR><LF>").to_bytes()[..],
            b"354 End data with <CR><LF>.<CR><LF>\r\n"
        );
    }

    #[test]
    fn multiline_uses_dashes_on_all_but_the_last_line() {
        let r = Reply::multiline(
            250,
            None,
            vec!["mx".into(), "PIPELINING".into(), "SIZE 9".into()],
        );
        assert_eq!(
            &r.to_bytes()[..],
            b"250-mx\r\n250-PIPELINING\r\n250 SIZE 9\r\n"
        );
    }

    #[test]
    fn enhanced_code_starts_every_line() {
        let r = Reply::multiline(214, Some((2, 0, 0)), vec!["a".into(), "b".into()]);
        assert_eq!(&r.to_bytes()[..], b"214-2.0.0 a\r\n214 2.0.0 b\r\n");
    }

    #[test]
    fn empty_replies_are_a_bare_code() {
        assert_eq!(
            &Reply::multiline(250, None, vec![]).to_bytes()[..],
            b"250\r\n"
        );
        assert_eq!(
            &Reply::multiline(250, Some((2, 0, 0)), vec![]).to_bytes()[..],
            b"250 2.0.0\r\n"
        );
    }

    #[test]
    fn text_cannot_inject_a_line() {
        let r = Reply::new(554, (5, 7, 1), "no\r\n250 2.0.0 Ok");
        assert_eq!(&r.to_bytes()[..], b"554 5.7.1 no??250 2.0.0 Ok\r\n");
    }

    #[test]
    fn errors_that_count() {
        assert!(unrecognized().counts_as_error());
        assert!(bad_sequence("x").counts_as_error());
        assert!(!message_too_big().counts_as_error());
        assert!(!no_valid_recipients().counts_as_error());
        assert!(!Reply::new(452, (4, 5, 3), "x").counts_as_error());
        assert!(!ok((2, 0, 0)).counts_as_error());
    }
}
