//! A decoded view of the `\uXXXX` escapes in stored text. JSON text inside a JSON string (tool-call
//! arguments, a model writing JSON) still holds its escapes after the outer parse, and
//! `dave\u0040example.com` is an e-mail to whoever parses it again.

use super::{Edit, Put};

/// Whether `text` holds `\u` (a cheap test: a `memchr` for the backslash; `str::contains`
/// sets up a substring searcher per call, which on short strings cost more than the search).
pub fn has_escape(text: &str) -> bool {
    let bytes = text.as_bytes();
    memchr::memchr_iter(b'\\', bytes).any(|i| bytes.get(i + 1) == Some(&b'u'))
}

/// `text` with each `\uXXXX` escape (or surrogate pair) that stands for a character other than
/// `"`, `\` or a control character replaced by that character, and the edits that did it;
/// `None` when no escape decodes. Those three stay escaped so that JSON text stays valid JSON,
/// and so that decoding never makes a new escape (`\u005cu0040` stays as it is). `\\` is an
/// escaped backslash: a `u` after it is text, as it is to a JSON parser.
pub fn decode(text: &str) -> Option<(String, Vec<Edit>)> {
    // The common case, a string without escapes, costs one byte search.
    if !has_escape(text) {
        return None;
    }
    let bytes = text.as_bytes();
    let mut edits = Vec::new();
    let mut at = 0;
    while let Some(found) = bytes
        .get(at..)
        .and_then(|b| b.iter().position(|&c| c == b'\\'))
    {
        let start = at + found;
        at = match bytes.get(start + 1) {
            Some(b'\\') => start + 2,
            Some(b'u') => match escape_at(bytes, start) {
                Some((ch, len)) if ch != '"' && ch != '\\' && !ch.is_control() => {
                    edits.push(Edit {
                        start,
                        end: start + len,
                        put: Put::Char(ch),
                    });
                    start + len
                }
                _ => start + 2,
            },
            _ => start + 1,
        };
    }
    if edits.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for e in &edits {
        out.push_str(text.get(from..e.start).unwrap_or_default());
        e.put.push_to(&mut out);
        from = e.end;
    }
    out.push_str(text.get(from..).unwrap_or_default());
    Some((out, edits))
}

/// The character the escape at `start` (a `\u`) stands for and the escape's length in bytes: 6,
/// or 12 for a surrogate pair. `None` for a lone surrogate or fewer than four hex digits.
fn escape_at(bytes: &[u8], start: usize) -> Option<(char, usize)> {
    let unit = hex4(bytes, start + 2)?;
    match unit {
        0xD800..=0xDBFF => {
            if bytes.get(start + 6..start + 8) != Some(b"\\u") {
                return None;
            }
            let low = hex4(bytes, start + 8)?;
            if !(0xDC00..=0xDFFF).contains(&low) {
                return None;
            }
            let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
            Some((char::from_u32(code)?, 12))
        }
        0xDC00..=0xDFFF => None,
        _ => Some((char::from_u32(unit)?, 6)),
    }
}

/// Four hex digits at `at` (no sign, as `from_str_radix` would allow).
fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = bytes.get(at..at + 4)?;
    digits.iter().try_fold(0u32, |n, &b| {
        let d = char::from(b).to_digit(16)?;
        Some(n * 16 + d)
    })
}
