//! Past durations per key, in memory and bounded: a ring of recent exchanges per key, at four
//! levels from fine to coarse, and a cap on keys. Shared by every request (a short lock per
//! update or query); no I/O.

use super::estimate::{self, MIN_BASIS};
use super::{Estimate, Key, Sample};
use std::collections::VecDeque;
use std::sync::Mutex;

/// The ETA history's map (foldhash, seeded per process: see Cargo.toml).
type HashMap<K, V> = foldhash::HashMap<K, V>;

/// Recent exchanges kept per key.
pub const RING: usize = 64;
/// Keys kept at most (every level counts); when full, the eighth updated longest ago goes.
pub const MAX_KEYS: usize = 4096;
/// Recent scores (the error at 25% of each finished exchange) kept per key for the ladder.
pub const SCORES: usize = 20;
/// Scores needed before the ladder may name a time.
pub const MIN_SCORES: usize = 10;
/// The ladder names a time ("about 8 s left") only while the median of the key's recent scores
/// is at most this.
pub const TRUSTED_ERROR: f64 = 0.25;

/// One key's recent past.
#[derive(Debug, Default)]
struct Ring {
    /// In arrival order, for eviction.
    samples: VecDeque<Sample>,
    /// The same totals, sorted (kept on update so a query sorts nothing).
    totals: Vec<f32>,
    /// First-token times of the samples that had one, sorted.
    firsts: Vec<f32>,
    scores: VecDeque<f32>,
    touched: u64,
}

fn insert_sorted(v: &mut Vec<f32>, x: f32) {
    let at = v.partition_point(|&y| y < x);
    v.insert(at, x);
}

fn remove_sorted(v: &mut Vec<f32>, x: f32) {
    let at = v.partition_point(|&y| y < x);
    if v.get(at) == Some(&x) {
        v.remove(at);
    }
}

impl Ring {
    fn push(&mut self, s: Sample) -> Option<f64> {
        let score = estimate::error_at(&self.totals, f64::from(s.total_ms), 0.25);
        if let Some(e) = score {
            if self.scores.len() == SCORES {
                self.scores.pop_front();
            }
            self.scores.push_back(e as f32);
        }
        if self.samples.len() == RING
            && let Some(old) = self.samples.pop_front()
        {
            remove_sorted(&mut self.totals, old.total_ms);
            if let Some(f) = old.first_token_ms {
                remove_sorted(&mut self.firsts, f);
            }
        }
        insert_sorted(&mut self.totals, s.total_ms);
        if let Some(f) = s.first_token_ms {
            insert_sorted(&mut self.firsts, f);
        }
        self.samples.push_back(s);
        score
    }

    fn trusted(&self) -> bool {
        self.scores.len() >= MIN_SCORES
            && estimate::median(self.scores.iter().copied()).is_some_and(|m| m <= TRUSTED_ERROR)
    }
}

#[derive(Debug, Default)]
struct Inner {
    rings: HashMap<Key, Ring>,
    tick: u64,
}

/// Every key's recent past.
#[derive(Debug, Default)]
pub struct History {
    inner: Mutex<Inner>,
}

impl History {
    pub fn new() -> Self {
        History::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a finished (ok) exchange to its key at every level; returns its score at the
    /// finest level that had enough history (the error the estimator would have made at 25%
    /// of its duration) with that level's basis.
    pub fn record(&self, key: &Key, sample: Sample) -> Option<(f64, u32)> {
        self.record_from(0, key, sample)
    }

    /// Like [`History::record`], from level `from` on (1 skips the finest level, for a past
    /// exchange whose request size is unknown).
    pub fn record_from(&self, from: usize, key: &Key, sample: Sample) -> Option<(f64, u32)> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let mut scored = None;
        let mut level = 0;
        key.each_level(|k| {
            level += 1;
            if level <= from {
                return;
            }
            let visit = |ring: &mut Ring| {
                ring.touched = tick;
                let basis = ring.samples.len() as u32;
                ring.push(sample).map(|s| (s, basis))
            };
            // One lookup for a key the history knows (nearly every call: this runs at the end
            // of every ok exchange).
            let score = match inner.rings.get_mut(k) {
                Some(ring) => visit(ring),
                None => {
                    if inner.rings.len() >= MAX_KEYS {
                        evict(&mut inner.rings);
                    }
                    visit(inner.rings.entry(k.clone()).or_default())
                }
            };
            if scored.is_none() {
                scored = score;
            }
        });
        scored
    }

    /// The estimate for a call with `key` that has lasted `t_ms` (`first_token_seen`: no
    /// estimate to the first token is wanted). The finest level with [`MIN_BASIS`] samples
    /// and enough of them longer than `t_ms` answers; when every level with the basis has been
    /// outlasted, the finest of them answers with the tail rule.
    pub fn estimate(&self, key: &Key, t_ms: f64, first_token_seen: bool) -> Option<Estimate> {
        let inner = self.lock();
        let mut tail: Option<Estimate> = None;
        for k in key.levels() {
            let Some(ring) = inner.rings.get(&k) else {
                continue;
            };
            let Some((remaining, outlasted)) = estimate::remaining(&ring.totals, t_ms) else {
                continue;
            };
            let e = Estimate {
                remaining_ms: remaining,
                first_token_ms: if first_token_seen || ring.firsts.len() < MIN_BASIS {
                    None
                } else {
                    estimate::conditional_remaining(&ring.firsts, t_ms)
                },
                basis: ring.samples.len() as u32,
                trusted: ring.trusted() && !outlasted,
            };
            if !outlasted {
                return Some(e);
            }
            tail.get_or_insert(e);
        }
        tail
    }

    /// Keys held now (every level).
    pub fn keys(&self) -> usize {
        self.lock().rings.len()
    }
}

/// Keys let go at once when the history is full: the eighth updated longest ago. Letting one go
/// at a time scanned every key for each new one, so a client naming a new model in every
/// request made each of its requests pay a scan of [`MAX_KEYS`]; now one scan serves the next
/// `EVICT` new keys.
const EVICT: usize = MAX_KEYS / 8;

fn evict(rings: &mut HashMap<Key, Ring>) {
    let mut touched: Vec<u64> = rings.values().map(|r| r.touched).collect();
    let Some(last) = EVICT.min(touched.len()).checked_sub(1) else {
        return;
    };
    let (_, &mut cutoff, _) = touched.select_nth_unstable(last);
    // The levels of one exchange share its tick: at most a few more than `EVICT` go.
    rings.retain(|_, r| r.touched > cutoff);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn key(model: &str) -> Key {
        Key {
            route: Arc::from("r"),
            model: Some(Arc::from(model)),
            streams: true,
            effort: None,
            input: 0,
        }
    }

    fn sample(total: f32) -> Sample {
        Sample {
            total_ms: total,
            first_token_ms: Some(total / 2.0),
        }
    }

    #[test]
    fn estimates_come_once_the_basis_is_there_and_the_ring_stays_bounded() {
        let h = History::new();
        let k = key("m");
        for i in 0..(MIN_BASIS - 1) {
            h.record(&k, sample(1000.0 + i as f32));
        }
        assert!(h.estimate(&k, 0.0, false).is_none());
        h.record(&k, sample(1000.0));
        let e = h.estimate(&k, 0.0, false).unwrap();
        assert_eq!(e.basis, MIN_BASIS as u32);
        assert!(e.first_token_ms.is_some());
        assert!(h.estimate(&k, 0.0, true).unwrap().first_token_ms.is_none());
        for _ in 0..(3 * RING) {
            h.record(&k, sample(2000.0));
        }
        let e = h.estimate(&k, 0.0, false).unwrap();
        assert_eq!(e.basis, RING as u32);
        assert_eq!(e.remaining_ms, 2000.0, "old samples left the ring");
    }

    #[test]
    fn a_new_key_falls_back_to_coarser_levels() {
        let h = History::new();
        for _ in 0..MIN_BASIS {
            h.record(&key("a"), sample(5000.0));
        }
        // Model "b" has no history of its own: the route's (same streams) answers.
        let e = h.estimate(&key("b"), 0.0, false).unwrap();
        assert_eq!(e.remaining_ms, 5000.0);
        // Once "b" has its own history, it answers for itself.
        for _ in 0..MIN_BASIS {
            h.record(&key("b"), sample(1000.0));
        }
        assert_eq!(
            h.estimate(&key("b"), 0.0, false).unwrap().remaining_ms,
            1000.0
        );
    }

    #[test]
    fn the_ladder_trusts_a_key_only_when_its_recent_error_is_low() {
        let h = History::new();
        let k = key("steady");
        for _ in 0..(MIN_BASIS + MIN_SCORES) {
            h.record(&k, sample(8000.0));
        }
        assert!(h.estimate(&k, 0.0, false).unwrap().trusted);
        let wild = key("wild");
        for i in 0..(MIN_BASIS + 2 * MIN_SCORES) {
            h.record(&wild, sample(1000.0 + ((i * 7919) % 29) as f32 * 1000.0));
        }
        assert!(!h.estimate(&wild, 0.0, false).unwrap().trusted);
    }

    #[test]
    fn a_model_name_past_the_bound_is_not_kept() {
        let h = History::new();
        let long = "m".repeat(1 << 20);
        for _ in 0..MIN_BASIS {
            h.record(&key(&long), sample(3000.0));
        }
        let inner = h.lock();
        let kept: usize = inner
            .rings
            .keys()
            .map(|k| k.model.as_ref().map_or(0, |m| m.len()))
            .max()
            .unwrap_or(0);
        assert!(
            kept <= super::super::MAX_MODEL,
            "a key holds a {kept}-byte model"
        );
        drop(inner);
        // The request still gets the estimate its route and size give.
        let e = h.estimate(&key(&long), 0.0, false).unwrap();
        assert_eq!(e.remaining_ms, 3000.0);
    }

    #[test]
    fn keys_are_capped() {
        let h = History::new();
        for i in 0..(MAX_KEYS + 50) {
            h.record(&key(&format!("m{i}")), sample(1.0));
        }
        assert!(h.keys() <= MAX_KEYS);
    }

    #[test]
    fn a_full_history_lets_the_longest_unused_eighth_go_at_once() {
        // One key per call: a route with no model, recorded from its size-free level.
        let route = |i: usize| Key {
            route: Arc::from(format!("r{i}")),
            model: None,
            streams: true,
            effort: None,
            input: 0,
        };
        let h = History::new();
        let add = |i: usize| h.record_from(1, &route(i), sample(1.0));
        let has = |i: usize| {
            let level = Key {
                input: super::super::ANY_INPUT,
                ..route(i)
            };
            h.lock().rings.contains_key(&level)
        };
        for i in 0..MAX_KEYS {
            add(i);
        }
        assert_eq!(h.keys(), MAX_KEYS);
        // The first route is used again, so it is not among the longest unused.
        add(0);
        add(MAX_KEYS);
        assert_eq!(h.keys(), MAX_KEYS - EVICT + 1);
        assert!(has(0) && has(MAX_KEYS) && has(EVICT + 1) && has(MAX_KEYS - 1));
        assert!(
            (1..=EVICT).all(|i| !has(i)),
            "the longest unused eighth went"
        );
        // The next new keys fit without another scan.
        for i in 0..EVICT - 1 {
            add(MAX_KEYS + 1 + i);
        }
        assert_eq!(h.keys(), MAX_KEYS);
    }
}
