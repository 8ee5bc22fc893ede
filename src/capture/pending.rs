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
//! Ids are kept as prints (`request_id::print`), not strings: at saturation every request adds
//! one and the spilled ones stay until the load drops (hundreds of thousands), so a copy of
//! each id and a list of owners per id were two allocations and three cache misses on every
//! request's thread (perf: 0.8 µs a request).

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

/// Ids settled by the writer: the print and owner of each committed or dropped record.
type Settled = Vec<(Print, Option<Owner>)>;

pub(crate) struct PendingIds {
    key: PrintKey,
    ids: Mutex<Ids>,
    settled: Sender<Settled>,
}

pub(crate) struct Ids {
    map: IdMap<Owners>,
    settled: Receiver<Settled>,
    /// Settled ids received and not yet applied.
    backlog: Settled,
}

/// The most settled ids applied under one hold of the lock.
const APPLY_PER_LOCK: usize = 64;

impl PendingIds {
    pub(crate) fn new() -> PendingIds {
        let (settled, receiver) = mpsc::channel();
        let key = PrintKey::new();
        PendingIds {
            key: key.clone(),
            ids: Mutex::new(Ids {
                map: IdMap::with_key(key),
                settled: receiver,
                backlog: Vec::new(),
            }),
            settled,
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

    /// The pending ids as they are: settled ids not yet applied still read as pending (for a
    /// request adding its own, that does not matter).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Ids> {
        super::writer::lock(&self.ids)
    }

    /// Whether a record of `id` is pending, with everything settled so far applied (what a
    /// beacon's check reads).
    pub(crate) fn contains(&self, id: &str) -> bool {
        let print = self.print(id);
        self.apply_settled();
        self.lock().contains(print)
    }

    /// [`PendingIds::contains`] for a record of `id` made by `owner`.
    pub(crate) fn contains_for(&self, id: &str, owner: Option<Owner>) -> bool {
        let print = self.print(id);
        self.apply_settled();
        self.lock().contains_for(print, owner)
    }

    /// Applies everything settled so far, [`APPLY_PER_LOCK`] ids per hold of the lock.
    pub(crate) fn apply_settled(&self) {
        while self.lock().apply(APPLY_PER_LOCK) {}
    }

    /// Marks these records settled without taking the lock (applied by [`apply_settled`], which
    /// the overflow thread and every `contains` check run).
    ///
    /// [`apply_settled`]: PendingIds::apply_settled
    pub(crate) fn settle<'a>(&self, records: impl IntoIterator<Item = (&'a str, Option<Owner>)>) {
        let settled: Settled = records
            .into_iter()
            .map(|(id, owner)| (self.print(id), owner))
            .collect();
        if !settled.is_empty() {
            // The receiver lives as long as `self`: this cannot fail.
            let _ = self.settled.send(settled);
        }
    }
}

impl Ids {
    /// Applies up to `budget` settled ids; true when more may be waiting.
    fn apply(&mut self, mut budget: usize) -> bool {
        while budget > 0 {
            if self.backlog.is_empty() {
                match self.settled.try_recv() {
                    Ok(settled) => self.backlog = settled,
                    Err(_) => return false,
                }
            }
            while budget > 0
                && let Some((print, owner)) = self.backlog.pop()
            {
                self.remove(print, owner);
                budget -= 1;
            }
        }
        true
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

    fn contains_for(&self, print: Print, owner: Option<Owner>) -> bool {
        match self.map.get_of(print) {
            None => false,
            Some(Owners::One(o)) => *o == owner,
            Some(Owners::Many(owners)) => owners.contains(&owner),
        }
    }

    /// One pending record of `print` by `owner` is settled (a retry with the same id may still
    /// be pending).
    fn remove(&mut self, print: Print, owner: Option<Owner>) {
        let Entry::Occupied(mut o) = self.map.entry_of(print) else {
            return;
        };
        let empty = match o.get_mut() {
            Owners::One(first) => *first == owner,
            Owners::Many(owners) => {
                if let Some(at) = owners.iter().position(|o| *o == owner) {
                    owners.swap_remove(at);
                }
                owners.is_empty()
            }
        };
        if empty {
            o.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `id` reads as pending by `owner` without applying what was settled.
    fn unapplied(pending: &PendingIds, id: &str, owner: Option<Owner>) -> bool {
        pending.lock().contains_for(pending.print(id), owner)
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
        assert!(pending.lock().apply(APPLY_PER_LOCK));
        assert_eq!(left(), n - APPLY_PER_LOCK);
        pending.apply_settled();
        assert_eq!(left(), 0);
        assert!(!pending.lock().apply(APPLY_PER_LOCK), "nothing left");
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
