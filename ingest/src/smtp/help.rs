//! `HELP`: `214` with the commands this session takes; the argument, if any, is ignored.

use super::Session;
use super::reply::Reply;

pub(super) fn help(s: &Session) -> Reply {
    let mut text = "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP".to_owned();
    if s.config.starttls_available && !s.tls {
        text.push_str(" STARTTLS");
    }
    Reply::new(214, (2, 0, 0), text)
}
