//! How much longer: the ETA estimator beside the progress state machine. `estimate` is the pure
//! core (the remaining time from past durations, given the time already waited), `history` the
//! bounded per-key past it reads, `fraction` the monotonic share done that progress events
//! carry, `watch` one exchange's use of them. No I/O and no clock: times come in as offsets.
//!
//! Keys condition on the route, the model, whether the response streams, the reasoning effort
//! or thinking budget the request names, and the request's size (a bucket). A key with too
//! little history falls back to coarser levels: without the size, then without the effort, then
//! the route and streaming alone ([`Key::levels`]).

pub mod estimate;
pub mod fraction;
pub mod history;
pub mod replay;
pub mod watch;

pub use fraction::Fraction;
pub use history::History;
pub use watch::{EtaWatch, KeySource};

use serde::Serialize;
use std::sync::Arc;

/// What an exchange's duration is conditioned on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub route: Arc<str>,
    pub model: Option<Arc<str>>,
    pub streams: bool,
    pub effort: Option<Arc<str>>,
    /// [`input_bucket`] of the request body's size.
    pub input: u8,
}

/// The level marker for "any size" in a coarser key.
const ANY_INPUT: u8 = u8::MAX;

/// The longest model name a key keeps (bytes); a longer one (the client's to choose) counts as
/// no model, so the history's memory stays bounded by its key cap whatever requests name.
pub const MAX_MODEL: usize = 256;

impl Key {
    /// The key at each level, finest first: everything; without the input size; without the
    /// effort; the route and streaming alone. A level that is the same as the one before (a
    /// request that names no effort) is left out, so no sample counts twice.
    pub fn levels(&self) -> Vec<Key> {
        let mut out = Vec::with_capacity(4);
        self.each_level(|k| out.push(k.clone()));
        out
    }

    /// [`Key::levels`] without making them: one key, coarsened in place between visits (this
    /// runs at the end of every ok exchange).
    pub fn each_level(&self, mut visit: impl FnMut(&Key)) {
        let mut k = self.clone();
        if k.model.as_ref().is_some_and(|m| m.len() > MAX_MODEL) {
            k.model = None;
        }
        visit(&k);
        if k.input != ANY_INPUT {
            k.input = ANY_INPUT;
            visit(&k);
        }
        if k.effort.take().is_some() {
            visit(&k);
        }
        if k.model.take().is_some() {
            visit(&k);
        }
    }
}

/// The request body's size as a bucket: 0 below 1 KiB, then one bucket per factor of four
/// (below 4 KiB, 16 KiB, 64 KiB, …), so prompts of similar length share a history.
pub fn input_bucket(bytes: u64) -> u8 {
    let mut bucket = 0u8;
    let mut limit = 1024u64;
    while bytes >= limit && bucket < 12 {
        bucket += 1;
        limit = limit.saturating_mul(4);
    }
    bucket
}

/// One finished exchange, as the history keeps it (ms from the request head).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub total_ms: f32,
    pub first_token_ms: Option<f32>,
}

/// What the history says about one call now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// Remaining time to the end, in ms.
    pub remaining_ms: f64,
    /// Remaining time to the first answer token (while there was none yet), in ms.
    pub first_token_ms: Option<f64>,
    /// Past exchanges behind the estimate.
    pub basis: u32,
    /// The key's recent error is low enough for the label to name a time.
    pub trusted: bool,
}

/// The fields progress events carry once there is enough history (docs/protocol.md).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct EtaFields {
    pub eta_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_first_token_ms: Option<u64>,
    pub fraction: f64,
    pub eta_basis: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_go_from_finest_to_the_route_and_skip_repeats() {
        let key = |model: Option<&str>, effort: Option<&str>| Key {
            route: Arc::from("r"),
            model: model.map(Arc::from),
            streams: true,
            effort: effort.map(Arc::from),
            input: 2,
        };
        let full = key(Some("m"), Some("high")).levels();
        assert_eq!(full.len(), 4);
        assert_eq!(full[0], key(Some("m"), Some("high")));
        assert_eq!(full[1].input, ANY_INPUT);
        assert_eq!(
            (full[2].effort.clone(), full[2].model.clone()),
            (None, Some(Arc::from("m")))
        );
        assert_eq!((full[3].model.clone(), full[3].input), (None, ANY_INPUT));
        // No effort: that level is the one before it; no model either: the route's is too.
        assert_eq!(key(Some("m"), None).levels().len(), 3);
        assert_eq!(key(None, None).levels().len(), 2);
        // A model past the bound counts as none.
        let long = "x".repeat(MAX_MODEL + 1);
        let levels = key(Some(&long), None).levels();
        assert_eq!(levels.len(), 2);
        assert!(levels.iter().all(|k| k.model.is_none()));
    }

    #[test]
    fn input_buckets_grow_by_four() {
        assert_eq!(input_bucket(0), 0);
        assert_eq!(input_bucket(1023), 0);
        assert_eq!(input_bucket(1024), 1);
        assert_eq!(input_bucket(4095), 1);
        assert_eq!(input_bucket(4096), 2);
        assert_eq!(input_bucket(u64::MAX), 12);
    }
}
