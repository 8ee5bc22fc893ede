//! The record ids handed to the capture writer and not yet committed to the store (queued,
//! being written, or in the spill), with the owner of each: what a beacon checks while its
//! record is on its way.
//!
//! Requests add ids; the writer settles them. The writer runs at idle priority (`priority.rs`),
//! so it never takes the lock requests take: a writer preempted while holding it would stall
//! every request behind it until the CPU is free again (seen at 2,000 req/s unpinned, as
//! request threads blocked in the capture hand-off). It sends what it settled down a channel
//! instead. The overflow thread (normal priority) applies it at least every
//! `overflow::APPLY_EVERY` and after each of its jobs, a few ids per lock, so a
//! request never waits behind thousands of them (a replayed spill settles whole batches); a
//! beacon's check applies everything first, so it answers for what was settled.
//!
//! Ids are kept in two maps. Requests add to the **hot** one the ids of records they queue for
//! the writer: a bounded queue's worth, so it stays in the cache. Ids of records in the spill
//! are in the **spilled** one, which no proxied request's thread touches (beacon checks read
//! it, off the runtime). The writer's spilled batches move there (when the overflow thread
//! applies the writer's message), and the overflow thread puts there the ids of the records it
//! takes, before it takes them (until then a check finds them in its list, see
//! [`PendingIds::contains_for_or`]). At saturation every record is spilled and stays there
//! until the load drops (hundreds of thousands): in one map, each request's insert missed the
//! cache twice, and a request that grew the map rehashed all of it under the lock every request
//! takes (perf: 0.8 µs a request in the hand-off; a rehash of a million ids is tens of
//! milliseconds).
//!
//! Ids are kept as prints (`request_id::print`), not strings: a copy of each id and a list of
//! owners per id were two allocations and more misses on every request's thread.
//!
//! **Invariant:** for every record, one add (to the hot map before it is queued, or to the
//! spilled map before the overflow thread takes it), at most one `spilled` (for a queued record
//! whose line the writer put in the spill) and one `settle`; a record dropped before it was
//! made pending is not settled (`Core::drop_unsettled`), or it would settle a retry's. A pair
//! is counted in exactly one map: a `spilled` moves it only if it is still hot, and a `settle`
//! removes it from the hot map, else from the spilled one, so the counts come out right
//! whatever order the writer's and the overflow thread's messages are applied in.

use crate::config::Owner;
use crate::request_id::print::{IdMap, Print, PrintKey};
use std::collections::hash_map::Entry;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, MutexGuard};

/// The owners of one id's pending records: one, unless a retry reused the id.
#[derive(Debug)]
enum Owners {
    One(Option<Owner>),
    Many(Vec<Option<Owner>>),
}

/// Records by print and owner.
type Pairs = Vec<(Print, Option<Owner>)>;

/// What the writer and the overflow thread report, applied later by whoever applies.
enum Change {
    /// Committed or dropped: no longer pending.
    Settled(Pairs),
    /// Their lines are in the spill: they wait there, maybe long.
    Spilled(Pairs),
}

pub(crate) struct PendingIds {
    key: PrintKey,
    /// Ids on their way: the only lock a request takes.
    hot: Mutex<Ids>,
    /// The changes waiting to be applied and the spilled ids; held while applying and while a
    /// check reads both maps, so a check never sees a pair between the two.
    applier: Mutex<Applier>,
    changes: Sender<Change>,
}

/// A map of pending ids with the owner of each record.
pub(crate) struct Ids {
    map: IdMap<Owners>,
}

struct Applier {
    changes: Receiver<Change>,
    /// A change received and not yet wholly applied (its pairs are taken from the end).
    backlog: Option<Change>,
    spilled: Ids,
}

/// The most changed pairs applied under one hold of the locks.
const APPLY_PER_LOCK: usize = 64;

impl PendingIds {
    pub(crate) fn new() -> PendingIds {
        let (changes, receiver) = mpsc::channel();
        let key = PrintKey::new();
        PendingIds {
            key: key.clone(),
            hot: Mutex::new(Ids::with_key(key.clone())),
            applier: Mutex::new(Applier {
                changes: receiver,
                backlog: None,
                spilled: Ids::with_key(key),
            }),
            changes,
        }
    }

    pub(crate) fn print(&self, id: &str) -> Print {
        self.key.print(id)
    }

    /// A record of `id` by `owner` is on its way to the store.
    pub(crate) fn add(&self, id: &str, owner: Option<Owner>) {
        let print = self.print(id);
        self.lock().add(print, owner);
    }

    /// The hot ids as they are: changes not yet applied are not reflected (for a request adding
    /// its own, that does not matter).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Ids> {
        super::writer::lock(&self.hot)
    }

    /// Whether a record of `id` is pending, with every change so far applied (what a beacon's
    /// check reads).
    #[cfg(test)]
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.contains_for_or(id, None, |_, _| false)
    }

    /// [`PendingIds::contains`] for a record of `id` made by `owner`.
    #[cfg(test)]
    pub(crate) fn contains_for(&self, id: &str, owner: Option<Owner>) -> bool {
        self.contains_for_or(id, Some(owner), |_, _| false)
    }

    /// Whether a record of `id` (made by `owner`, when given) is pending here, or else
    /// `elsewhere` holds it (the overflow thread's list). `elsewhere` is asked under the lock
    /// [`PendingIds::hold_spilled`] takes, so an id on its way from there to the spilled map is
    /// found in one or the other.
    pub(crate) fn contains_for_or(
        &self,
        id: &str,
        owner: Option<Option<Owner>>,
        elsewhere: impl FnOnce(Print, Option<Option<Owner>>) -> bool,
    ) -> bool {
        let print = self.print(id);
        // Applied a few at a time, letting the overflow thread in between; the check runs under
        // the hold that found nothing left.
        let applier = loop {
            let mut applier = super::writer::lock(&self.applier);
            if !applier.apply(&self.hot, APPLY_PER_LOCK) {
                break applier;
            }
        };
        self.lock().has(print, owner)
            || applier.spilled.has(print, owner)
            || elsewhere(print, owner)
    }

    /// Records the overflow thread is about to take from its list: pending in the spilled map
    /// from now on (the hot map never had them).
    pub(crate) fn hold_spilled(&self, keys: impl IntoIterator<Item = (Print, Option<Owner>)>) {
        let mut applier = super::writer::lock(&self.applier);
        for (print, owner) in keys {
            applier.spilled.add(print, owner);
        }
    }

    /// Applies every change so far, [`APPLY_PER_LOCK`] pairs per hold of the locks.
    pub(crate) fn apply_settled(&self) {
        while super::writer::lock(&self.applier).apply(&self.hot, APPLY_PER_LOCK) {}
    }

    /// Marks these records settled without taking a lock (applied by [`apply_settled`], which
    /// the overflow thread and every `contains` check run).
    ///
    /// [`apply_settled`]: PendingIds::apply_settled
    pub(crate) fn settle<'a>(&self, records: impl IntoIterator<Item = (&'a str, Option<Owner>)>) {
        self.send(records, Change::Settled);
    }

    /// These records' lines are in the spill: they move out of the hot map when applied.
    pub(crate) fn spilled<'a>(&self, records: impl IntoIterator<Item = (&'a str, Option<Owner>)>) {
        self.send(records, Change::Spilled);
    }

    fn send<'a>(
        &self,
        records: impl IntoIterator<Item = (&'a str, Option<Owner>)>,
        change: fn(Pairs) -> Change,
    ) {
        let pairs: Pairs = records
            .into_iter()
            .map(|(id, owner)| (self.print(id), owner))
            .collect();
        if !pairs.is_empty() {
            // The receiver lives as long as `self`: this cannot fail.
            let _ = self.changes.send(change(pairs));
        }
    }
}

impl Applier {
    /// Applies up to `budget` changed pairs under one hold of the hot lock (the spilled map is
    /// updated after it is released); true when more may be waiting.
    fn apply(&mut self, hot: &Mutex<Ids>, mut budget: usize) -> bool {
        let (mut moved, mut settled) = (Vec::new(), Vec::new());
        let more = {
            let mut hot = super::writer::lock(hot);
            loop {
                if budget == 0 {
                    break true;
                }
                let backlog = match self.backlog.as_mut() {
                    Some(b) => b,
                    None => match self.changes.try_recv() {
                        Ok(change) => self.backlog.insert(change),
                        Err(_) => break false,
                    },
                };
                let (pairs, spilled) = match backlog {
                    Change::Settled(p) => (p, false),
                    Change::Spilled(p) => (p, true),
                };
                while budget > 0
                    && let Some((print, owner)) = pairs.pop()
                {
                    budget -= 1;
                    match (hot.remove(print, owner), spilled) {
                        (true, true) => moved.push((print, owner)),
                        (false, false) => settled.push((print, owner)),
                        // A spilled record already settled, or a settled one that was hot.
                        _ => {}
                    }
                }
                if pairs.is_empty() {
                    self.backlog = None;
                }
            }
        };
        for (print, owner) in moved {
            self.spilled.add(print, owner);
        }
        for (print, owner) in settled {
            self.spilled.remove(print, owner);
        }
        more
    }
}

impl Ids {
    fn with_key(key: PrintKey) -> Ids {
        Ids {
            map: IdMap::with_key(key),
        }
    }

    fn add(&mut self, print: Print, owner: Option<Owner>) {
        match self.map.entry_of(print) {
            Entry::Vacant(v) => {
                v.insert(Owners::One(owner));
            }
            Entry::Occupied(mut o) => match o.get_mut() {
                Owners::One(first) => {
                    let first = *first;
                    o.insert(Owners::Many(vec![first, owner]));
                }
                Owners::Many(owners) => owners.push(owner),
            },
        }
    }

    pub(crate) fn contains(&self, print: Print) -> bool {
        self.map.get_of(print).is_some()
    }

    /// Whether a record of `print` is here, by `owner` when given.
    fn has(&self, print: Print, owner: Option<Option<Owner>>) -> bool {
        match owner {
            Some(owner) => self.contains_for(print, owner),
            None => self.contains(print),
        }
    }

    fn contains_for(&self, print: Print, owner: Option<Owner>) -> bool {
        match self.map.get_of(print) {
            None => false,
            Some(Owners::One(o)) => *o == owner,
            Some(Owners::Many(owners)) => owners.contains(&owner),
        }
    }

    /// One pending record of `print` by `owner` is no longer here (a retry with the same id may
    /// still be); false when there was none.
    fn remove(&mut self, print: Print, owner: Option<Owner>) -> bool {
        let Entry::Occupied(mut o) = self.map.entry_of(print) else {
            return false;
        };
        let (found, empty) = match o.get_mut() {
            Owners::One(first) => (*first == owner, *first == owner),
            Owners::Many(owners) => match owners.iter().position(|o| *o == owner) {
                Some(at) => {
                    owners.swap_remove(at);
                    (true, owners.is_empty())
                }
                None => (false, false),
            },
        };
        if empty {
            o.remove();
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `id` reads as pending by `owner` in the hot map, without applying any change.
    fn unapplied(pending: &PendingIds, id: &str, owner: Option<Owner>) -> bool {
        pending.lock().contains_for(pending.print(id), owner)
    }

    /// One bounded hold of the hot lock's worth of changes; true when more may be waiting.
    fn apply_once(pending: &PendingIds) -> bool {
        super::super::writer::lock(&pending.applier).apply(&pending.hot, APPLY_PER_LOCK)
    }

    /// How many ids the hot and the spilled map hold, with every change applied.
    fn sizes(pending: &PendingIds) -> (usize, usize) {
        pending.apply_settled();
        let spilled = super::super::writer::lock(&pending.applier)
            .spilled
            .map
            .len();
        (pending.lock().map.len(), spilled)
    }

    #[test]
    fn spilled_ids_leave_the_hot_map_and_stay_pending_until_settled() {
        let pending = PendingIds::new();
        let owner = Owner::parse(&"cd".repeat(16));
        let ids: Vec<String> = (0..1000).map(|i| format!("s{i}")).collect();
        for id in &ids {
            pending.add(id, owner);
        }
        pending.add("queued", None);
        pending.spilled(ids.iter().map(|id| (id.as_str(), owner)));
        // Not applied yet: still hot, and pending either way.
        assert!(unapplied(&pending, "s7", owner));
        assert!(pending.contains_for("s7", owner));
        assert_eq!(sizes(&pending), (1, 1000), "only the queued id is hot");
        assert!(ids.iter().all(|id| pending.contains_for(id, owner)));
        assert!(!pending.contains_for("s7", None), "another owner's");
        // The writer replays and commits half of them.
        pending.settle(ids[..500].iter().map(|id| (id.as_str(), owner)));
        assert_eq!(sizes(&pending), (1, 500));
        assert!(!pending.contains("s7") && pending.contains("s700"));
        pending.settle(ids[500..].iter().map(|id| (id.as_str(), owner)));
        pending.settle([("queued", None)]);
        assert_eq!(sizes(&pending), (0, 0));
    }

    #[test]
    fn a_settle_before_its_spilled_message_leaves_nothing_behind() {
        // The writer may replay and commit a line before the overflow thread reports it spilled.
        let pending = PendingIds::new();
        pending.add("a", None);
        pending.settle([("a", None)]);
        pending.spilled([("a", None)]);
        assert_eq!(sizes(&pending), (0, 0));
        assert!(!pending.contains("a"));

        // Two attempts of one id by one owner: one spilled, one queued, settled in every order.
        for order in 0..3 {
            let pending = PendingIds::new();
            pending.add("r", None);
            pending.add("r", None);
            match order {
                0 => {
                    pending.spilled([("r", None)]);
                    pending.settle([("r", None)]);
                    assert!(pending.contains("r"), "one attempt is still pending");
                    pending.settle([("r", None)]);
                }
                1 => {
                    pending.settle([("r", None)]);
                    pending.spilled([("r", None)]);
                    assert!(pending.contains("r"), "one attempt is still pending");
                    pending.settle([("r", None)]);
                }
                _ => {
                    pending.spilled([("r", None)]);
                    assert_eq!(sizes(&pending), (1, 1));
                    pending.settle([("r", None), ("r", None)]);
                }
            }
            assert_eq!(sizes(&pending), (0, 0), "order {order}");
            assert!(!pending.contains("r"));
        }
    }

    #[test]
    fn settled_ids_apply_when_asked_and_one_attempt_at_a_time() {
        let pending = PendingIds::new();
        pending.add("a", None);
        pending.add("a", None);
        pending.add("b", None);
        pending.settle([("a", None), ("c", None)]);
        assert!(unapplied(&pending, "a", None), "not applied yet");
        assert!(pending.contains("a"), "a retry of a is still pending");
        assert!(pending.contains_for("b", None));
        assert!(
            !pending.contains("c"),
            "settling an unknown id adds nothing"
        );
        pending.settle([("a", None), ("b", None)]);
        pending.settle([]);
        assert!(!pending.contains("a"));
        assert!(!pending.contains("b"));
    }

    #[test]
    fn a_large_settle_is_applied_in_bounded_holds_of_the_lock() {
        let pending = PendingIds::new();
        let n = APPLY_PER_LOCK * 3 + 5;
        let all: Vec<String> = (0..n).map(|i| format!("id{i}")).collect();
        for id in &all {
            pending.add(id, None);
        }
        pending.settle(all.iter().map(|id| (id.as_str(), None)));
        let left = || {
            all.iter()
                .filter(|id| unapplied(&pending, id, None))
                .count()
        };
        assert!(apply_once(&pending));
        assert_eq!(left(), n - APPLY_PER_LOCK);
        pending.apply_settled();
        assert_eq!(left(), 0);
        assert!(!apply_once(&pending), "nothing left");
    }

    #[test]
    fn settling_needs_no_lock_and_owners_are_kept_apart() {
        let pending = PendingIds::new();
        let owner = Owner::parse(&"ab".repeat(16));
        assert!(owner.is_some());
        pending.add("a", owner);
        pending.add("a", None);
        pending.add("b", owner);
        let held = pending.lock();
        // The writer settles while a request holds the lock: it does not wait for it.
        std::thread::scope(|s| {
            let (done, wait) = mpsc::channel();
            let pending = &pending;
            s.spawn(move || {
                pending.settle([("a", None)]);
                let _ = done.send(());
            });
            let settled = wait.recv_timeout(std::time::Duration::from_secs(10));
            drop(held);
            assert!(settled.is_ok(), "settle waited for the lock");
        });
        assert!(pending.contains_for("a", owner));
        assert!(!pending.contains_for("a", None));
        assert!(pending.contains_for("b", owner));
        assert!(
            !pending.contains_for("b", None),
            "one record, another owner"
        );
        pending.settle([("b", None)]);
        assert!(
            pending.contains_for("b", owner),
            "only the same owner's record settles it"
        );
        pending.settle([("a", owner), ("b", owner)]);
        assert!(!pending.contains("a") && !pending.contains("b"));
    }
}
