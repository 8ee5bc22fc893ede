//! Cutting a stored request body to `capture_max_body` while keeping its JSON shape, so
//! redaction by field name and path still applies to what is kept. Pure: no I/O.

use serde_json::Value;

/// Shortens `v`'s strings, the longest first, until its JSON text (`len` bytes as it came) is
/// at most about `max` bytes: every string longer than one common length is cut to it, on a
/// character boundary. `false` when the shape alone (keys, numbers, punctuation) is larger than
/// `max`: `v` is left as it was and the caller stores none of it.
pub fn fit(v: &mut Value, len: usize, max: usize) -> bool {
    let Some(excess) = len.checked_sub(max).filter(|e| *e > 0) else {
        return true;
    };
    let mut lens = Vec::new();
    strings(v, &mut |s| lens.push(s.len()));
    let cut_at = |c: usize| lens.iter().map(|l| l.saturating_sub(c)).sum::<usize>();
    if cut_at(0) < excess {
        return false;
    }
    // The longest common length that still removes `excess` bytes (what is removed falls as
    // the length grows).
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
    true
}

fn strings(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().for_each(|i| strings(i, f)),
        Value::Object(map) => map.values().for_each(|i| strings(i, f)),
        _ => {}
    }
}

fn cut_strings(v: &mut Value, at: usize) {
    match v {
        Value::String(s) if s.len() > at => {
            let mut end = at;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
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
        let len = serde_json::to_string(&v).map_or(0, |s| s.len());
        fit(&mut v, len, max).then_some(v)
    }

    #[test]
    fn the_longest_strings_are_cut_until_it_fits_and_the_shape_stays() {
        let v = json!({"model": "m", "api_key": "sk-secret", "messages": [
            {"role": "user", "content": "x".repeat(1000)},
            {"role": "assistant", "content": "é".repeat(300)},
        ]});
        let len = serde_json::to_string(&v).unwrap().len();
        for max in [200, 400, 900, 1500] {
            let got = fitted(&v, max).unwrap();
            let text = serde_json::to_string(&got).unwrap();
            assert!(text.len() <= max, "{max}: {} bytes", text.len());
            // Short strings and every key survive; the shape is the same.
            assert_eq!(got["model"], "m");
            assert_eq!(got["api_key"], "sk-secret");
            assert_eq!(got["messages"][1]["role"], "assistant");
        }
        assert_eq!(fitted(&v, len), Some(v.clone()), "it fits as it is");
    }

    #[test]
    fn a_shape_larger_than_the_bound_does_not_fit() {
        let v = json!({"numbers": (0..200).collect::<Vec<u32>>(), "s": "abc"});
        assert_eq!(fitted(&v, 100), None);
    }
}
