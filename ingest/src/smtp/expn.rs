//! `EXPN`: `502 5.5.1`, not implemented.
//!
//! There are no mailing lists to expand, so unlike `VRFY` (which clients use to probe and which
//! `252` answers harmlessly) the honest answer is that the command does not exist here. Like every
//! `5xx` to a command, it counts as a bad command.

use super::reply::Reply;

pub(super) fn expn() -> Reply {
    Reply::new(502, (5, 5, 1), "Error: EXPN not supported")
}
