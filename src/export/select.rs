//! Which exported lines are kept and where they go: `--dedupe` (a normalised conversation seen
//! before), `--sample N --seed S` (the N lines of lowest seeded rank) and `--split` (a share of
//! the id space per split). Pure: hashes, sets and a bounded heap, no I/O.
//!
//! Every hash is SHA-256 (ring, already in the tree) rather than std's hasher, whose output
//! may change between Rust versions: a record must land in the same split, and a seed pick the
//! same sample, on every machine and release.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use ring::digest::{Context, SHA256};

/// The first 8 bytes of SHA-256 over `pieces` (each followed by a 0 byte, so pieces cannot
/// run into each other), as a big-endian number.
pub fn hash64(pieces: &[&[u8]]) -> u64 {
    let mut ctx = Context::new(&SHA256);
    for p in pieces {
        ctx.update(p);
        ctx.update(&[0]);
    }
    let digest = ctx.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(first)
}

/// `--dedupe`: remembers 16 bytes of SHA-256 per distinct conversation.
#[derive(Default)]
pub struct Dedupe {
    seen: HashSet<[u8; 16]>,
}

impl Dedupe {
    /// Whether `key` (a normalised conversation) is new; remembers it.
    pub fn first(&mut self, key: &str) -> bool {
        let digest = ring::digest::digest(&SHA256, key.as_bytes());
        let mut short = [0u8; 16];
        short.copy_from_slice(&digest.as_ref()[..16]);
        self.seen.insert(short)
    }
}

/// `--split name=share,...`: shares in (0, 1] that add up to 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    parts: Vec<(String, f64)>,
}

impl Split {
    /// Parses `train=0.9,test=0.1`; the error says what is wrong.
    pub fn parse(spec: &str) -> Result<Split, String> {
        let mut parts: Vec<(String, f64)> = Vec::new();
        for item in spec.split(',') {
            let (name, share) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not name=share, like train=0.9"))?;
            let name = name.trim();
            let ok_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok_name {
                return Err(format!("split name {name:?}: use letters, digits, - or _"));
            }
            if parts.iter().any(|(n, _)| n == name) {
                return Err(format!("split {name:?} is named twice"));
            }
            let share: f64 = share
                .trim()
                .parse()
                .ok()
                .filter(|s: &f64| *s > 0.0 && *s <= 1.0)
                .ok_or_else(|| format!("split {name:?}: the share must be a number in (0, 1]"))?;
            parts.push((name.to_owned(), share));
        }
        let total: f64 = parts.iter().map(|(_, s)| s).sum();
        if (total - 1.0).abs() > 1e-6 {
            return Err(format!("the shares add up to {total}, not 1"));
        }
        Ok(Split { parts })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().map(|(n, _)| n.as_str())
    }

    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The split for a request id: SHA-256 of the id read as a point in [0, 1), placed on the
    /// shares in the order given. Depends on the id alone, so every attempt of an id, and a
    /// record exported again from a store that has grown, lands in the same split.
    pub fn assign(&self, request_id: &str) -> usize {
        let point = hash64(&[b"split", request_id.as_bytes()]) as f64 / 2f64.powi(64);
        let mut edge = 0.0;
        for (i, (_, share)) in self.parts.iter().enumerate() {
            edge += share;
            if point < edge {
                return i;
            }
        }
        self.parts.len().saturating_sub(1)
    }
}

/// `--sample N --seed S`: keeps the `n` offered items of lowest rank, the rank being SHA-256 of
/// the seed and the line's id. Deterministic for a seed, independent of the order items come
/// in, and stable as the store grows (an item leaves the sample only for one of lower rank).
/// Holds at most `n` items.
pub struct Sample<T> {
    n: usize,
    seed: u64,
    /// Max-heap on rank, so the worst kept item is on top; `seq` keeps the original order.
    heap: BinaryHeap<(u64, Reverse<u64>, Keep<T>)>,
    seq: u64,
    pub offered: u64,
}

/// An item that takes no part in the heap's ordering.
struct Keep<T>(T);

impl<T> PartialEq for Keep<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<T> Eq for Keep<T> {}
impl<T> PartialOrd for Keep<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Keep<T> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<T> Sample<T> {
    pub fn new(n: usize, seed: u64) -> Sample<T> {
        Sample {
            n,
            seed,
            heap: BinaryHeap::new(),
            seq: 0,
            offered: 0,
        }
    }

    /// Offers an item with its line id (`id` or `id#attempt`).
    pub fn offer(&mut self, line_id: &str, item: T) {
        self.offered += 1;
        let rank = hash64(&[b"sample", &self.seed.to_be_bytes(), line_id.as_bytes()]);
        let seq = self.seq;
        self.seq += 1;
        if self.heap.len() < self.n {
            self.heap.push((rank, Reverse(seq), Keep(item)));
        } else if self.heap.peek().is_some_and(|(worst, _, _)| rank < *worst) {
            self.heap.pop();
            self.heap.push((rank, Reverse(seq), Keep(item)));
        }
    }

    /// The kept items in the order they were offered.
    pub fn into_items(self) -> Vec<T> {
        let mut kept: Vec<(u64, T)> = self
            .heap
            .into_iter()
            .map(|(_, Reverse(seq), Keep(item))| (seq, item))
            .collect();
        kept.sort_by_key(|(seq, _)| *seq);
        kept.into_iter().map(|(_, item)| item).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_parse_and_assign_by_id_alone() {
        let split = Split::parse("train=0.9,test=0.1").unwrap();
        assert_eq!(split.names().collect::<Vec<_>>(), ["train", "test"]);
        let ids: Vec<String> = (0..2000).map(|i| format!("req-{i}")).collect();
        let test = ids.iter().filter(|id| split.assign(id) == 1).count();
        assert!((120..280).contains(&test), "{test} of 2000 in test");
        // The same id, the same split, whatever else is exported.
        assert_eq!(split.assign("req-7"), split.assign("req-7"));
        // Known values, so a change of hash is noticed.
        assert_eq!(hash64(&[b"a"]), hash64(&[b"a"]));
        assert_ne!(hash64(&[b"a", b"b"]), hash64(&[b"ab"]));
        for bad in [
            "train=0.9",
            "train",
            "train=0.5,train=0.5",
            "a=0,b=1",
            "a b=1",
            "a=x",
        ] {
            assert!(Split::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_sample_is_the_lowest_ranks_in_offered_order() {
        let run = |seed: u64, order: &[usize]| {
            let mut s = Sample::new(10, seed);
            for &i in order {
                s.offer(&format!("id-{i}"), i);
            }
            s.into_items()
        };
        let forward: Vec<usize> = (0..100).collect();
        let backward: Vec<usize> = (0..100).rev().collect();
        let a = run(1, &forward);
        assert_eq!(a.len(), 10);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "offered order: {a:?}");
        let mut b = run(1, &backward);
        b.reverse();
        assert_eq!(a, b, "the same items whatever the order");
        assert_ne!(a, run(2, &forward), "another seed, another sample");
        assert_eq!(run(1, &forward[..5]).len(), 5);
    }

    #[test]
    fn dedupe_remembers_keys() {
        let mut d = Dedupe::default();
        assert!(d.first("a"));
        assert!(!d.first("a"));
        assert!(d.first("b"));
    }
}
