//! The writer thread: batches the queue, writes batches to the store, spills them when the
//! store fails, retries with backoff and replays the spill oldest first.
//!
//! **Invariant**: while the spill holds entries, new batches go to the spill too, so a replay
//! never writes an older feedback over a newer one (entries that `submit` spilled because the
//! queue was full are the exception; records are unaffected, as they are written once).

use super::spill::{Closed, SegmentReader};
use super::writer::{Closing, Core, Item, Message, PANICKED, lock};
use crate::store::{Entry, Store, StoreError};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

pub(crate) struct Worker<S, F> {
    core: Arc<Core>,
    open: F,
    store: Option<S>,
    batch: Vec<Entry>,
    batch_bytes: usize,
    batch_started: Option<Instant>,
    /// No store attempt before this (unless forced by a flush).
    retry_at: Instant,
    backoff: Duration,
    /// The last store attempt failed (logged once per outage).
    failing: bool,
}

/// How much of the spill one replay takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// Every segment: what a flush or a close waits for.
    Whole,
    /// Segment by segment, stopping while anything is queued (the queue is taken, and the
    /// replay goes on at the next tick, due at once).
    Yielding,
}

/// Whether a store attempt may ignore the backoff.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Attempt {
    IfDue,
    Now,
}

impl<S, F> Worker<S, F>
where
    S: Store,
    F: FnMut() -> Result<S, StoreError>,
{
    pub(crate) fn new(core: Arc<Core>, open: F) -> Self {
        let backoff = core.config.retry_min;
        Worker {
            core,
            open,
            store: None,
            batch: Vec::new(),
            batch_bytes: 0,
            batch_started: None,
            retry_at: Instant::now(),
            backoff,
            failing: false,
        }
    }

    pub(crate) fn run(mut self, receiver: Receiver<Message>) {
        self.core.register_thread();
        super::priority::background();
        // Leftovers from a previous run go in first.
        self.recover(Attempt::Now, Replay::Yielding);
        loop {
            // Everything queued, without blocking.
            loop {
                match receiver.try_recv() {
                    Ok(Message::Entry(item, size)) => self.push(item, size),
                    Ok(Message::Flush(done)) => {
                        self.finish(Attempt::Now);
                        let _ = done.send(());
                    }
                    Ok(Message::Close(done, closing)) => {
                        self.close(&receiver, closing);
                        let _ = done.send(());
                        return;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.close(&receiver, Closing::Store);
                        return;
                    }
                }
            }
            let now = Instant::now();
            if self.next_wake(now).is_some_and(|wake| wake <= now) {
                self.tick();
            }
            // Sleep until the next deadline, at most one flush interval. Submits do not wake
            // this thread one by one (a wake-up per record costs a context switch on the cores
            // that serve requests); a flush, a close or a full batch unparks it.
            let now = Instant::now();
            let interval = after(now, self.core.config.flush_interval);
            let wake = self.next_wake(now).map_or(interval, |w| w.min(interval));
            std::thread::park_timeout(wake.saturating_duration_since(now));
        }
    }

    /// When the thread must wake without a message: the batch's deadline, or the next retry
    /// (and spill sync) while the spill holds entries.
    ///
    /// `now` is the caller's: a retry that is due must compare as due (a wake computed from a
    /// later clock reading never would, and the thread would spin without retrying).
    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let deadline = self
            .batch_started
            .map(|started| after(started, self.core.config.flush_interval));
        let retry = (!lock(&self.core.spill).is_empty()).then(|| {
            self.retry_at
                .min(after(now, self.core.config.flush_interval))
        });
        match (deadline, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn push(&mut self, item: Item, size: usize) {
        self.add(item, size);
        let config = &self.core.config;
        if self.batch.len() >= config.batch_records || self.batch_bytes >= config.batch_bytes {
            self.write_batch(Attempt::IfDue, Replay::Yielding);
            self.sync_spill();
        }
    }

    /// Builds and prepares `item` and adds it to the batch, without writing (or counts it as
    /// dropped when that panicked).
    fn add(&mut self, item: Item, size: usize) {
        match item.prepared(&self.core.config.prepare) {
            Ok(entry) => {
                self.batch.push(entry);
                self.batch_bytes += size;
                self.batch_started.get_or_insert_with(Instant::now);
            }
            Err(mark) => {
                self.core.release(size);
                self.core.drop_marks(vec![mark], PANICKED);
            }
        }
    }

    fn tick(&mut self) {
        let due = self
            .batch_started
            .is_some_and(|started| started.elapsed() >= self.core.config.flush_interval);
        if due {
            self.write_batch(Attempt::IfDue, Replay::Yielding);
        } else {
            self.recover(Attempt::IfDue, Replay::Yielding);
        }
        self.sync_spill();
    }

    /// Writes the batch, tries the spill, syncs it: what a flush waits for.
    fn finish(&mut self, attempt: Attempt) {
        if self.batch.is_empty() {
            self.recover(attempt, Replay::Whole);
        } else {
            // Tries a replay first.
            self.write_batch(attempt, Replay::Whole);
        }
        self.sync_spill();
    }

    /// Stops taking messages: closes the gate, drains what was sent before it closed, writes
    /// everything and makes a last replay attempt (or, `Closing::Spill`, spills everything).
    fn close(&mut self, receiver: &Receiver<Message>, closing: Closing) {
        self.core.closed.store(true, Ordering::SeqCst);
        while self.core.sending.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        let mut waiting = Vec::new();
        // A stop that cannot wait may come while this close writes: from then on, the spill.
        let core = Arc::clone(&self.core);
        let hurried = || closing == Closing::Spill || core.hurry.load(Ordering::SeqCst);
        while let Ok(message) = receiver.try_recv() {
            match message {
                Message::Entry(item, size) if hurried() => {
                    self.add(item, size);
                }
                Message::Entry(item, size) => self.push(item, size),
                Message::Flush(done) | Message::Close(done, _) => waiting.push(done),
            }
        }
        match closing {
            Closing::Store if !hurried() => self.finish(Attempt::Now),
            Closing::Store | Closing::Spill => {
                let entries = std::mem::take(&mut self.batch);
                let bytes = std::mem::take(&mut self.batch_bytes);
                self.batch_started = None;
                if !entries.is_empty() {
                    self.core.spill(entries);
                }
                self.core.release(bytes);
                self.sync_spill();
            }
        }
        for done in waiting {
            let _ = done.send(());
        }
    }

    /// Writes the current batch to the store, or to the spill when the store is failing or the
    /// spill still holds older entries.
    fn write_batch(&mut self, attempt: Attempt, how: Replay) {
        if self.batch.is_empty() {
            return;
        }
        let entries = std::mem::take(&mut self.batch);
        let bytes = std::mem::take(&mut self.batch_bytes);
        self.batch_started = None;
        self.recover(attempt, how);
        let spill_empty = lock(&self.core.spill).is_empty();
        let stored = spill_empty
            && match self.store(attempt) {
                Some(store) => match store.write_batch(&entries) {
                    Ok(_) => true,
                    Err(e) => {
                        self.failed(&e);
                        false
                    }
                },
                None => false,
            };
        if stored {
            self.succeeded();
            self.core
                .written
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
            self.core.settle(&entries);
        } else {
            self.core.spill(entries);
        }
        self.core.release(bytes);
    }

    /// The store, opening it if needed, or `None` while backing off or when it cannot open.
    fn store(&mut self, attempt: Attempt) -> Option<&mut S> {
        if attempt == Attempt::IfDue && Instant::now() < self.retry_at {
            return None;
        }
        if self.store.is_none() {
            match (self.open)() {
                Ok(store) => self.store = Some(store),
                Err(e) => {
                    self.failed(&e);
                    return None;
                }
            }
        }
        self.store.as_mut()
    }

    fn failed(&mut self, e: &StoreError) {
        if self.failing {
            tracing::debug!(error = %e, "capture store still failing");
            self.backoff = self
                .backoff
                .saturating_mul(2)
                .min(self.core.config.retry_max);
        } else {
            warn!(error = %e, kind = ?e.kind(), "capture store failed; spilling until it recovers");
            self.backoff = self.core.config.retry_min;
            self.failing = true;
        }
        self.retry_at = after(Instant::now(), self.backoff);
        if !e.is_busy() {
            // Not just a lock: open a fresh connection next time.
            self.store = None;
        }
    }

    fn succeeded(&mut self) {
        if self.failing {
            info!("capture store recovered");
        }
        self.failing = false;
        self.backoff = self.core.config.retry_min;
    }

    /// Replays spill segments, oldest first, deleting each once it is committed.
    fn recover(&mut self, attempt: Attempt, how: Replay) {
        if lock(&self.core.spill).is_empty() || self.store(attempt).is_none() {
            return;
        }
        // Replayed data must be on disk before anything is deleted; cheap when clean.
        self.sync_spill();
        let segments = lock(&self.core.spill).close_for_replay();
        let mut replayed = 0;
        for segment in segments {
            match self.replay(&segment, attempt) {
                Ok(count) => replayed += count,
                Err(ReplayError::Store(e)) => {
                    self.failed(&e);
                    break;
                }
                Err(ReplayError::NoStore) => break,
                Err(ReplayError::Io(e)) => {
                    error!(error = %e, path = %segment.path.display(), "capture spill segment unreadable; kept for the next attempt");
                    self.retry_at = after(Instant::now(), self.core.config.retry_max);
                    break;
                }
            }
            // A long replay (seconds, after a burst) must not leave the queue to fill: past its
            // budget new records would go to the overflow thread, which runs at normal priority
            // and competes with requests. Between segments, what was queued is taken first (the
            // replay goes on at the next tick, due at once).
            if how == Replay::Yielding && self.core.queued_bytes.load(Ordering::Relaxed) > 0 {
                break;
            }
        }
        if replayed > 0 {
            info!(replayed, "capture spill replayed into the store");
        }
    }

    fn replay(&mut self, segment: &Closed, attempt: Attempt) -> Result<u64, ReplayError> {
        let chunk = self.core.config.batch_records;
        let mut reader = SegmentReader::open(&segment.path, chunk).map_err(ReplayError::Io)?;
        let mut count = 0;
        loop {
            let entries = reader.next_chunk().map_err(ReplayError::Io)?;
            if entries.is_empty() {
                break;
            }
            let store = self.store(attempt).ok_or(ReplayError::NoStore)?;
            store.write_batch(&entries).map_err(ReplayError::Store)?;
            self.succeeded();
            count += entries.len() as u64;
            self.core
                .replayed
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
            self.core.settle(&entries);
        }
        if reader.bad > 0 {
            let total = self.core.dropped.fetch_add(reader.bad, Ordering::Relaxed) + reader.bad;
            error!(
                dropped = reader.bad,
                dropped_total = total,
                path = %segment.path.display(),
                "capture entries dropped: unreadable lines in a spill segment"
            );
        }
        let mut spill = lock(&self.core.spill);
        let removed = spill.remove(segment.seq);
        self.core
            .spill_bytes
            .store(spill.total_bytes(), Ordering::Relaxed);
        drop(spill);
        if let Err(e) = removed {
            // Its entries are committed; replaying it again later is harmless.
            warn!(error = %e, path = %segment.path.display(), "capture spill segment not deleted");
        }
        Ok(count)
    }

    fn sync_spill(&self) {
        self.core.sync_spill();
    }
}

/// `start + wait`, saturating at a day from `start` (a configured duration cannot overflow).
fn after(start: Instant, wait: Duration) -> Instant {
    start
        .checked_add(wait.min(Duration::from_secs(86_400)))
        .unwrap_or(start)
}

enum ReplayError {
    Store(StoreError),
    NoStore,
    Io(std::io::Error),
}
