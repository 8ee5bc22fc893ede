//! One exchange's ETA: its key (learnt once the request body went upstream), the fraction it
//! published, the first estimate it gave, and its sample for the history when it ends well.
//!
//! Nothing is estimated unless someone observes the progress: `fields` is only called for an
//! event that is published. Ending costs one short lock to add the sample.

use super::history::History;
use super::{Estimate, EtaFields, Fraction, Key, Sample};
use std::sync::Arc;
use std::time::Duration;

/// Learns the key from the request once it is known (its body sent whole); `None` until then.
pub type KeySource = Box<dyn Fn() -> Option<Key> + Send + Sync>;

/// What the estimator said about one finished exchange (for its capture record).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Said {
    pub basis: u32,
    /// When the first estimate to the end was published, and what it said (ms).
    pub first: Option<(f64, f64)>,
    /// The estimator's error at 25% of this exchange's duration, from the history before it.
    pub error_at_25: Option<f64>,
}

pub struct EtaWatch {
    history: Arc<History>,
    source: Option<KeySource>,
    key: Option<Key>,
    fraction: Fraction,
    first: Option<(f64, f64)>,
    basis: u32,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl EtaWatch {
    pub fn new(history: Arc<History>, source: KeySource) -> Self {
        EtaWatch {
            history,
            source: Some(source),
            key: None,
            fraction: Fraction::default(),
            first: None,
            basis: 0,
        }
    }

    /// Tries to learn the key; with `last_chance` (the request body's bytes are about to be
    /// let go) an unknown key stays unknown.
    pub fn resolve(&mut self, last_chance: bool) -> Option<&Key> {
        if self.key.is_none()
            && let Some(source) = &self.source
        {
            self.key = source();
            if self.key.is_some() || last_chance {
                self.source = None;
            }
        }
        self.key.as_ref()
    }

    /// The ETA fields for an event published at `at`, with the estimate behind them; `None`
    /// without a key or without enough history.
    pub fn fields(
        &mut self,
        at: Duration,
        first_token_seen: bool,
    ) -> Option<(EtaFields, Estimate)> {
        let t = ms(at);
        self.resolve(false)?;
        let key = self.key.as_ref()?;
        let e = self.history.estimate(key, t, first_token_seen)?;
        let fraction = self.fraction.next(t, e.remaining_ms);
        self.first
            .get_or_insert((t.round(), e.remaining_ms.round()));
        self.basis = e.basis;
        let fields = EtaFields {
            eta_ms: e.remaining_ms.round() as u64,
            eta_first_token_ms: e.first_token_ms.map(|f| f.round() as u64),
            fraction,
            eta_basis: e.basis,
        };
        Some((fields, e))
    }

    /// The exchange ended after `total`; an ok one adds its sample to the history. Returns what
    /// the estimator said about it, when it had anything to say.
    pub fn finish(
        &mut self,
        ok: bool,
        total: Duration,
        first_token_ms: Option<f64>,
    ) -> Option<Said> {
        let scored = match (ok, self.resolve(true).cloned()) {
            (true, Some(key)) => self.history.record(
                &key,
                Sample {
                    total_ms: ms(total) as f32,
                    first_token_ms: first_token_ms.map(|f| f as f32),
                },
            ),
            _ => None,
        };
        if scored.is_none() && self.first.is_none() {
            return None;
        }
        Some(Said {
            basis: scored.map_or(self.basis, |(_, b)| b),
            first: self.first,
            error_at_25: scored.map(|(e, _)| e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn key() -> Key {
        Key {
            route: Arc::from("r"),
            model: None,
            streams: true,
            effort: None,
            input: 0,
        }
    }

    #[test]
    fn the_key_is_learnt_once_known_and_only_ok_exchanges_teach() {
        let history = Arc::new(History::new());
        let sent = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&sent);
        let source: KeySource = Box::new(move || s.load(Ordering::Acquire).then(key));
        let mut w = EtaWatch::new(Arc::clone(&history), source);
        assert!(w.resolve(false).is_none());
        sent.store(true, Ordering::Release);
        assert!(w.resolve(false).is_some());
        let d = Duration::from_secs(4);
        for _ in 0..super::super::estimate::MIN_BASIS {
            let mut w = EtaWatch::new(Arc::clone(&history), Box::new(|| Some(key())));
            assert!(w.fields(Duration::ZERO, false).is_none());
            w.finish(true, d, Some(1000.0));
        }
        let mut failed = EtaWatch::new(Arc::clone(&history), Box::new(|| Some(key())));
        failed.finish(false, Duration::from_secs(100), None);
        let (f, e) = w.fields(Duration::from_secs(1), false).unwrap();
        assert_eq!(f.eta_ms, 3000, "the failed exchange taught nothing");
        assert_eq!(e.basis, 8);
        assert_eq!(
            f.eta_first_token_ms, None,
            "all first tokens came before 1 s"
        );
        let said = w.finish(true, d, None).unwrap();
        assert_eq!(said.first, Some((1000.0, 3000.0)));
        assert_eq!(said.error_at_25, Some(0.0));
    }
}
