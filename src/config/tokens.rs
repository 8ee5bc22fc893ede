//! Client tokens: matching a presented token in constant time, and the [`Owner`] fingerprint
//! that stands for a token wherever aloud keeps it (hub, capture records, the store).
//!
//! A token itself is never kept past the check. Its fingerprint is
//! `HMAC-SHA-256(key = "aloud owner v1", token)` cut to 128 bits. That is safe to store and log:
//! - it is one-way: finding a token from it takes a preimage of SHA-256 or guessing the token,
//!   and client tokens are meant to be long random secrets (docs/config.md asks for at least
//!   128 random bits), so guessing is out of reach;
//! - it is not a credential: aloud only accepts a configured token, and a fingerprint presented
//!   as one is fingerprinted again and matches nothing;
//! - the fixed, versioned key separates it from any plain hash of the same secret that another
//!   system may keep, and 128 bits leave no practical chance of two tokens sharing an owner.

use ring::hmac;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::OnceLock;

/// Domain separation for the fingerprint (a new scheme gets a new key, never a changed one).
const OWNER_KEY: &[u8] = b"aloud owner v1";

/// Who made a request: the fingerprint of the client token it was made with.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner([u8; 16]);

impl Owner {
    /// The fingerprint of `token` (which must already have been matched against the config).
    fn of(token: &[u8]) -> Owner {
        static KEY: OnceLock<hmac::Key> = OnceLock::new();
        let key = KEY.get_or_init(|| hmac::Key::new(hmac::HMAC_SHA256, OWNER_KEY));
        let tag = hmac::sign(key, token);
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag.as_ref()[..16]);
        Owner(out)
    }

    /// Parses the 32 lowercase hex digits that `Display` writes.
    pub fn parse(text: &str) -> Option<Owner> {
        let bytes = text.as_bytes();
        if bytes.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hex = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(hex, 16).ok()?;
        }
        Some(Owner(out))
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Owner({self})")
    }
}

impl Serialize for Owner {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Owner {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Owner, D::Error> {
        let text = String::deserialize(d)?;
        Owner::parse(&text).ok_or_else(|| serde::de::Error::custom("an owner is 32 hex digits"))
    }
}

/// The owner of `presented` when it is one of `tokens`, else `None`.
///
/// Constant time in the token's content: both sides are reduced to fixed-size fingerprints
/// first, every configured token is compared (no early exit), and the comparison itself does
/// not stop at the first differing byte. Only the number of configured tokens shows.
pub fn find(presented: &str, tokens: &[String]) -> Option<Owner> {
    let presented = presented.trim();
    if presented.is_empty() {
        return None;
    }
    let candidate = Owner::of(presented.as_bytes());
    let mut found = 0u8;
    for token in tokens {
        found |= u8::from(same(&Owner::of(token.as_bytes()).0, &candidate.0));
    }
    (found == 1).then_some(candidate)
}

/// `true` when `a == b`, without an early exit on the first differing byte.
fn same(a: &[u8; 16], b: &[u8; 16]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A `Bearer` credential's token (the scheme is case-insensitive, and any run of spaces or
/// tabs may follow it), or the value itself.
pub fn strip_bearer(value: &str) -> &str {
    let value = value.trim();
    match value.split_once([' ', '\t']) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => value,
    }
}

/// `%XX` decoding (a token is ASCII; anything undecodable is kept as it is).
pub fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_token_gives_its_owner_and_others_none() {
        let tokens = vec!["tok-aaaaaaaa".to_owned(), "tok-bbbbbbbb".to_owned()];
        let a = find("tok-aaaaaaaa", &tokens).unwrap();
        let b = find(" tok-bbbbbbbb ", &tokens).unwrap();
        assert_ne!(a, b);
        assert_eq!(find("tok-aaaaaaaa", &tokens), Some(a), "stable");
        assert_eq!(find("tok-aaaaaaa", &tokens), None);
        assert_eq!(find("", &tokens), None);
        // The fingerprint itself is not a credential.
        assert_eq!(find(&a.to_string(), &tokens), None);
    }

    #[test]
    fn owners_round_trip_as_hex_and_never_show_the_token() {
        let tokens = vec!["secret-token-1234".to_owned()];
        let owner = find("secret-token-1234", &tokens).unwrap();
        let text = owner.to_string();
        assert_eq!(text.len(), 32);
        assert!(!text.contains("secret"));
        assert_eq!(Owner::parse(&text), Some(owner));
        let json = serde_json::to_string(&owner).unwrap();
        assert_eq!(serde_json::from_str::<Owner>(&json).unwrap(), owner);
        assert!(!format!("{owner:?}").contains("secret"));
        assert_eq!(Owner::parse("zz"), None);
    }

    #[test]
    fn bearer_is_stripped_whatever_its_case() {
        assert_eq!(strip_bearer("Bearer abc"), "abc");
        assert_eq!(strip_bearer("bearer  abc "), "abc");
        assert_eq!(strip_bearer("abc"), "abc");
        assert_eq!(strip_bearer("bearer\t\tabc"), "abc");
        assert_eq!(strip_bearer("Basic abc"), "Basic abc");
    }
}
