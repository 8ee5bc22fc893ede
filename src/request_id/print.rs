//! Maps keyed by request id that hold no copy of the id: an id is looked up by its [`Print`],
//! 128 bits of keyed SipHash, kept inside the map's bucket.
//!
//! Why: the capture writer's pending ids hold hundreds of thousands of ids under load, and
//! every request adds one; a map of `String`s costs an allocation per id and a cache miss on
//! the key's heap copy at every lookup. No crate keys a map by a keyed fingerprint, so this is
//! written here.
//!
//! Two different ids share a print with a chance of about 2⁻¹²⁸ per pair, and the key is a
//! secret of this process (std's `RandomState`), so no client can choose ids that collide.

use std::collections::HashMap;
use std::collections::hash_map::{self, RandomState};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

/// An id's fingerprint under a [`PrintKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Print(u64, u64);

impl Hash for Print {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already a keyed hash: the map takes its first half as it is.
        state.write_u64(self.0);
    }
}

/// The secret key prints are made with. Clones make the same prints.
#[derive(Clone, Debug, Default)]
pub struct PrintKey(RandomState);

impl PrintKey {
    /// A fresh random key.
    pub fn new() -> PrintKey {
        PrintKey(RandomState::new())
    }

    /// `id`'s print: its keyed hash, and the keyed hash of it with one more byte.
    pub fn print(&self, id: &str) -> Print {
        Print(self.0.hash_one(id), self.0.hash_one((id, 0x5a_u8)))
    }
}

/// The map's hasher: passes a [`Print`]'s first half through (nothing else is hashed with it).
#[derive(Default)]
pub struct PrintHasher(u64);

impl Hasher for PrintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map from request id to `V`, keyed by the id's print.
#[derive(Debug)]
pub struct IdMap<V> {
    key: PrintKey,
    map: HashMap<Print, V, BuildHasherDefault<PrintHasher>>,
}

impl<V> IdMap<V> {
    /// A map whose prints are made with `key` (so a holder of a clone can print ids for it).
    pub fn with_key(key: PrintKey) -> Self {
        IdMap {
            key,
            map: HashMap::default(),
        }
    }

    pub fn print(&self, id: &str) -> Print {
        self.key.print(id)
    }

    /// The entry of an id printed before (possibly by another holder of the key).
    pub fn entry_of(&mut self, print: Print) -> hash_map::Entry<'_, Print, V> {
        self.map.entry(print)
    }

    pub fn get_of(&self, print: Print) -> Option<&V> {
        self.map.get(&print)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_differ_anywhere_have_different_prints_and_keys_differ() {
        let key = PrintKey::new();
        let ids = ["", "a", "b", "ab", "ba", "a\u{0}", "01a22bc6-7d22-7784-b044-fe627e3d78c7"];
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                assert_ne!(key.print(a), key.print(b), "{a:?} {b:?}");
            }
            assert_eq!(key.print(a), key.clone().print(a));
        }
        // Another key (another process) prints the same id differently.
        assert_ne!(PrintKey::new().print("a"), key.print("a"));
    }

    #[test]
    fn a_map_finds_what_a_holder_of_the_same_key_printed() {
        let key = PrintKey::new();
        let mut map = IdMap::with_key(key.clone());
        map.entry_of(key.print("request-one")).or_insert(1);
        assert_eq!(map.get_of(map.print("request-one")), Some(&1));
        assert_eq!(map.get_of(map.print("request-two")), None);
        assert_eq!(map.get_of(PrintKey::new().print("request-one")), None);
        assert_eq!(map.len(), 1);
    }
}
