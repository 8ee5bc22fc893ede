//! Client beacons: what the browser measured (`/timings`) and what the user thought
//! (`/feedback`). Parsing and validation only; the endpoint lives in `app`.

use serde::{Deserialize, Serialize};

/// What a client measured, in milliseconds from when it sent the request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTimings {
    /// The first progress status was painted.
    pub first_progress_painted_ms: Option<f64>,
    /// The first answer token was painted.
    pub first_token_painted_ms: Option<f64>,
    /// The answer was complete on screen.
    pub done_ms: Option<f64>,
    /// The user gave up (navigated away, cancelled) at this time.
    pub abandoned_ms: Option<f64>,
    /// The user gave up (when the client does not know when).
    pub abandoned: Option<bool>,
}

/// What the user thought of the answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feedback {
    /// A number, for example 1 for thumbs up and 0 for down, or 1 to 5.
    pub score: Option<f64>,
    pub label: Option<String>,
    pub comment: Option<String>,
}

/// Longest accepted beacon body.
pub const MAX_BEACON: usize = 16 << 10;
const MAX_TEXT: usize = 4000;

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8], what: &str) -> Result<T, String> {
    if body.len() > MAX_BEACON {
        return Err(format!(
            "{what} body is larger than {}",
            crate::config::units::ShownSize(MAX_BEACON as u64)
        ));
    }
    serde_json::from_slice(body).map_err(|e| format!("{what} body is not valid: {e}"))
}

pub fn parse_timings(body: &[u8]) -> Result<ClientTimings, String> {
    let t: ClientTimings = parse(body, "timings")?;
    for (name, v) in [
        ("first_progress_painted_ms", t.first_progress_painted_ms),
        ("first_token_painted_ms", t.first_token_painted_ms),
        ("done_ms", t.done_ms),
        ("abandoned_ms", t.abandoned_ms),
    ] {
        if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
            return Err(format!(
                "timings.{name} must be a non-negative number of milliseconds"
            ));
        }
    }
    if t == ClientTimings::default() {
        return Err("timings body has no field; send at least one of first_progress_painted_ms, first_token_painted_ms, done_ms, abandoned_ms, abandoned".into());
    }
    Ok(t)
}

pub fn parse_feedback(body: &[u8]) -> Result<Feedback, String> {
    let f: Feedback = parse(body, "feedback")?;
    if f.score.is_some_and(|s| !s.is_finite()) {
        return Err("feedback.score must be a finite number".into());
    }
    for (name, v) in [("label", &f.label), ("comment", &f.comment)] {
        if v.as_ref().is_some_and(|v| v.chars().count() > MAX_TEXT) {
            return Err(format!(
                "feedback.{name} is longer than {MAX_TEXT} characters"
            ));
        }
    }
    if f == Feedback::default() {
        return Err("feedback body has no field; send score, label or comment".into());
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beacons_are_validated_with_reasons() {
        assert!(parse_timings(br#"{"first_token_painted_ms": 812.5}"#).is_ok());
        assert!(
            parse_timings(br#"{"first_token_painted_ms": -1}"#)
                .unwrap_err()
                .contains("non-negative")
        );
        assert!(parse_timings(b"{}").unwrap_err().contains("no field"));
        assert!(parse_timings(b"nope").unwrap_err().contains("not valid"));
        assert!(
            parse_timings(br#"{"colour": 1}"#)
                .unwrap_err()
                .contains("unknown field")
        );
        assert_eq!(
            parse_feedback(br#"{"score": 1, "label": "good"}"#)
                .unwrap()
                .score,
            Some(1.0)
        );
        assert!(parse_feedback(br#"{"score": "high"}"#).is_err());
    }
}
