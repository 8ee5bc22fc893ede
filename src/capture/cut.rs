//! Cutting a stored request body to `capture_max_body` once it is redacted, keeping its JSON
//! shape so what is kept reads as the request did. Pure: no I/O.
//!
//! The cut runs after redaction (see `Item::prepared`): a secret that straddled the cut point
//! was already replaced whole, so no prefix of one is left to escape the patterns.

use super::CaptureRecord;
use serde_json::Value;

/// Cuts `record`'s request to `max` bytes of JSON (already marked `truncated` when it was
/// longer); one whose keys and numbers alone are larger is not stored at all.
pub fn request(record: &mut CaptureRecord, max: usize) {
    if let Some(request) = record.request.as_mut()
        && !fit(request.tree_mut(), max)
    {
        *request = Value::Null.into();
    }
}

/// Shortens `v`'s strings, the longest first, until its JSON text is at most `max` bytes: every
/// string whose JSON form is longer than one common length is cut to it, on a character
/// boundary. `false` when even empty strings would not fit (keys, numbers and punctuation alone
/// are larger than `max`).
pub fn fit(v: &mut Value, max: usize) -> bool {
    // Each pass removes at least the excess it measured: one is enough, the bound is a guard.
    for _ in 0..4 {
        let len = json_len(v);
        let Some(excess) = len.checked_sub(max).filter(|e| *e > 0) else {
            return true;
        };
        let mut lens = Vec::new();
        strings(v, &mut |s| lens.push(escaped_len(s)));
        let cut_at = |c: usize| lens.iter().map(|l| l.saturating_sub(c)).sum::<usize>();
        if cut_at(0) < excess {
            return false;
        }
        // The longest common length that still removes `excess` bytes (what is removed falls
        // as the length grows).
        let (mut lo, mut hi) = (0, lens.iter().copied().max().unwrap_or(0));
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if cut_at(mid) >= excess {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        cut_strings(v, lo);
    }
    json_len(v) <= max
}

/// Reads a JSON text cut short (the request aloud kept, a prefix of a longer body): the prefix up
/// to its last complete member or element, with the containers still open closed. A string the
/// cut fell inside is dropped whole, with its key: a secret cut in two would leave a prefix no
/// pattern matches. `None` when no container opened, or the text is not JSON. A BOM is skipped.
///
/// Written by hand: a JSON parser that stops at the first error has no partial result.
pub fn repair(prefix: &[u8]) -> Option<Value> {
    let text = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(prefix);
    let mut stack: Vec<u8> = Vec::new();
    // The last place the text can end: its length, and the containers open there.
    let mut safe: Option<(usize, Vec<u8>)> = None;
    let (mut in_string, mut escaped) = (false, false);
    for (i, &b) in text.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                stack.push(if b == b'{' { b'}' } else { b']' });
                safe = Some((i + 1, stack.clone()));
            }
            b'}' | b']' => {
                if stack.pop() != Some(b) {
                    return None;
                }
                safe = Some((i + 1, stack.clone()));
            }
            // Before a comma, the member or element it ends is whole.
            b',' if !stack.is_empty() => safe = Some((i, stack.clone())),
            _ => {}
        }
    }
    let (end, open) = safe?;
    let mut fixed = text[..end].to_vec();
    fixed.extend(open.iter().rev());
    serde_json::from_slice(&fixed).ok()
}

fn json_len(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

/// A character's length inside a JSON string as serde_json writes it.
fn char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

fn escaped_len(s: &str) -> usize {
    s.chars().map(char_len).sum()
}

fn strings(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().for_each(|i| strings(i, f)),
        Value::Object(map) => map.values().for_each(|i| strings(i, f)),
        _ => {}
    }
}

/// Cuts every string whose JSON form is longer than `at` bytes to a prefix whose form fits.
fn cut_strings(v: &mut Value, at: usize) {
    match v {
        Value::String(s) => {
            let mut used = 0;
            let end = s
                .char_indices()
                .find(|(_, c)| {
                    used += char_len(*c);
                    used > at
                })
                .map(|(i, _)| i);
            if let Some(end) = end {
                s.truncate(end);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| cut_strings(i, at)),
        Value::Object(map) => map.values_mut().for_each(|i| cut_strings(i, at)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fitted(v: &Value, max: usize) -> Option<Value> {
        let mut v = v.clone();
        fit(&mut v, max).then_some(v)
    }

    #[test]
    fn the_longest_strings_are_cut_until_it_fits_and_the_shape_stays() {
        let v = json!({"model": "m", "api_key": "sk-secret", "messages": [
            {"role": "user", "content": "x".repeat(1000)},
            {"role": "assistant", "content": "é".repeat(300)},
            // Escapes count as written: quotes, newlines, control characters.
            {"role": "tool", "content": "\"q\"\n\u{1}".repeat(200)},
        ]});
        let len = json_len(&v);
        for max in [200, 400, 900, 1500, 2500] {
            let got = fitted(&v, max).unwrap();
            let text = serde_json::to_string(&got).unwrap();
            assert!(text.len() <= max, "{max}: {} bytes", text.len());
            // Short strings and every key survive; the shape is the same.
            assert_eq!(got["model"], "m");
            assert_eq!(got["api_key"], "sk-secret");
            assert_eq!(got["messages"][2]["role"], "tool");
        }
        assert_eq!(fitted(&v, len), Some(v.clone()), "it fits as it is");
    }

    #[test]
    fn a_cut_json_text_is_read_up_to_its_last_whole_member() {
        let whole = br#"{"model":"m","api_key":"sk-1","messages":[{"role":"user","content":"hi"},{"role":"user","content":"a \"quoted\" [text] {x}, and sk-secretsecretsecret"}],"stream":true}"#;
        let cases: [(usize, Value); 5] = [
            // Inside the second message's content: that member is dropped, not cut.
            (
                150,
                json!({"model":"m","api_key":"sk-1","messages":[{"role":"user","content":"hi"},{"role":"user"}]}),
            ),
            // Inside the first message.
            (
                58,
                json!({"model":"m","api_key":"sk-1","messages":[{"role":"user"}]}),
            ),
            // Inside the first key.
            (3, json!({})),
            (
                whole.len() - 1,
                json!({"model":"m","api_key":"sk-1","messages":[{"role":"user","content":"hi"},{"role":"user","content":"a \"quoted\" [text] {x}, and sk-secretsecretsecret"}]}),
            ),
            (whole.len(), serde_json::from_slice(whole).unwrap()),
        ];
        for (at, want) in cases {
            assert_eq!(repair(&whole[..at]), Some(want), "cut at {at}");
        }
        for prefix in [&b""[..], b"   ", b"\"text", b"{\"a\":]", b"12345"] {
            assert_eq!(
                repair(prefix),
                None,
                "{:?}",
                String::from_utf8_lossy(prefix)
            );
        }
        assert_eq!(repair(b"\xEF\xBB\xBF[1,2,3"), Some(json!([1, 2])));
    }

    /// Every string a repaired prefix holds, key or value, is one of the whole text's: a cut
    /// never leaves part of a string (part of a secret) behind, wherever it falls.
    #[test]
    fn no_cut_point_leaves_part_of_a_string() {
        let doc = json!({
            "model": "m", "api_key": "sk-abcdefghijklmnopqrstuvwx",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a \"q\" \\ [x] {y}, z"}]},
                {"role": "assistant", "content": "é😀\n\t\u{1}", "n": [1, -2.5e3, true, null]},
                [], {}, [[{"deep": ["x,y", {"k": "}]"}]}]]
            ],
            "stream": true
        });
        let text = serde_json::to_vec(&doc).unwrap();
        let mut whole = Vec::new();
        strings_and_keys(&doc, &mut whole);
        for at in 0..=text.len() {
            let Some(v) = repair(&text[..at]) else {
                continue;
            };
            let mut got = Vec::new();
            strings_and_keys(&v, &mut got);
            for s in got {
                assert!(whole.contains(&s), "cut at {at}: {s:?} is part of a string");
            }
        }
    }

    fn strings_and_keys(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| strings_and_keys(i, out)),
            Value::Object(map) => map.iter().for_each(|(k, i)| {
                out.push(k.clone());
                strings_and_keys(i, out);
            }),
            _ => {}
        }
    }

    #[test]
    fn a_shape_larger_than_the_bound_does_not_fit() {
        let v = json!({"numbers": (0..200).collect::<Vec<u32>>(), "s": "abc"});
        assert_eq!(fitted(&v, 100), None);
        // A bare string is cut like any other.
        let s = fitted(&json!("a\"b".repeat(100)), 11).unwrap();
        assert!(serde_json::to_string(&s).unwrap().len() <= 11, "{s}");
    }
}
