//! The client side of SMTP without I/O: reading replies out of a buffer, and the `DATA` payload.
//!
//! [`parse_reply`] takes whatever bytes have arrived and returns a whole reply (all lines of a
//! multi-line one) and how many bytes it used, or `None` when more input is needed. The session in
//! [`crate::session`] only moves bytes between the socket and these functions.

use std::fmt;

/// A reply line longer than this is a broken server, not a slow one.
pub const MAX_REPLY_LINE: usize = 4096;

/// One SMTP reply: its code and the text of its last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    /// The message id in `250 2.0.0 Ok: queued as <id>`, if the server said it.
    pub fn queued_id(&self) -> Option<&str> {
        let (_, rest) = self.text.split_once("queued as ")?;
        rest.split_whitespace().next().filter(|id| !id.is_empty())
    }
}

/// A reply that is not SMTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// A line that does not start with three digits and a separator.
    Malformed(String),
    /// A multi-line reply whose lines have different codes.
    CodeChanged { first: u16, then: u16 },
    /// No line end within [`MAX_REPLY_LINE`] bytes.
    LineTooLong,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(line) => write!(f, "malformed reply line {line:?}"),
            Self::CodeChanged { first, then } => {
                write!(f, "multi-line reply changed code from {first} to {then}")
            }
            Self::LineTooLong => write!(f, "reply line longer than {MAX_REPLY_LINE} bytes"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// A whole reply from the start of `buf` and the bytes it used, or `None` if it is not all there.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut used = 0;
    let mut code = None;
    loop {
        let rest = &buf[used..];
        let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
            if rest.len() > MAX_REPLY_LINE {
                return Err(ReplyError::LineTooLong);
            }
            return Ok(None);
        };
        let line = &rest[..lf];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        used += lf + 1;
        let malformed = || ReplyError::Malformed(String::from_utf8_lossy(line).into_owned());
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(malformed());
        }
        let this: u16 = std::str::from_utf8(&line[..3])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(malformed)?;
        if let Some(first) = code
            && first != this
        {
            return Err(ReplyError::CodeChanged { first, then: this });
        }
        code = Some(this);
        let (more, text) = match line.get(3) {
            None => (false, &b""[..]),
            Some(b' ') => (false, &line[4..]),
            Some(b'-') => (true, &line[4..]),
            Some(_) => return Err(malformed()),
        };
        if !more {
            let reply = Reply {
                code: this,
                text: String::from_utf8_lossy(text).into_owned(),
            };
            return Ok(Some((reply, used)));
        }
    }
}

/// What to send after `354`: the message with every line starting with `.` doubled (RFC 5321
/// §4.5.2), a CRLF added if it does not end in one, and the terminating `.` line.
pub fn data_payload(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !message.is_empty() && !message.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_line_reply() {
        let (reply, used) = parse_reply(b"250 2.1.0 Ok\r\nextra").unwrap().unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(reply.text, "2.1.0 Ok");
        assert_eq!(used, 14);
    }

    #[test]
    fn a_multi_line_reply_is_read_whole() {
        let ehlo = b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 10485760\r\n";
        let (reply, used) = parse_reply(ehlo).unwrap().unwrap();
        assert_eq!((reply.code, reply.text.as_str()), (250, "SIZE 10485760"));
        assert_eq!(used, ehlo.len());
    }

    #[test]
    fn partial_input_asks_for_more() {
        for partial in [&b""[..], b"25", b"250 Ok", b"250-first\r\n250 sec"] {
            assert_eq!(parse_reply(partial), Ok(None), "{partial:?}");
        }
    }

    #[test]
    fn bare_lf_and_code_only_lines_are_accepted() {
        let (reply, _) = parse_reply(b"221\n").unwrap().unwrap();
        assert_eq!((reply.code, reply.text.as_str()), (221, ""));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            parse_reply(b"HTTP/1.1 400\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            parse_reply(b"250x\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        assert_eq!(
            parse_reply(b"250-a\r\n451 b\r\n"),
            Err(ReplyError::CodeChanged {
                first: 250,
                then: 451
            })
        );
        assert_eq!(
            parse_reply(&[b'2'; MAX_REPLY_LINE + 1]),
            Err(ReplyError::LineTooLong)
        );
    }

    #[test]
    fn the_queued_id_is_read_from_the_final_reply() {
        let (reply, _) = parse_reply(b"250 2.0.0 Ok: queued as 01J9ZX\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(reply.queued_id(), Some("01J9ZX"));
        let other = Reply {
            code: 250,
            text: "Ok".into(),
        };
        assert_eq!(other.queued_id(), None);
    }

    #[test]
    fn dots_are_stuffed_and_the_terminator_added() {
        assert_eq!(
            data_payload(b"a\r\n.b\r\n..c\r\n"),
            b"a\r\n..b\r\n...c\r\n.\r\n"
        );
        assert_eq!(data_payload(b".first\r\n"), b"..first\r\n.\r\n");
        assert_eq!(data_payload(b"no end"), b"no end\r\n.\r\n");
        assert_eq!(data_payload(b""), b".\r\n");
    }
}
