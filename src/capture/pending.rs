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

use crate::config::Owner;
use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, MutexGuard};

/// Ids settled by the writer: `(id, owner)` of each committed or dropped record.
type Settled = Vec<(String, Option<Owner>)>;

pub(crate) struct PendingIds {
    ids: Mutex<Ids>,
    settled: Sender<Settled>,
}

pub(crate) struct Ids {
    map: HashMap<String, Vec<Option<Owner>>>,
    settled: Receiver<Settled>,
    /// Settled ids received and not yet applied.
    backlog: Settled,
}

/// The most settled ids applied under one hold of the lock.
const APPLY_PER_LOCK: usize = 64;

impl PendingIds {
    pub(crate) fn new() -> PendingIds {
        let (settled, receiver) = mpsc::channel();
        PendingIds {
            ids: Mutex::new(Ids {
                map: HashMap::new(),
                settled: receiver,
                backlog: Vec::new(),
            }),
            settled,
        }
    }

    /// The pending ids as they are: settled ids not yet applied still read as pending (for a
    /// request adding its own, that does not matter).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Ids> {
        super::writer::lock(&self.ids)
    }

    /// The pending ids with everything settled so far applied (what a beacon's check reads).
    pub(crate) fn lock_settled(&self) -> MutexGuard<'_, Ids> {
        self.apply_settled();
        self.lock()
    }

    /// Applies everything settled so far, [`APPLY_PER_LOCK`] ids per hold of the lock.
    pub(crate) fn apply_settled(&self) {
        while self.lock().apply(APPLY_PER_LOCK) {}
    }

    /// Marks these records settled without taking the lock (applied at the next [`lock`]).
    ///
    /// [`lock`]: PendingIds::lock
    pub(crate) fn settle(&self, settled: Settled) {
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
                && let Some((id, owner)) = self.backlog.pop()
            {
                self.remove(&id, owner);
                budget -= 1;
            }
        }
        true
    }

    pub(crate) fn add(&mut self, id: &str, owner: Option<Owner>) {
        self.map.entry(id.to_owned()).or_default().push(owner);
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.map.contains_key(id)
    }

    pub(crate) fn contains_for(&self, id: &str, owner: Option<Owner>) -> bool {
        self.map
            .get(id)
            .is_some_and(|owners| owners.contains(&owner))
    }

    /// One pending record of `id` by `owner` is settled (a retry with the same id may still be
    /// pending).
    fn remove(&mut self, id: &str, owner: Option<Owner>) {
        if let Some(owners) = self.map.get_mut(id) {
            if let Some(at) = owners.iter().position(|o| *o == owner) {
                owners.swap_remove(at);
            }
            if owners.is_empty() {
                self.map.remove(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_ids_apply_when_asked_and_one_attempt_at_a_time() {
        let pending = PendingIds::new();
        pending.lock().add("a", None);
        pending.lock().add("a", None);
        pending.lock().add("b", None);
        pending.settle(vec![("a".to_owned(), None), ("c".to_owned(), None)]);
        assert!(pending.lock().contains_for("a", None), "not applied yet");
        let ids = pending.lock_settled();
        assert!(ids.contains("a"), "a retry of a is still pending");
        assert!(ids.contains_for("b", None));
        drop(ids);
        pending.settle(vec![("a".to_owned(), None), ("b".to_owned(), None)]);
        pending.settle(Vec::new());
        let ids = pending.lock_settled();
        assert!(!ids.contains("a"));
        assert!(!ids.contains("b"));
    }

    #[test]
    fn a_large_settle_is_applied_in_bounded_holds_of_the_lock() {
        let pending = PendingIds::new();
        let n = APPLY_PER_LOCK * 3 + 5;
        let all: Vec<(String, Option<Owner>)> = (0..n).map(|i| (format!("id{i}"), None)).collect();
        for (id, owner) in &all {
            pending.lock().add(id, *owner);
        }
        pending.settle(all.clone());
        let left = |ids: &Ids| all.iter().filter(|(id, _)| ids.contains(id)).count();
        assert!(pending.lock().apply(APPLY_PER_LOCK));
        assert_eq!(left(&pending.lock()), n - APPLY_PER_LOCK);
        pending.apply_settled();
        assert_eq!(left(&pending.lock()), 0);
        assert!(!pending.lock().apply(APPLY_PER_LOCK), "nothing left");
    }

    #[test]
    fn settling_needs_no_lock_and_owners_are_kept_apart() {
        let pending = PendingIds::new();
        let owner = Owner::parse(&"ab".repeat(16));
        assert!(owner.is_some());
        pending.lock().add("a", owner);
        pending.lock().add("a", None);
        let held = pending.lock();
        // The writer settles while a request holds the lock: it does not wait for it.
        std::thread::scope(|s| {
            let (done, wait) = mpsc::channel();
            let pending = &pending;
            s.spawn(move || {
                pending.settle(vec![("a".to_owned(), None)]);
                let _ = done.send(());
            });
            let settled = wait.recv_timeout(std::time::Duration::from_secs(10));
            drop(held);
            assert!(settled.is_ok(), "settle waited for the lock");
        });
        let ids = pending.lock_settled();
        assert!(ids.contains_for("a", owner));
        assert!(!ids.contains_for("a", None));
    }
}
