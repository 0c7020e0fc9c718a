//! `VRFY`: always `252 2.5.0`, which RFC 5321 §3.5.3 allows for a server that will not say.
//!
//! Every valid name at our domains is a mailbox, so a truthful answer would be "yes" to almost
//! anything, and an answer that depended on the name would be an oracle for harvesting. `252` tells
//! the client to just send.

use super::reply::{self, Reply};

pub(super) fn vrfy(args: &str) -> Reply {
    if args.is_empty() {
        return reply::syntax("VRFY address");
    }
    Reply::new(
        252,
        (2, 5, 0),
        "Cannot VRFY user, but will accept message and attempt delivery",
    )
}
