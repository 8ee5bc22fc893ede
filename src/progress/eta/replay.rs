//! Scores the estimator on a corpus of finished exchanges, replayed in order (pure): each one is
//! estimated from the history before it, at 25%, 50% and 75% of its actual duration, and its
//! fraction is followed at every heartbeat; then it joins the history. For the accuracy
//! benchmark (`benches/eta_accuracy.sh`) and its test.

use super::{Fraction, History, Key, Sample};
use std::time::Duration;

/// The shares of each call's duration at which the remaining time is scored.
pub const SHARES: [f64; 3] = [0.25, 0.5, 0.75];

/// The scores of one replay.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scores {
    pub calls: usize,
    /// Per share in [`SHARES`]: the absolute percentage errors of the remaining time, for the
    /// calls that had an estimate then.
    pub errors: [Vec<f64>; 3],
    /// Fraction updates that went below the one before (must be 0).
    pub backwards: usize,
    /// Fraction updates that reached 1 before the call ended (must be 0).
    pub early_full: usize,
    /// Fraction updates followed.
    pub updates: usize,
}

/// A quantile (0–1) of `v` by nearest rank; `None` when empty.
pub fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    Some(s[rank - 1])
}

/// Replays `calls` (in order) against `history`, following each fraction every `beat`.
pub fn replay(
    history: &History,
    calls: impl IntoIterator<Item = (Key, Sample)>,
    beat: Duration,
) -> Scores {
    let mut scores = Scores::default();
    let beat_ms = beat.as_secs_f64() * 1e3;
    for (key, sample) in calls {
        scores.calls += 1;
        let total = f64::from(sample.total_ms);
        for (i, share) in SHARES.iter().enumerate() {
            let t = total * share;
            if let Some(e) = history.estimate(&key, t, false) {
                let actual = total - t;
                scores.errors[i].push((e.remaining_ms - actual).abs() / actual);
            }
        }
        let mut fraction = Fraction::default();
        let mut last = 0.0;
        let mut t = 0.0;
        while t < total {
            let first_seen = sample.first_token_ms.is_some_and(|f| f64::from(f) <= t);
            if let Some(e) = history.estimate(&key, t, first_seen) {
                let f = fraction.next(t, e.remaining_ms);
                scores.updates += 1;
                scores.backwards += usize::from(f < last);
                scores.early_full += usize::from(f >= 1.0);
                last = f;
            }
            t += beat_ms;
        }
        history.record(&key, sample);
    }
    scores
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_steady_key_scores_near_zero_and_fractions_behave() {
        let key = Key {
            route: Arc::from("r"),
            model: None,
            streams: true,
            effort: None,
            input: 0,
        };
        let calls = (0..50).map(|i| {
            (
                key.clone(),
                Sample {
                    total_ms: 10_000.0 + (i % 3) as f32 * 10.0,
                    first_token_ms: Some(5000.0),
                },
            )
        });
        let s = replay(&History::new(), calls, Duration::from_secs(1));
        assert_eq!(s.calls, 50);
        assert_eq!(s.errors[0].len(), 50 - 8);
        assert!(quantile(&s.errors[0], 0.5).unwrap() < 0.01);
        assert_eq!((s.backwards, s.early_full), (0, 0));
        assert!(s.updates > 0);
        assert_eq!(quantile(&[3.0, 1.0, 2.0, 4.0], 0.9), Some(4.0));
    }
}
