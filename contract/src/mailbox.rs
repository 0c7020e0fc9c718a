//! Mailbox names: the local part of `anything@<our domain>`.
//!
//! A [`Mailbox`] is validated once, at the edge (SMTP `RCPT TO`, an API path), and is then trusted
//! everywhere: in Redis keys, in NATS subjects, in events.
//!
//! The rules, chosen to be predictable for people typing a name into a web page:
//! - case-insensitive, stored lower-case (`Bob` and `bob` are one mailbox);
//! - 1 to [`MAX_LEN`] characters from `a-z`, `0-9`, `.`, `_`, `-`;
//! - sub-addressing: in an address, everything from the first `+` is a tag and is dropped, so mail to
//!   `bob+github@…` lands in `bob` (see [`Mailbox::from_local_part`]);
//! - quoted local parts and anything else outside that set are refused rather than mangled.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest mailbox name: RFC 5321's limit for a local part.
pub const MAX_LEN: usize = 64;

/// A validated, lower-case mailbox name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Mailbox(String);

/// Why a string is not a mailbox name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMailbox {
    #[error("mailbox name is empty")]
    Empty,
    #[error("mailbox name is longer than {MAX_LEN} characters")]
    TooLong,
    #[error("mailbox name may contain only letters, digits, '.', '_' and '-'")]
    BadCharacter,
}

fn allowed(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-')
}

impl Mailbox {
    /// Validates a mailbox name (as typed on the web page or in an API path).
    pub fn parse(name: &str) -> Result<Self, InvalidMailbox> {
        if name.is_empty() {
            return Err(InvalidMailbox::Empty);
        }
        if name.len() > MAX_LEN {
            return Err(InvalidMailbox::TooLong);
        }
        if !name.bytes().all(allowed) {
            return Err(InvalidMailbox::BadCharacter);
        }
        Ok(Self(name.to_ascii_lowercase()))
    }

    /// The mailbox an address's local part delivers to: the `+tag` is dropped, the rest validated.
    pub fn from_local_part(local: &str) -> Result<Self, InvalidMailbox> {
        if local.len() > MAX_LEN {
            return Err(InvalidMailbox::TooLong);
        }
        let base = local.split_once('+').map_or(local, |(base, _tag)| base);
        Self::parse(base)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as one NATS subject token: every byte outside `[a-z0-9_-]` (that is, `.`) is
    /// percent-encoded, so a name can never add a token or a wildcard to a subject.
    pub fn subject_token(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for b in self.0.bytes() {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    /// The inverse of [`Mailbox::subject_token`].
    pub fn from_subject_token(token: &str) -> Result<Self, InvalidMailbox> {
        let bytes = token.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = token
                    .get(i + 1..i + 3)
                    .ok_or(InvalidMailbox::BadCharacter)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| InvalidMailbox::BadCharacter)?);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        let name = String::from_utf8(out).map_err(|_| InvalidMailbox::BadCharacter)?;
        Self::parse(&name)
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Mailbox {
    type Err = InvalidMailbox;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for Mailbox {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Mailbox {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let s = String::deserialize(de)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_cases_names() {
        assert_eq!(Mailbox::parse("Bob.Smith").unwrap().as_str(), "bob.smith");
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(Mailbox::parse(""), Err(InvalidMailbox::Empty));
        assert_eq!(
            Mailbox::parse(&"a".repeat(65)),
            Err(InvalidMailbox::TooLong)
        );
        assert!(Mailbox::parse(&"a".repeat(64)).is_ok());
        for bad in [
            "a b", "a*b", "a>b", "\"bob\"", "bob@x", "bøb", "a\r\nb", "a+b",
        ] {
            assert_eq!(
                Mailbox::parse(bad),
                Err(InvalidMailbox::BadCharacter),
                "{bad}"
            );
        }
    }

    #[test]
    fn drops_the_subaddress_tag() {
        assert_eq!(
            Mailbox::from_local_part("Bob+GitHub").unwrap().as_str(),
            "bob"
        );
        assert_eq!(Mailbox::from_local_part("+tag"), Err(InvalidMailbox::Empty));
    }

    #[test]
    fn subject_tokens_have_no_dots_and_round_trip() {
        let mb = Mailbox::parse("john.doe-x_1").unwrap();
        let token = mb.subject_token();
        assert_eq!(token, "john%2Edoe-x_1");
        assert!(!token.contains(['.', '*', '>', ' ']));
        assert_eq!(Mailbox::from_subject_token(&token).unwrap(), mb);
    }

    #[test]
    fn garbage_tokens_are_refused() {
        assert!(Mailbox::from_subject_token("%").is_err());
        assert!(Mailbox::from_subject_token("%zz").is_err());
        assert!(Mailbox::from_subject_token("%2A").is_err());
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<Mailbox>("\"a b\"").is_err());
        assert_eq!(
            serde_json::from_str::<Mailbox>("\"Ab\"").unwrap().as_str(),
            "ab"
        );
    }
}
