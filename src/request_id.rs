//! The `Aloud-Request-Id` header: a client-chosen id (validated) or a fresh UUIDv7.
//!
//! Ids act as capabilities (a progress side channel is keyed by them), so generated ids carry
//! 74 random bits and client ids must be long enough not to be guessed.

use http::{HeaderMap, HeaderName};

pub mod print;

/// A `HeaderName`, not a string: a lookup or insert by `&str` parses and hashes the name every
/// time, and every request reads this header and every response carries it.
pub const HEADER: HeaderName = HeaderName::from_static("aloud-request-id");

/// Why a client-supplied id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Aloud-Request-Id must be 16-64 characters of A-Z, a-z, 0-9, '_' or '-'")]
pub struct InvalidRequestId;

/// A fresh, unguessable, time-ordered id.
pub fn generate() -> String {
    // Encoded straight into a buffer: `to_string` went through `fmt` (a fifth of this call).
    let mut buf = uuid::Uuid::encode_buffer();
    uuid::Uuid::now_v7()
        .hyphenated()
        .encode_lower(&mut buf)
        .to_owned()
}

/// Whether `id` is an acceptable client-chosen id.
pub fn is_valid(id: &str) -> bool {
    (16..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The client's id when it sent a valid one, a fresh id when it sent none.
pub fn from_headers(headers: &HeaderMap) -> Result<String, InvalidRequestId> {
    let mut values = headers.get_all(HEADER).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(generate()),
        (Some(v), None) => match v.to_str() {
            Ok(id) if is_valid(id) => Ok(id.to_owned()),
            _ => Err(InvalidRequestId),
        },
        (Some(_), Some(_)) => Err(InvalidRequestId),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_client_ids() {
        assert!(is_valid("abcdefghijklmnop"));
        assert!(is_valid(&"a".repeat(64)));
        assert!(!is_valid("short"));
        assert!(!is_valid(&"a".repeat(65)));
        assert!(!is_valid("abcdefghijklmnop!"));
        assert!(is_valid(&generate()));
        assert_ne!(generate(), generate());
    }
}
