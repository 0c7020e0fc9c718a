//! `NOOP`: succeeds and changes nothing; an argument is allowed and ignored (RFC 5321 §4.1.1.9).

use super::reply::{self, Reply};

pub(super) fn noop() -> Reply {
    reply::ok((2, 0, 0))
}
