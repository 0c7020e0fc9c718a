//! Aliases ("altinbox"): a second, unguessable address for every mailbox.
//!
//! The alias of `bob` is `d-` followed by 16 base32 characters (80 bits) of
//! HMAC-SHA256(`MAILDROP_ALIAS_KEY`, `bob`). Mail to the alias lands in `bob`; knowing the alias does
//! not reveal `bob` (the HMAC is one-way), and knowing any number of (mailbox, alias) pairs does not
//! reveal the key (HMAC is a PRF). The old service's reversible scheme had neither property.
//!
//! An alias cannot be turned back into its mailbox without a table: whoever reveals an alias (the
//! gateway, when it lists a mailbox) records `alias → mailbox` in Redis, and whoever receives mail for
//! one looks it up there. Names of that exact shape are therefore aliases, never mailboxes of their own.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::mailbox::Mailbox;

/// Every alias starts with this.
pub const PREFIX: &str = "d-";
const BODY_LEN: usize = 16;
/// RFC 4648 base32 alphabet, lower-cased (mailbox names are lower-case).
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The alias of `mailbox` under `key`.
pub fn alias_of(key: &[u8], mailbox: &Mailbox) -> Mailbox {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(mailbox.as_str().as_bytes());
    let digest = mac.finalize().into_bytes();
    // 16 characters × 5 bits = 80 bits = the first 10 bytes of the digest.
    let mut bits: u128 = 0;
    for b in &digest[..10] {
        bits = (bits << 8) | u128::from(*b);
    }
    let mut name = String::with_capacity(PREFIX.len() + BODY_LEN);
    name.push_str(PREFIX);
    for i in (0..BODY_LEN).rev() {
        name.push(ALPHABET[((bits >> (i * 5)) & 31) as usize] as char);
    }
    Mailbox::parse(&name).expect("an alias is a valid mailbox name")
}

/// Whether `mailbox` has the shape of an alias.
pub fn is_alias(mailbox: &Mailbox) -> bool {
    mailbox
        .as_str()
        .strip_prefix(PREFIX)
        .is_some_and(|body| body.len() == BODY_LEN && body.bytes().all(|b| ALPHABET.contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(s: &str) -> Mailbox {
        Mailbox::parse(s).unwrap()
    }

    #[test]
    fn aliases_are_stable_keyed_and_distinct() {
        let a = alias_of(b"secret", &mb("bob"));
        assert_eq!(a, alias_of(b"secret", &mb("Bob")));
        assert_ne!(a, alias_of(b"other secret", &mb("bob")));
        assert_ne!(a, alias_of(b"secret", &mb("bob2")));
        assert!(is_alias(&a));
        assert_eq!(a.as_str().len(), 18);
        assert!(!a.as_str().contains("bob"));
    }

    #[test]
    fn only_the_exact_shape_is_an_alias() {
        assert!(!is_alias(&mb("d-short")));
        assert!(!is_alias(&mb("bob")));
        assert!(!is_alias(&mb("d-abcdefghijklmnop1")));
        assert!(
            !is_alias(&mb("d-abcdefghijklmno1")),
            "1 is not in the base32 alphabet"
        );
        assert!(is_alias(&mb("d-abcdefghijklmnop")));
    }

    #[test]
    fn a_known_vector() {
        // Checked independently with Python:
        //   "d-" + base32(hmac.new(b"key", b"bob", sha256).digest()[:10]).lower()
        // Pinning it keeps aliases stable across releases: changing them would break every alias
        // people have saved.
        assert_eq!(alias_of(b"key", &mb("bob")).as_str(), "d-haz4amg4w6trbaxd");
    }
}
