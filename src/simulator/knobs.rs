//! The per-request `x-sim-*` override headers: parsing and validation, nothing else.

use http::{HeaderMap, StatusCode};

/// The overrides one request asked for; `None` means "pick from the seed".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Knobs {
    pub seed: Option<u64>,
    pub think_ms: Option<u64>,
    pub tokens: Option<u64>,
    pub token_ms: Option<u64>,
    pub headers_ms: u64,
    pub status: Option<StatusCode>,
    pub fail_after: Option<u64>,
    pub sse_ids: bool,
    pub reasoning_content: bool,
    /// Replay speed in hundredths (`x-sim-speed: 2` is 200: twice as fast); replay only.
    pub speed_pct: Option<u64>,
}

/// Upper bounds that keep a typo from pinning a connection for days.
const MAX_MS: u64 = 600_000;
const MAX_TOKENS: u64 = 100_000;

impl Knobs {
    /// Reads the overrides; an invalid value is an error message naming the header.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, String> {
        Ok(Self {
            seed: number(headers, "x-sim-seed", u64::MAX)?,
            think_ms: number(headers, "x-sim-think-ms", MAX_MS)?,
            tokens: number(headers, "x-sim-tokens", MAX_TOKENS)?,
            token_ms: number(headers, "x-sim-token-ms", MAX_MS)?,
            headers_ms: number(headers, "x-sim-headers-ms", MAX_MS)?.unwrap_or(0),
            status: status(headers)?,
            fail_after: number(headers, "x-sim-fail-after", MAX_TOKENS)?,
            sse_ids: flag(headers, "x-sim-sse-ids")?,
            reasoning_content: flag(headers, "x-sim-reasoning-content")?,
            speed_pct: speed(headers)?,
        })
    }
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| format!("invalid {name} header: not visible ASCII")),
    }
}

fn number(headers: &HeaderMap, name: &str, max: u64) -> Result<Option<u64>, String> {
    let Some(raw) = text(headers, name)? else {
        return Ok(None);
    };
    match raw.parse::<u64>() {
        Ok(v) if v <= max => Ok(Some(v)),
        Ok(_) => Err(format!("invalid {name} header: {raw:?} exceeds {max}")),
        Err(_) => Err(format!(
            "invalid {name} header: {raw:?} is not a non-negative integer"
        )),
    }
}

fn flag(headers: &HeaderMap, name: &str) -> Result<bool, String> {
    match text(headers, name)? {
        None => Ok(false),
        Some("1" | "true") => Ok(true),
        Some("0" | "false") => Ok(false),
        Some(raw) => Err(format!("invalid {name} header: {raw:?} is not 0 or 1")),
    }
}

/// A decimal factor from 0.01 to 100, kept in hundredths.
fn speed(headers: &HeaderMap) -> Result<Option<u64>, String> {
    let Some(raw) = text(headers, "x-sim-speed")? else {
        return Ok(None);
    };
    raw.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && (0.01..=100.0).contains(v))
        .map(|v| Some((v * 100.0).round() as u64))
        .ok_or_else(|| format!("invalid x-sim-speed header: {raw:?} is not a factor 0.01-100"))
}

fn status(headers: &HeaderMap) -> Result<Option<StatusCode>, String> {
    let Some(raw) = text(headers, "x-sim-status")? else {
        return Ok(None);
    };
    raw.parse::<u16>()
        .ok()
        .filter(|c| (400..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .map(Some)
        .ok_or_else(|| {
            format!("invalid x-sim-status header: {raw:?} is not an error status 400-599")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn absent_headers_give_defaults() {
        assert_eq!(Knobs::from_headers(&HeaderMap::new()), Ok(Knobs::default()));
    }

    #[test]
    fn values_parse() {
        let k = Knobs::from_headers(&headers(&[
            ("x-sim-seed", "42"),
            ("x-sim-think-ms", "5"),
            ("x-sim-status", "529"),
            ("x-sim-sse-ids", "1"),
            ("x-sim-speed", "2.5"),
        ]))
        .unwrap();
        assert_eq!(k.seed, Some(42));
        assert_eq!(k.think_ms, Some(5));
        assert_eq!(k.status, Some(StatusCode::from_u16(529).unwrap()));
        assert!(k.sse_ids);
        assert_eq!(k.speed_pct, Some(250));
    }

    #[test]
    fn bad_values_name_the_header() {
        for (k, v) in [
            ("x-sim-seed", "-1"),
            ("x-sim-tokens", "lots"),
            ("x-sim-status", "200"),
            ("x-sim-status", "999"),
            ("x-sim-sse-ids", "yes"),
            ("x-sim-think-ms", "99999999999"),
            ("x-sim-speed", "0"),
            ("x-sim-speed", "fast"),
        ] {
            let err = Knobs::from_headers(&headers(&[(k, v)])).unwrap_err();
            assert!(err.contains(k), "{err}");
        }
    }
}
