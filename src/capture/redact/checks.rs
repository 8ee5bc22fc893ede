//! The checks that follow a regex match (Luhn, entropy), the card check on JSON integers, and
//! the forms a configured secret can take in stored text (plain, JSON-escaped, base64 at any
//! alignment).

use base64::Engine;
use serde_json::Value;

/// Secrets shorter than this have no base64 form matched: a short run of base64 characters
/// would match ordinary text.
const MIN_BASE64_SECRET_CHARS: usize = 8;

/// 13–19 digits with consistent single separators, and a valid Luhn check digit.
pub fn is_card_number(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let separators: Vec<char> = text.chars().filter(|c| !c.is_ascii_digit()).collect();
    if separators.windows(2).any(|w| w[0] != w[1]) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A JSON number that is an integer written as the card rule would match it without
/// separators: 13–19 digits, the first 2–6, Luhn-valid. A minus sign is ignored, as the text
/// rule ignores a `-` before the digits. A float with no fraction counts too while it holds its
/// digits exactly (below 2^53: `4242424242424242.0` is a card sent as a float); past that it
/// has lost them, and is stored in a form (`4.242424242424242e18`) that shows no card.
pub fn is_card_integer(n: &serde_json::Number) -> bool {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    let whole_float = || {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < EXACT)
            .map(|f| f.abs() as u64)
    };
    let Some(abs) = n
        .as_u64()
        .or_else(|| n.as_i64().map(i64::unsigned_abs))
        .or_else(whole_float)
    else {
        return false;
    };
    // Most numbers are far smaller: they are turned down without being formatted.
    if !(2_000_000_000_000..7_000_000_000_000_000_000).contains(&abs) {
        return false;
    }
    let digits = abs.to_string();
    digits.starts_with(['2', '3', '4', '5', '6']) && is_card_number(&digits)
}

/// A token that reads like a generated credential: letters and digits mixed, and at least
/// 3.5 bits of Shannon entropy per character (English words and identifiers score lower).
pub fn looks_random(text: &str) -> bool {
    let has_digit = text.bytes().any(|b| b.is_ascii_digit());
    let has_alpha = text.bytes().any(|b| b.is_ascii_alphabetic());
    if !has_digit || !has_alpha {
        return false;
    }
    let mut counts = [0u32; 256];
    for b in text.bytes() {
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c += 1;
        }
    }
    let n = text.len() as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    entropy >= 3.5
}

/// Every form of every secret to match: plain, JSON-escaped, and base64 at each of the three
/// byte alignments (standard and URL-safe alphabets).
pub fn secret_forms(secrets: &[String]) -> Result<Vec<String>, String> {
    let mut forms = Vec::new();
    for secret in secrets {
        if secret.is_empty() {
            return Err("redact secrets: an empty secret would match everywhere".to_owned());
        }
        forms.push(secret.clone());
        let escaped = Value::String(secret.clone()).to_string();
        let escaped = escaped
            .strip_prefix('"')
            .and_then(|e| e.strip_suffix('"'))
            .unwrap_or(&escaped);
        if escaped != secret {
            forms.push(escaped.to_owned());
        }
        for shift in 0..3 {
            if let Some(b64) = base64_core(secret.as_bytes(), shift) {
                forms.push(b64.replace('+', "-").replace('/', "_"));
                forms.push(b64);
            }
        }
    }
    forms.sort();
    forms.dedup();
    // Longest first, so that the alternation prefers a whole form over a prefix of it.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    Ok(forms)
}

/// The base64 characters that depend only on `secret` when it starts `shift` bytes into the
/// encoded data: whatever bytes surround it, these characters appear in the encoding.
fn base64_core(secret: &[u8], shift: usize) -> Option<String> {
    let mut data = vec![0u8; shift];
    data.extend_from_slice(secret);
    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&data);
    let (first, last) = (shift, shift + secret.len()); // secret bytes: [first, last)
    // Character c carries bits [6c, 6c + 6), i.e. bytes 6c / 8 ..= (6c + 5) / 8.
    let chars: String = encoded
        .chars()
        .enumerate()
        .filter(|(c, _)| (6 * c) / 8 >= first && (6 * c + 5) / 8 < last)
        .map(|(_, ch)| ch)
        .collect();
    (chars.len() >= MIN_BASE64_SECRET_CHARS).then_some(chars)
}
