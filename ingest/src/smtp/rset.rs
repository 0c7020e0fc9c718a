//! `RSET`: abandon the transaction, keep the greeting (RFC 5321 §4.1.1.5).

use super::Session;
use super::reply::{self, Reply};

pub(super) fn rset(s: &mut Session, args: &str) -> Reply {
    if !args.is_empty() {
        return reply::syntax("RSET");
    }
    s.tx = None;
    reply::ok((2, 0, 0))
}
