//! `QUIT`: `221`, then the session only says `Close`.
//!
//! Any argument is ignored: a client that wants to leave should be let go, not argued with.

use super::Session;
use super::reply::Reply;

pub(super) fn quit(s: &mut Session) -> Reply {
    s.closing();
    Reply::new(
        221,
        (2, 0, 0),
        format!("{} closing connection", s.config.hostname),
    )
}
