//! Maps keyed by request id that hold no copy of the id: an id is looked up by its [`Print`],
//! 128 bits of keyed SipHash, kept inside the map's bucket.
//!
//! Why: the capture writer's pending ids hold hundreds of thousands of ids under load, and
//! every request adds one; a map of `String`s costs an allocation per id and a cache miss on
//! the key's heap copy at every lookup. No crate keys a map by a keyed fingerprint, so this is
//! written here.
//!
//! A print is SipHash-1-3's 128-bit output under a random key made at start (`siphasher`: std's
//! `RandomState` does not promise its algorithm). Two different ids share a print with a chance
//! of about 2⁻¹²⁸ per pair, and the key is a secret of this process, so no client can choose
//! ids that collide.

use siphasher::sip128::{Hasher128, SipHasher13};
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
#[derive(Clone)]
pub struct PrintKey(u64, u64);

impl std::fmt::Debug for PrintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrintKey(..)")
    }
}

impl Default for PrintKey {
    fn default() -> Self {
        PrintKey::new()
    }
}

impl PrintKey {
    /// A fresh random key, from the system's random source.
    pub fn new() -> PrintKey {
        use ring::rand::{SecureRandom, SystemRandom};
        let mut bytes = [0u8; 16];
        if SystemRandom::new().fill(&mut bytes).is_err() {
            // Not seen on Linux; std's per-process random keys are the next best source.
            let state = RandomState::new();
            return PrintKey(state.hash_one(0u8), state.hash_one(1u8));
        }
        let (a, b) = bytes.split_at(8);
        let word = |half: &[u8]| half.iter().fold(0u64, |w, byte| w << 8 | u64::from(*byte));
        PrintKey(word(a), word(b))
    }

    /// `id`'s print.
    pub fn print(&self, id: &str) -> Print {
        let mut hasher = SipHasher13::new_with_keys(self.0, self.1);
        hasher.write(id.as_bytes());
        let hash = hasher.finish128();
        Print(hash.h1, hash.h2)
    }
}

/// The map's hasher: passes a [`Print`]'s first half through. Only prints are hashed with it
/// (`IdMap` keys nothing else), so anything but `write_u64` is a defect.
#[derive(Default)]
pub(crate) struct PrintHasher(u64);

impl Hasher for PrintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _: &[u8]) {
        unreachable!("PrintHasher hashes prints only");
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
        let ids = [
            "",
            "a",
            "b",
            "ab",
            "ba",
            "a\u{0}",
            "01a22bc6-7d22-7784-b044-fe627e3d78c7",
        ];
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
    fn both_halves_of_a_print_carry_their_own_bits_and_the_map_hashes_the_first() {
        let key = PrintKey::new();
        let prints: Vec<Print> = (0..2000).map(|i| key.print(&format!("id-{i}"))).collect();
        let firsts: std::collections::HashSet<u64> = prints.iter().map(|p| p.0).collect();
        let seconds: std::collections::HashSet<u64> = prints.iter().map(|p| p.1).collect();
        assert_eq!((firsts.len(), seconds.len()), (2000, 2000));
        // The halves are not one value twice, nor one a shift or xor of the other.
        assert!(prints.iter().all(|p| p.0 != p.1));
        let xors: std::collections::HashSet<u64> = prints.iter().map(|p| p.0 ^ p.1).collect();
        assert_eq!(xors.len(), 2000);
        // Every bit of each half varies (a constant bit would shrink the print).
        for half in [|p: &Print| p.0, |p: &Print| p.1] {
            let ones = prints.iter().fold(0u64, |acc, p| acc | half(p));
            let zeros = prints.iter().fold(0u64, |acc, p| acc | !half(p));
            assert_eq!((ones, zeros), (u64::MAX, u64::MAX));
        }
        let hasher = BuildHasherDefault::<PrintHasher>::default();
        assert!(prints.iter().all(|p| hasher.hash_one(p) == p.0));
        // The SipHash-1-3 reference output for key 0..16 and the empty input (siphasher's own
        // test vector), so a change of algorithm does not pass unnoticed.
        let reference = PrintKey(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908).print("");
        assert_eq!(
            reference,
            Print(0xbea5_8827_b2bc_7ee7, 0x0130_30dd_6adb_62fd)
        );
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
