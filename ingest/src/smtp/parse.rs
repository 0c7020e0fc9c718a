//! Parsing of command lines, paths and ESMTP parameters: pure functions over borrowed text.
//!
//! Nothing here knows about the session, so each rule can be tested on its own and fuzzed later.
//! The grammar is RFC 5321 §4.1.2, with RFC 6531's UTF-8 extension: non-ASCII text is accepted in
//! local parts and domains and reported in [`Address::non_ascii`], and the verb handler decides
//! whether the transaction allows it (`SMTPUTF8`). Leniencies, each chosen because real clients
//! need it and it cannot change the meaning of a command: a space after `FROM:`/`TO:`, trailing
//! spaces, `_` in domain labels. Everything else that is not in the grammar is refused.

use thiserror::Error;

/// The command verbs we know. Unknown verbs are not errors here: dispatch answers them.
///
/// Public so the caller can tell which command a reply answers ([`super::Session::answered`]), e.g.
/// to pace replies to `MAIL`, `RCPT` and `DATA`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    /// An HTTP request line: somebody (often a browser tricked by a web page) is talking HTTP to
    /// the SMTP port. Like Postfix's `smtpd_forbidden_commands`, the session hangs up.
    Http,
    /// A PROXY protocol v1 header where a command belongs: a client that is not a trusted proxy
    /// (or a client behind one) trying to choose the address it is recorded under. The server
    /// reads real headers before the session starts, so the session only ever sees forged ones,
    /// and hangs up.
    Proxy,
    Unknown,
}

const VERBS: &[(&str, Verb)] = &[
    ("EHLO", Verb::Ehlo),
    ("HELO", Verb::Helo),
    ("MAIL", Verb::Mail),
    ("RCPT", Verb::Rcpt),
    ("DATA", Verb::Data),
    ("BDAT", Verb::Bdat),
    ("RSET", Verb::Rset),
    ("NOOP", Verb::Noop),
    ("QUIT", Verb::Quit),
    ("VRFY", Verb::Vrfy),
    ("EXPN", Verb::Expn),
    ("HELP", Verb::Help),
    ("STARTTLS", Verb::StartTls),
    ("GET", Verb::Http),
    ("POST", Verb::Http),
    ("PUT", Verb::Http),
    ("HEAD", Verb::Http),
    ("CONNECT", Verb::Http),
    ("PROXY", Verb::Proxy),
];

impl Verb {
    fn parse(word: &str) -> Self {
        VERBS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(word))
            .map_or(Verb::Unknown, |(_, verb)| *verb)
    }
}

/// One command line, split into its verb and the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Command<'a> {
    pub verb: Verb,
    /// Everything after the verb, without leading or trailing blanks.
    pub args: &'a str,
}

/// A command line that cannot be a command at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub(super) enum LineError {
    #[error("Error: bad UTF-8 syntax")]
    NotUtf8,
    #[error("Error: control characters are not allowed in commands")]
    Control,
}

/// Splits a command line (with its line end, `\r\n` or a bare `\n`) into verb and arguments.
///
/// A CR anywhere but before the final LF, a NUL, or any other control character but a tab makes
/// the line invalid: such bytes have no business in a command, and refusing them means a
/// command's text can never reach a log or a header with a line break in it.
pub(super) fn command_line(line: &[u8]) -> Result<Command<'_>, LineError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(LineError::Control);
    }
    let line = std::str::from_utf8(line).map_err(|_| LineError::NotUtf8)?;
    let line = line.trim_end_matches([' ', '\t']);
    let (word, args) = line.split_once([' ', '\t']).unwrap_or((line, ""));
    Ok(Command {
        verb: Verb::parse(word),
        args: args.trim_start_matches([' ', '\t']),
    })
}

/// `args` without a leading `keyword` (matched ignoring ASCII case) and the spaces after it.
pub(super) fn after_keyword<'a>(args: &'a str, keyword: &str) -> Option<&'a str> {
    let head = args.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| args[keyword.len()..].trim_start_matches(' '))
}

/// A mailbox from a path: `local@domain`, with any source route already dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Address<'a> {
    /// As written, with the quotes if it is a quoted string.
    pub local: &'a str,
    /// `None` only for the special recipient `<postmaster>` (RFC 5321 §4.1.1.3).
    pub domain: Option<&'a str>,
    pub quoted: bool,
    /// Whether the local part or the domain holds UTF-8 beyond ASCII.
    pub non_ascii: bool,
}

impl Address<'_> {
    /// `local@domain` as the client wrote it (case kept).
    pub fn as_written(&self) -> String {
        match self.domain {
            Some(domain) => format!("{}@{domain}", self.local),
            None => self.local.to_owned(),
        }
    }
}

/// Why a path is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub(super) enum PathError {
    #[error("address must be enclosed in <>")]
    Brackets,
    #[error("bad source route")]
    Route,
    #[error("bad local part")]
    LocalPart,
    #[error("bad domain")]
    Domain,
    #[error("domain missing")]
    NoDomain,
    #[error("the null path <> is not allowed here")]
    Null,
    #[error("unexpected text after the address")]
    Trailing,
}

/// `MAIL FROM:` argument: `<>` (the null sender, returned as `None`) or a path with a domain.
/// Returns the address and the text after it (the parameters).
pub(super) fn reverse_path(s: &str) -> Result<(Option<Address<'_>>, &str), PathError> {
    let (address, rest) = path(s)?;
    if address.is_some_and(|a| a.domain.is_none()) {
        return Err(PathError::NoDomain);
    }
    Ok((address, rest))
}

/// `RCPT TO:` argument: a path with a domain, or `<postmaster>` without one.
pub(super) fn forward_path(s: &str) -> Result<(Address<'_>, &str), PathError> {
    let (address, rest) = path(s)?;
    let address = address.ok_or(PathError::Null)?;
    let postmaster = !address.quoted && address.local.eq_ignore_ascii_case("postmaster");
    if address.domain.is_none() && !postmaster {
        return Err(PathError::NoDomain);
    }
    Ok((address, rest))
}

/// `"<" [ A-d-l ":" ] Mailbox ">"` or `"<>"`; the source route (`A-d-l`) is checked and dropped.
fn path(s: &str) -> Result<(Option<Address<'_>>, &str), PathError> {
    let b = s.as_bytes();
    if b.first() != Some(&b'<') {
        return Err(PathError::Brackets);
    }
    let mut i = 1;
    if b.get(i) == Some(&b'>') {
        return Ok((None, after_path(s, i + 1)?));
    }
    if b.get(i) == Some(&b'@') {
        loop {
            if b.get(i) != Some(&b'@') {
                return Err(PathError::Route);
            }
            let start = i + 1;
            let len = b[start..]
                .iter()
                .position(|&c| c == b',' || c == b':')
                .ok_or(PathError::Route)?;
            domain_or_literal(&s[start..start + len]).map_err(|_| PathError::Route)?;
            i = start + len + 1;
            if b[start + len] == b':' {
                break;
            }
        }
    }

    let local_start = i;
    let quoted = b.get(i) == Some(&b'"');
    let mut non_ascii = false;
    if quoted {
        i += 1;
        loop {
            match b.get(i) {
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(b'\\') if b.get(i + 1).is_some_and(|c| (32..=126).contains(c)) => i += 2,
                Some(&c) if (32..=126).contains(&c) && c != b'\\' => i += 1,
                Some(&c) if c >= 0x80 => {
                    non_ascii = true;
                    i += 1;
                }
                _ => return Err(PathError::LocalPart),
            }
        }
    } else {
        while let Some(&c) = b.get(i) {
            if is_atext(c) || c == b'.' {
                i += 1;
            } else if c >= 0x80 {
                non_ascii = true;
                i += 1;
            } else {
                break;
            }
        }
        let local = &s[local_start..i];
        if local.is_empty()
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
        {
            return Err(PathError::LocalPart);
        }
    }
    let local = &s[local_start..i];

    let domain = match b.get(i) {
        Some(b'@') => {
            let start = i + 1;
            let len = b[start..]
                .iter()
                .position(|&c| c == b'>')
                .ok_or(PathError::Brackets)?;
            let domain = &s[start..start + len];
            non_ascii |= domain_or_literal(domain)?;
            i = start + len;
            Some(domain)
        }
        Some(b'>') => None,
        _ => return Err(PathError::LocalPart),
    };
    // `i` is at the closing `>`.
    let rest = after_path(s, i + 1)?;
    Ok((
        Some(Address {
            local,
            domain,
            quoted,
            non_ascii,
        }),
        rest,
    ))
}

/// What follows a path: nothing, or parameters after a space.
fn after_path(s: &str, end: usize) -> Result<&str, PathError> {
    let rest = &s[end..];
    if rest.is_empty() || rest.starts_with(' ') {
        Ok(rest)
    } else {
        Err(PathError::Trailing)
    }
}

/// RFC 5322 `atext`.
fn is_atext(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&c)
}

/// A domain name or an address literal; `Ok(true)` if it holds non-ASCII (U-labels).
fn domain_or_literal(d: &str) -> Result<bool, PathError> {
    if let Some(inner) = d.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(PathError::Domain)?;
        let dcontent = |c: u8| (33..=90).contains(&c) || (94..=126).contains(&c);
        return if !inner.is_empty() && inner.bytes().all(dcontent) {
            Ok(false)
        } else {
            Err(PathError::Domain)
        };
    }
    if d.is_empty() || d.len() > 255 {
        return Err(PathError::Domain);
    }
    let mut non_ascii = false;
    for label in d.split('.') {
        let ok_byte = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c >= 0x80;
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label.bytes().all(ok_byte)
        {
            return Err(PathError::Domain);
        }
        non_ascii |= !label.is_ascii();
    }
    Ok(non_ascii)
}

/// One ESMTP parameter, `KEYWORD` or `KEYWORD=value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Param<'a> {
    pub keyword: &'a str,
    pub value: Option<&'a str>,
}

/// Parameters that do not follow `esmtp-param` (RFC 5321 §4.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("Error: bad parameter syntax")]
pub(super) struct ParamError;

/// The space-separated parameters after a path.
pub(super) fn params(s: &str) -> Result<Vec<Param<'_>>, ParamError> {
    s.split(' ')
        .filter(|word| !word.is_empty())
        .map(|word| {
            let (keyword, value) = match word.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (word, None),
            };
            let kb = keyword.as_bytes();
            let keyword_ok = kb.first().is_some_and(u8::is_ascii_alphanumeric)
                && kb.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-');
            // esmtp-value: %d33-60 / %d62-126, and UTF-8 beyond ASCII (RFC 6531).
            let value_ok = value.is_none_or(|v| {
                !v.is_empty()
                    && v.bytes()
                        .all(|c| ((33..=126).contains(&c) && c != b'=') || c >= 0x80)
            });
            if keyword_ok && value_ok {
                Ok(Param { keyword, value })
            } else {
                Err(ParamError)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address<'_> {
        forward_path(s).unwrap().0
    }

    #[test]
    fn splits_verb_and_arguments() {
        let c = command_line(b"mail FROM:<a@b>  \r\n").unwrap();
        assert_eq!(c.verb, Verb::Mail);
        assert_eq!(c.args, "FROM:<a@b>");
        let c = command_line(b"NOOP\n").unwrap();
        assert_eq!((c.verb, c.args), (Verb::Noop, ""));
        assert_eq!(command_line(b"StartTLS\r\n").unwrap().verb, Verb::StartTls);
        assert_eq!(command_line(b"FROB x\r\n").unwrap().verb, Verb::Unknown);
        assert_eq!(
            command_line(b"GET / HTTP/1.1\r\n").unwrap().verb,
            Verb::Http
        );
    }

    #[test]
    fn refuses_control_characters_and_bad_utf8() {
        assert_eq!(command_line(b"NOOP\rRSET\r\n"), Err(LineError::Control));
        assert_eq!(command_line(b"NOOP\0\r\n"), Err(LineError::Control));
        assert_eq!(command_line(b"NOOP \xff\r\n"), Err(LineError::NotUtf8));
        assert!(command_line(b"NOOP\tx\r\n").is_ok());
    }

    #[test]
    fn keywords_ignore_case_and_allow_a_space() {
        assert_eq!(after_keyword("from:<a@b>", "FROM:"), Some("<a@b>"));
        assert_eq!(after_keyword("FROM: <a@b>", "FROM:"), Some("<a@b>"));
        assert_eq!(after_keyword("FROM<a@b>", "FROM:"), None);
        assert_eq!(after_keyword("TO", "FROM:"), None);
        assert_eq!(after_keyword("fröm:x", "FROM:"), None);
    }

    #[test]
    fn plain_addresses() {
        let a = addr("<Bob.Smith+tag@Maildrop.Localhost>");
        assert_eq!(a.local, "Bob.Smith+tag");
        assert_eq!(a.domain, Some("Maildrop.Localhost"));
        assert!(!a.quoted && !a.non_ascii);
        assert_eq!(a.as_written(), "Bob.Smith+tag@Maildrop.Localhost");
        assert_eq!(addr("<a@[192.0.2.1]>").domain, Some("[192.0.2.1]"));
        assert_eq!(
            addr("<a@[IPv6:2001:db8::1]>").domain,
            Some("[IPv6:2001:db8::1]")
        );
    }

    #[test]
    fn source_routes_are_dropped() {
        let a = addr("<@a.example,@[192.0.2.1]:bob@d.example>");
        assert_eq!(a.as_written(), "bob@d.example");
        assert_eq!(forward_path("<@a.example:bob@d>").unwrap().0.local, "bob");
        for bad in [
            "<@:bob@d>",
            "<@a,bob@d>",
            "<@a;@b:bob@d>",
            "<@a.example bob@d>",
        ] {
            assert_eq!(forward_path(bad).unwrap_err(), PathError::Route, "{bad}");
        }
    }

    #[test]
    fn quoted_local_parts() {
        let a = addr(r#"<"john doe"@x.example>"#);
        assert!(a.quoted);
        assert_eq!(a.local, r#""john doe""#);
        let a = addr(r#"<"a\"b>c"@x.example>"#);
        assert_eq!(a.local, r#""a\"b>c""#);
        assert_eq!(
            forward_path(r#"<"abc@x>"#).unwrap_err(),
            PathError::LocalPart
        );
    }

    #[test]
    fn non_ascii_is_reported() {
        assert!(addr("<jøran@x.example>").non_ascii);
        assert!(addr("<bob@bücher.example>").non_ascii);
        assert!(addr(r#"<"jø ran"@x.example>"#).non_ascii);
    }

    #[test]
    fn null_and_postmaster() {
        assert_eq!(reverse_path("<>").unwrap(), (None, ""));
        assert_eq!(reverse_path("<> SIZE=10").unwrap(), (None, " SIZE=10"));
        assert_eq!(forward_path("<>").unwrap_err(), PathError::Null);
        assert_eq!(addr("<Postmaster>").domain, None);
        assert_eq!(forward_path("<bob>").unwrap_err(), PathError::NoDomain);
        assert_eq!(
            reverse_path("<postmaster>").unwrap_err(),
            PathError::NoDomain
        );
    }

    #[test]
    fn bad_paths() {
        let cases = [
            ("bob@x", PathError::Brackets),
            ("<bob@x", PathError::Brackets),
            ("", PathError::Brackets),
            ("<@x>", PathError::Route),
            ("<bob@>", PathError::Domain),
            ("<bob@x..y>", PathError::Domain),
            ("<bob@-x>", PathError::Domain),
            ("<bob@x y>", PathError::Domain),
            ("<bob@[]>", PathError::Domain),
            ("<.bob@x>", PathError::LocalPart),
            ("<bob.@x>", PathError::LocalPart),
            ("<b..ob@x>", PathError::LocalPart),
            ("<b ob@x>", PathError::LocalPart),
            ("<bob@x>junk", PathError::Trailing),
            ("<>junk", PathError::Trailing),
        ];
        for (input, want) in cases {
            assert_eq!(forward_path(input).map(|_| ()), Err(want), "{input}");
        }
    }

    #[test]
    fn parameters() {
        let p = params(" SIZE=100 BODY=8BITMIME  SMTPUTF8").unwrap();
        assert_eq!(
            p,
            vec![
                Param {
                    keyword: "SIZE",
                    value: Some("100")
                },
                Param {
                    keyword: "BODY",
                    value: Some("8BITMIME")
                },
                Param {
                    keyword: "SMTPUTF8",
                    value: None
                },
            ]
        );
        assert!(params("").unwrap().is_empty());
        for bad in [" SIZE=", " =1", " -X=1", " A=b=c", " A\u{7f}"] {
            assert_eq!(params(bad), Err(ParamError), "{bad:?}");
        }
    }
}
