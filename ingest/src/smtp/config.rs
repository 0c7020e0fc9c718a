//! What an SMTP session may accept, as one plain struct.
//!
//! The binary fills it from flags (and validates the values there, loudly); the session only reads
//! it. It is shared by every connection behind an `Arc`, so it holds no per-connection state.
//! Defaults are named constants so the flag definitions can show them.

/// The name the server greets with, when none is configured.
pub const DEFAULT_HOSTNAME: &str = "maildrop.localhost";
/// 10 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 10 * 1024 * 1024;
/// RFC 5321 §4.5.3.1.8: a server must accept at least 100 recipients.
/// Postfix's `header_size_limit`.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 100 * 1024;
pub const DEFAULT_MAX_RECIPIENTS: usize = 100;
/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets, CRLF included.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 512;
pub const DEFAULT_MAX_BAD_COMMANDS: u32 = 20;
pub const DEFAULT_MAX_COMMANDS: u32 = 1000;

/// Limits and identity of the SMTP server, the same for every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our name, in the greeting, the `EHLO` reply and `421` replies.
    pub hostname: String,
    /// The domains we accept mail for, lower-case. A recipient's domain must equal one of them
    /// (ignoring ASCII case); anything else is `550 5.7.1 Relay access denied`.
    pub domains: Vec<String>,
    /// The largest message body, in octets after dot-unstuffing; announced as `SIZE`. A `MAIL FROM`
    /// that declares more is refused with `552 5.3.4`; a body that turns out larger is read to its
    /// end, discarded and refused with `552 5.3.4`, and the connection stays usable.
    pub max_message_size: usize,
    /// The largest header block (everything before the first empty line), in octets; a message with
    /// a larger one is read to its end and refused with `552 5.3.4`.
    pub max_header_size: usize,
    /// Accepted `RCPT TO` per transaction; the next one gets `452 4.5.3`.
    pub max_recipients: usize,
    /// The longest command line, CRLF included; longer lines are skipped and answered with
    /// `500 5.5.2`. Message bodies are not held to it (see the `data` module).
    pub max_line_length: usize,
    /// Failed commands a connection may make; the next one is answered `421 4.7.0` and the
    /// connection is closed.
    pub max_bad_commands: u32,
    /// Command lines a connection may send in all; the next one is answered `421 4.7.0` and the
    /// connection is closed.
    pub max_commands: u32,
    /// Whether the caller can upgrade the connection to TLS; `STARTTLS` is advertised and accepted
    /// only when this is true and the connection is not already encrypted.
    pub starttls_available: bool,
    /// Whether the caller decides if a client may send mail (greylisting): the first `RCPT` after
    /// each greeting that would be accepted suspends the session with
    /// [`super::Action::CheckClient`] until [`super::Session::client_checked`].
    pub check_client: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            hostname: DEFAULT_HOSTNAME.to_owned(),
            domains: vec![DEFAULT_HOSTNAME.to_owned()],
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            max_line_length: DEFAULT_MAX_LINE_LENGTH,
            max_bad_commands: DEFAULT_MAX_BAD_COMMANDS,
            max_commands: DEFAULT_MAX_COMMANDS,
            starttls_available: false,
            check_client: false,
        }
    }
}

impl SessionConfig {
    /// Whether we accept mail for `domain`.
    pub fn is_our_domain(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }
}
