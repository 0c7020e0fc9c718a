//! `MAIL FROM:<reverse-path> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8]`: start a transaction.
//!
//! The sender is recorded, never used for routing, so any well-formed path is accepted, including
//! the null sender `<>` and quoted local parts. What we check is what keeps the transaction
//! consistent: a greeting came first, no transaction is open, every parameter is one we advertised,
//! a declared size fits, and non-ASCII appears only under `SMTPUTF8` (RFC 6531 §3.4).

use super::Session;
use super::parse;
use super::reply::{self, Reply};
use super::transaction::Draft;

pub(super) fn mail(s: &mut Session, args: &str) -> Reply {
    if s.helo.is_none() {
        return reply::bad_sequence("send HELO/EHLO first");
    }
    if s.tx.is_some() {
        return reply::bad_sequence("nested MAIL command");
    }
    let Some(path) = parse::after_keyword(args, "FROM:") else {
        return reply::syntax("MAIL FROM:<address>");
    };
    let (address, rest) = match parse::reverse_path(path) {
        Ok(parsed) => parsed,
        Err(e) => return Reply::new(501, (5, 1, 7), format!("Bad sender address syntax: {e}")),
    };
    let params = match parse::params(rest) {
        Ok(params) => params,
        Err(e) => return Reply::new(501, (5, 5, 4), e.to_string()),
    };

    let mut draft = Draft::new(address.map(|a| a.as_written()).unwrap_or_default());
    for param in params {
        let keyword = param.keyword.to_ascii_uppercase();
        match (keyword.as_str(), param.value) {
            ("SIZE", Some(value)) => match value.parse::<u64>() {
                Ok(size) if value.bytes().all(|b| b.is_ascii_digit()) => {
                    draft.declared_size = Some(size)
                }
                _ => return Reply::new(501, (5, 5, 4), "Bad message size syntax"),
            },
            ("BODY", Some(value)) if value.eq_ignore_ascii_case("7BIT") => draft.body_8bit = false,
            ("BODY", Some(value)) if value.eq_ignore_ascii_case("8BITMIME") => {
                draft.body_8bit = true
            }
            ("BODY", Some(_)) => return Reply::new(555, (5, 5, 4), "Unsupported BODY type"),
            ("SMTPUTF8", None) => draft.smtputf8 = true,
            ("SIZE" | "BODY", None) | ("SMTPUTF8", Some(_)) => {
                return Reply::new(501, (5, 5, 4), format!("Bad {keyword} parameter syntax"));
            }
            _ => return Reply::new(555, (5, 5, 4), format!("Unsupported parameter {keyword}")),
        }
    }

    if address.is_some_and(|a| a.non_ascii) && !draft.smtputf8 {
        return Reply::new(553, (5, 6, 7), "Non-ASCII address requires SMTPUTF8");
    }
    let limit = s.config.max_message_size as u64;
    if draft.declared_size.is_some_and(|size| size > limit) {
        return reply::message_too_big();
    }
    s.tx = Some(draft);
    reply::ok((2, 1, 0))
}
