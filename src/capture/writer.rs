//! The capture writer: `submit` never blocks the request; a batching thread writes to the store,
//! spills to disk when the store fails, and replays the spill once the store works again.
//!
//! ```text
//! submit ──► byte-bounded queue ──► writer thread ──► store (one transaction per batch)
//!    │ (queue full)                      │ (store failing, or spill not yet replayed)
//!    └──► overflow thread ──► spill segments ◄───┘ ──► replayed oldest first, deleted once committed
//! ```
//!
//! **Invariant**: an entry handed to `submit` ends in the store, or in a spill segment that a
//! later replay (this run or the next) puts in the store, or is counted in `dropped` and logged
//! at error level. Drops happen only when the spill directory is at its byte cap (or the disk
//! refuses a spill write), when the queue and the overflow are both full, or when building or
//! redacting one record panicked (a defect; that record only, and the thread lives on).
//! **Invariant**: the queue (including the batch being written) never holds more than
//! `queue_bytes` of estimated entry size.

use super::CaptureRecord;
pub(crate) use super::item::{Item, PANICKED};
use super::overflow::Overflow;
use super::pending::PendingIds;
use super::recorder::Pending;
use super::spill::{self, Spill};
use super::worker::Worker;
pub use super::writer_config::{Prepare, PrepareFn, WriterConfig, WriterError, WriterStats};
use crate::config::Owner;
use crate::store::{ClientTimings, Entry, Feedback, Store, StoreError};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

pub(crate) enum Message {
    /// An entry within the queue's byte budget.
    Entry(Item, usize),
    Flush(oneshot::Sender<()>),
    Close(oneshot::Sender<()>, Closing),
}

/// Where a close puts what is still queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Closing {
    /// The store (or the spill, when the store fails), with a last replay attempt.
    Store,
    /// The spill only, without waiting for the store: a stop that cannot wait.
    Spill,
}

/// Where the records being spilled are pending (`pending.rs`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tracked {
    /// In the hot map: queued ones the writer spills, or entries spilled on a submitting thread.
    Hot,
    /// Already in the spilled map: what the overflow thread takes.
    Spilled,
}

/// The overflow's byte budget: the queue's, and at least this much.
const OVERFLOW_MIN_BYTES: usize = 16 << 20;

/// What the handles and the thread share.
pub(crate) struct Core {
    pub(crate) config: WriterConfig,
    pub(crate) queued_bytes: AtomicUsize,
    queued_peak: AtomicUsize,
    /// Bytes sent past the queue's budget for the thread to spill (bounded like the queue).
    overflow_bytes: AtomicUsize,
    pub(crate) written: AtomicU64,
    pub(crate) spilled: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) replayed: AtomicU64,
    pub(crate) spill_bytes: AtomicU64,
    pub(crate) spill: Mutex<Spill>,
    /// Record ids submitted and not yet committed to the store, with the owner of each
    /// pending record.
    pub(crate) pending: PendingIds,
    /// Set when the thread stops taking messages; see [`Core::close_gate`].
    pub(crate) closed: AtomicBool,
    /// Submits between their `closed` check and their send.
    pub(crate) sending: AtomicUsize,
    /// A stop that cannot wait came during a close to the store: what is not yet written goes
    /// to the spill instead (see [`CaptureWriter::hurry`]).
    pub(crate) hurry: AtomicBool,
    /// The writer thread, to unpark it (it is not woken per entry).
    thread: std::sync::OnceLock<std::thread::Thread>,
    /// Entries sent since the thread was last woken.
    unwoken: AtomicUsize,
}

/// A lock that survives a panic elsewhere: the data it guards stays consistent between
/// statements, so a poisoned lock is used as is rather than spreading the panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Core {
    fn reserve(&self, size: usize) -> bool {
        let limit = self.config.queue_bytes;
        let reserved =
            self.queued_bytes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                    queued.checked_add(size).filter(|&total| total <= limit)
                });
        match reserved {
            Ok(before) => {
                self.queued_peak.fetch_max(before + size, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    pub(crate) fn release(&self, size: usize) {
        self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
    }

    fn add_pending(&self, item: &Item) {
        if let Some((id, owner)) = item.record_key() {
            self.pending.add(id, owner);
        }
    }

    fn reserve_overflow(&self, size: usize) -> bool {
        let limit = self.config.queue_bytes.max(OVERFLOW_MIN_BYTES);
        self.overflow_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                queued.checked_add(size).filter(|&total| total <= limit)
            })
            .is_ok()
    }

    pub(crate) fn release_overflow(&self, size: usize) {
        self.overflow_bytes.fetch_sub(size, Ordering::AcqRel);
    }

    /// Called by the writer thread when it starts.
    pub(crate) fn register_thread(&self) {
        let _ = self.thread.set(std::thread::current());
    }

    /// Wakes the writer thread now.
    pub(crate) fn wake(&self) {
        self.unwoken.store(0, Ordering::Relaxed);
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    /// An entry was queued: wake the thread once a batch's worth is waiting, not per entry.
    fn nudge(&self) {
        let waiting = self.unwoken.fetch_add(1, Ordering::Relaxed) + 1;
        let half_full = self.queued_bytes.load(Ordering::Relaxed) * 2 >= self.config.queue_bytes;
        if waiting >= self.config.batch_records || half_full {
            self.wake();
        }
    }

    /// Fsyncs what was appended to the spill.
    pub(crate) fn sync_spill(&self) {
        let work = lock(&self.spill).sync_handles();
        if let Err(e) = work.and_then(|w| w.run()) {
            tracing::error!(error = %e, dir = %self.config.spill_dir.display(), "capture spill fsync failed");
        }
    }

    /// Entries are committed (or dropped): their ids are no longer pending. Never takes the
    /// lock requests take (see `pending.rs`).
    pub(crate) fn settle(&self, entries: &[Entry]) {
        self.pending
            .settle(entries.iter().filter_map(|entry| match entry {
                Entry::Record(record) => Some((record.id.as_str(), record.owner)),
                Entry::ClientTimings(_) | Entry::Feedback(_) => None,
            }));
    }

    /// Appends `entries` (whose records are pending in the hot map) to the spill (no fsync: the
    /// thread syncs on its next tick or flush), counting what was spilled and what was dropped.
    /// Returns how many were written.
    pub(crate) fn spill(&self, entries: Vec<Entry>) -> usize {
        let mut encoded = spill::Encoded::default();
        for entry in entries {
            encoded.push(entry);
        }
        self.spill_encoded(&mut encoded, Tracked::Hot)
    }

    /// [`Core::spill`] for entries already encoded, whose records are pending where `tracked`
    /// says.
    ///
    /// `encoded` is left empty, its buffer kept for the next batch (growing a fresh one for
    /// each batch was a tenth of the overflow thread's time, in `realloc`).
    pub(crate) fn spill_encoded(&self, encoded: &mut spill::Encoded, tracked: Tracked) -> usize {
        let marks = std::mem::take(&mut encoded.marks);
        let unencodable = std::mem::take(&mut encoded.unencodable);
        let outcome = {
            let mut spill = lock(&self.spill);
            let outcome = spill.append(&encoded.lines);
            self.spill_bytes
                .store(spill.total_bytes(), Ordering::Relaxed);
            outcome
        };
        encoded.lines.clear();
        let mut refused = unencodable;
        let mut written = 0;
        match outcome {
            Ok(accepted) => {
                let mut spilled = Vec::with_capacity(marks.len());
                for (mark, ok) in marks.into_iter().zip(accepted) {
                    if ok {
                        written += 1;
                        spilled.push(mark);
                    } else {
                        refused.push(mark);
                    }
                }
                // Their ids leave the map requests add to (see `pending.rs`).
                if tracked == Tracked::Hot {
                    self.pending
                        .spilled(spilled.iter().filter_map(spill::Mark::record_key));
                }
            }
            Err(error) => {
                tracing::error!(%error, dir = %self.config.spill_dir.display(), "capture spill write failed");
                refused.extend(marks);
            }
        }
        self.spilled.fetch_add(written as u64, Ordering::Relaxed);
        if !refused.is_empty() {
            self.drop_marks(refused, "spill directory full or unwritable");
        }
        written
    }

    /// Counts and logs these entries as dropped, and settles their records' ids.
    pub(crate) fn drop_marks(&self, marks: Vec<spill::Mark>, reason: &'static str) {
        self.drop_unsettled(&marks, reason);
        self.pending
            .settle(marks.iter().filter_map(spill::Mark::record_key));
    }

    /// Counts and logs these entries as dropped, for records whose ids were never made pending:
    /// settling them would settle a retry's pending record of the same id and owner instead.
    pub(crate) fn drop_unsettled(&self, marks: &[spill::Mark], reason: &'static str) {
        let count = marks.len() as u64;
        let total = self.dropped.fetch_add(count, Ordering::Relaxed) + count;
        tracing::error!(
            dropped = count,
            dropped_total = total,
            reason,
            first_id = marks.first().map(|m| m.id.as_str()),
            "capture entries dropped"
        );
    }
}

/// The handle requests use; cheap to clone. Dropping every handle without [`close`] still
/// flushes: the thread writes what it has and ends.
///
/// [`close`]: CaptureWriter::close
#[derive(Clone)]
pub struct CaptureWriter {
    handle: Arc<Handle>,
}

struct Handle {
    sender: mpsc::Sender<Message>,
    core: Arc<Core>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    overflow: Overflow,
}

impl std::fmt::Debug for CaptureWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureWriter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl CaptureWriter {
    /// Starts the writer thread. `open` opens the store; the thread calls it first, and again
    /// (with backoff) after a failure that is not a busy lock. Spill segments left by a previous
    /// run are replayed as soon as the store opens.
    pub fn start<S, F>(config: WriterConfig, open: F) -> Result<CaptureWriter, WriterError>
    where
        S: Store,
        F: FnMut() -> Result<S, StoreError> + Send + 'static,
    {
        let spill = Spill::open(
            &config.spill_dir,
            config.spill_max_bytes,
            config.spill_segment_bytes,
        )
        .map_err(|source| WriterError::SpillDir {
            dir: config.spill_dir.clone(),
            source,
        })?;
        let core = Arc::new(Core {
            queued_bytes: AtomicUsize::new(0),
            queued_peak: AtomicUsize::new(0),
            overflow_bytes: AtomicUsize::new(0),
            written: AtomicU64::new(0),
            spilled: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            spill_bytes: AtomicU64::new(spill.total_bytes()),
            spill: Mutex::new(spill),
            pending: PendingIds::new(),
            closed: AtomicBool::new(false),
            sending: AtomicUsize::new(0),
            hurry: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
            unwoken: AtomicUsize::new(0),
            config,
        });
        let overflow = Overflow::start(Arc::clone(&core)).map_err(WriterError::Thread)?;
        let (sender, receiver) = mpsc::channel();
        let worker = Worker::new(core.clone(), open);
        let thread = std::thread::Builder::new()
            .name("capture-writer".to_string())
            .spawn(move || worker.run(receiver))
            .map_err(WriterError::Thread)?;
        Ok(CaptureWriter {
            handle: Arc::new(Handle {
                sender,
                core,
                thread: Mutex::new(Some(thread)),
                overflow,
            }),
        })
    }

    /// Hands `record` to the writer. Never blocks on I/O and never awaits: the record goes on
    /// the queue, or (queue full, or writer closed) is appended to the spill.
    pub fn submit(&self, record: CaptureRecord) {
        self.submit_entry(Entry::Record(Box::new(record)));
    }

    /// Hands over a record to be built (and redacted) on the writer's thread.
    pub fn submit_pending(&self, pending: Pending) {
        self.enqueue(Item::Pending(Box::new(pending)));
    }

    /// Hands a client's timings beacon to the writer, on the same queue as records.
    pub fn submit_client_timings(&self, id: impl Into<String>, timings: Value) {
        self.submit_owned_client_timings(id, None, timings);
    }

    /// Hands a client's timings, sent with `owner`'s token, to the writer.
    pub fn submit_owned_client_timings(
        &self,
        id: impl Into<String>,
        owner: Option<Owner>,
        timings: Value,
    ) {
        self.submit_entry(Entry::ClientTimings(ClientTimings {
            id: id.into(),
            timings,
            owner,
        }));
    }

    /// Hands feedback to the writer, on the same queue as records.
    pub fn submit_feedback(&self, feedback: Feedback) {
        self.submit_entry(Entry::Feedback(feedback));
    }

    fn submit_entry(&self, entry: Entry) {
        self.enqueue(Item::Entry(entry));
    }

    /// Never blocks and never does file I/O on the caller's thread while the writer runs: past
    /// the queue's budget an entry goes to the thread to be spilled at once (within a second
    /// budget of the same size); past both it is dropped, counted and logged.
    fn enqueue(&self, item: Item) {
        let core = &self.handle.core;
        let size = item.size();
        // Whether the record's id is in the hot map (see `pending.rs`).
        let mut added = false;
        // The gate: a submit that sees `closed` unset finishes its send before the thread
        // drains the channel for the last time (see `Worker::close`).
        core.sending.fetch_add(1, Ordering::SeqCst);
        let left = if core.closed.load(Ordering::SeqCst) {
            Some(item)
        } else if core.reserve(size) {
            // Pending before it is sent, so the writer cannot settle it first.
            core.add_pending(&item);
            added = true;
            let left = self.send(Message::Entry(item, size), || core.release(size));
            core.nudge();
            left
        } else if core.reserve_overflow(size) {
            // Past the queue's budget: the overflow thread spills it (see `overflow`), and its
            // id is pending in the thread's list, then in the spilled ids.
            let key = item
                .record_key()
                .map(|(id, owner)| (core.pending.print(id), owner));
            self.handle
                .overflow
                .send(item, size, key)
                .inspect(|_| core.release_overflow(size))
        } else {
            // Dropped unbuilt: building a record only to drop it would be a request thread's work.
            // Its id was never made pending, so there is nothing to settle.
            core.drop_unsettled(
                &[item.mark()],
                "the capture queue and its overflow are full",
            );
            None
        };
        core.sending.fetch_sub(1, Ordering::SeqCst);
        if let Some(item) = left {
            if !added {
                core.add_pending(&item);
            }
            // The thread has stopped (shutdown): this entry is prepared and spilled here.
            match item.prepared(&core.config.prepare) {
                Ok(entry) => {
                    core.spill(vec![entry]);
                }
                Err(mark) => core.drop_marks(vec![mark], PANICKED),
            }
        }
    }

    /// Sends to the thread; gives the item back (after `undo`) when the thread is gone.
    fn send(&self, message: Message, undo: impl FnOnce()) -> Option<Item> {
        match self.handle.sender.send(message) {
            Ok(()) => None,
            Err(mpsc::SendError(message)) => {
                undo();
                match message {
                    Message::Entry(item, _) => Some(item),
                    Message::Flush(_) | Message::Close(..) => None,
                }
            }
        }
    }

    /// Resolves once everything submitted before this call is committed to the store or
    /// written and fsynced to the spill. If the spill holds entries, the writer also tries to
    /// replay it now (ignoring its retry backoff).
    pub fn flush(&self) -> impl Future<Output = ()> + Send + 'static {
        let overflowed = self.handle.overflow.barrier();
        let (done, wait) = oneshot::channel();
        let sent = self.handle.sender.send(Message::Flush(done)).is_ok();
        self.handle.core.wake();
        async move {
            overflowed.await;
            if sent {
                // An error means the thread ended, after writing everything it had.
                let _ = wait.await;
            }
        }
    }

    /// Flushes everything and stops the thread. Later submits through other clones go to the
    /// spill, which the next start replays.
    pub async fn close(self) {
        self.close_with(Closing::Store).await;
    }

    /// Writes what is queued to the spill (fsynced), without waiting for the store, and stops
    /// the thread: the next start replays it. For a stop that cannot wait.
    pub async fn close_to_spill(self) {
        self.close_with(Closing::Spill).await;
    }

    /// From now on, what is not yet written goes to the spill (fsynced) instead of the store:
    /// for a second stop that comes while `close` is still writing. The next start replays it.
    pub fn hurry(&self) {
        self.handle.core.hurry.store(true, Ordering::SeqCst);
        self.handle.core.wake();
    }

    async fn close_with(self, closing: Closing) {
        let (done, wait) = oneshot::channel();
        if self
            .handle
            .sender
            .send(Message::Close(done, closing))
            .is_ok()
        {
            self.handle.core.wake();
            let _ = wait.await;
        }
        // After the writer closed, submits spill on their own thread: the overflow thread
        // finishes what it was given, syncs and stops.
        let threads = [
            lock(&self.handle.thread).take(),
            self.handle.overflow.stop(),
        ];
        for thread in threads.into_iter().flatten() {
            // The thread has answered and is returning; joining takes microseconds, but it is
            // still a blocking call, so it runs off the runtime.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Whether a record with this id was submitted and is not yet committed to the store
    /// (queued, being written, or in the spill). Ids in spill segments left by a previous run
    /// are not tracked.
    pub fn in_queue(&self, id: &str) -> bool {
        let overflow = &self.handle.overflow;
        (self.handle.core.pending).contains_for_or(id, None, |p, o| overflow.holds(p, o))
    }

    /// Whether a record with this id made by `owner` is pending (as [`Self::in_queue`]).
    pub fn in_queue_for(&self, id: &str, owner: Option<Owner>) -> bool {
        let overflow = &self.handle.overflow;
        (self.handle.core.pending).contains_for_or(id, Some(owner), |p, o| overflow.holds(p, o))
    }

    /// Whether `id`, made by `owner`, is pending in the writer or stored: what a beacon checks
    /// before accepting timings or feedback. Checks the queue first, so an id committed between
    /// the two checks is still found. Blocking: run it where store calls may block.
    pub fn known(
        &self,
        id: &str,
        owner: Option<Owner>,
        store: &dyn Store,
    ) -> Result<bool, StoreError> {
        Ok(self.in_queue_for(id, owner) || store.exists_for(id, owner)?)
    }

    pub fn stats(&self) -> WriterStats {
        let core = &self.handle.core;
        WriterStats {
            queued_bytes: core.queued_bytes.load(Ordering::Relaxed),
            queued_bytes_peak: core.queued_peak.load(Ordering::Relaxed),
            written: core.written.load(Ordering::Relaxed),
            spilled: core.spilled.load(Ordering::Relaxed),
            dropped: core.dropped.load(Ordering::Relaxed),
            replayed: core.replayed.load(Ordering::Relaxed),
            spill_bytes: core.spill_bytes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
