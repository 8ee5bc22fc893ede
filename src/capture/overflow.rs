//! The overflow: entries past the writer queue's byte budget are prepared (redacted) and spilled
//! on a thread of their own — never on a request's thread, and never behind a store that may be
//! stalled (the writer thread may be stuck in it). Its own byte budget bounds what waits here.
//!
//! Entries wait in a shared list; the thread is woken once per burst, not per entry. The overflow
//! is busy exactly when the proxy's cores are (the writer, at idle priority, is then starved), and
//! a wake per entry was a context switch per request on the request's core: at saturation the
//! channel's wake-ups were a third of this thread's time.

use super::spill::Encoded;
use super::writer::{Core, Item, PANICKED, Tracked, lock};
use crate::config::Owner;
use crate::request_id::print::Print;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub(crate) enum Job {
    /// Entries are waiting in the list (sent when it stops being empty, and at each full batch).
    Wake,
    /// Answered once every entry handed over before it is spilled and synced.
    Barrier(oneshot::Sender<()>),
    Stop,
}

/// A record's print and owner: what makes it pending while it waits (see `pending.rs`).
pub(crate) type Key = (Print, Option<Owner>);

/// What waits for the thread, with its size and (for a record) its key; `None` once the thread
/// has taken the last of it (stopped).
type Waiting = Mutex<Option<Vec<(Item, usize, Option<Key>)>>>;

pub(crate) struct Overflow {
    sender: mpsc::Sender<Job>,
    waiting: Arc<Waiting>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// At most this many entries go to the spill in one write: a burst is one `write` call instead
/// of one per entry (measured at saturation: the per-entry write and its `statx` were a third of
/// this thread's time), and a barrier or stop still waits behind no more than one batch.
const BATCH: usize = 256;

/// The most list entries a check reads under one hold of the list's lock.
const SCAN: usize = 256;

/// How long a woken thread lets a burst gather before it takes it (unless a batch is full, or a
/// barrier or stop arrives first). Bounds how late an overflowed entry reaches the spill.
const GATHER: Duration = Duration::from_millis(10);

/// How often, at the least, the thread applies the ids the writer settled (`pending.rs`): it
/// runs at normal priority, so no request waits behind the idle-priority writer for them.
pub(crate) const APPLY_EVERY: Duration = Duration::from_millis(100);

impl Overflow {
    pub(crate) fn start(core: Arc<Core>) -> std::io::Result<Overflow> {
        let (sender, receiver) = mpsc::channel();
        let waiting: Arc<Waiting> = Arc::new(Mutex::new(Some(Vec::new())));
        let theirs = Arc::clone(&waiting);
        let thread = std::thread::Builder::new()
            .name("capture-overflow".to_string())
            .spawn(move || run(&core, &receiver, &theirs))?;
        Ok(Overflow {
            sender,
            waiting,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Hands an entry to the thread; gives it back when the thread has stopped. A record's
    /// `key` is pending from now on: it is found in the list until the thread moves it to the
    /// spilled ids, before it takes the record.
    pub(crate) fn send(&self, item: Item, size: usize, key: Option<Key>) -> Option<Item> {
        let wake = {
            let mut waiting = lock(&self.waiting);
            let Some(list) = waiting.as_mut() else {
                return Some(item);
            };
            list.push((item, size, key));
            list.len() == 1 || list.len() % BATCH == 0
        };
        // A thread that died without stopping leaves its list in place: `run`'s guard takes it.
        if wake {
            let _ = self.sender.send(Job::Wake);
        }
        None
    }

    /// Whether a record with this print (by this owner, when given) waits in the list.
    ///
    /// A starved thread's list can hold thousands, and submitting requests push to it, so it is
    /// read [`SCAN`] entries per hold of its lock, from the newest back. Between holds, sends
    /// only add at the end (the entries not yet read keep their distance from it), and a drain
    /// removes only entries whose keys were put in the spilled ids before this check took the
    /// lock `PendingIds::hold_spilled` takes (it is called under it), where the check found them.
    pub(crate) fn holds(&self, print: Print, owner: Option<Option<Owner>>) -> bool {
        let matches = |(_, _, key): &(Item, usize, Option<Key>)| {
            key.is_some_and(|(p, o)| p == print && owner.is_none_or(|owner| o == owner))
        };
        // Entries read, counted from the end.
        let mut read = 0;
        loop {
            let waiting = lock(&self.waiting);
            let Some(list) = waiting.as_ref() else {
                return false;
            };
            let end = list.len().saturating_sub(read);
            let start = end.saturating_sub(SCAN);
            if start == end {
                return false;
            }
            if list[start..end].iter().any(matches) {
                return true;
            }
            read += end - start;
        }
    }

    /// Resolves once everything sent before is spilled and synced.
    pub(crate) fn barrier(&self) -> impl Future<Output = ()> + Send + 'static {
        let (done, wait) = oneshot::channel();
        let sent = self.sender.send(Job::Barrier(done)).is_ok();
        async move {
            if sent {
                let _ = wait.await;
            }
        }
    }

    /// Stops the thread after what was sent before; the caller joins it off the runtime.
    pub(crate) fn stop(&self) -> Option<JoinHandle<()>> {
        let _ = self.sender.send(Job::Stop);
        lock(&self.thread).take()
    }
}

fn run(core: &Core, receiver: &mpsc::Receiver<Job>, waiting: &Waiting) {
    // However the loop ends (a stop, every sender gone, a panic), what still waits is taken:
    // spilled on a normal end, counted as dropped on a panic.
    let mut guard = Taker {
        core,
        waiting,
        clean: false,
    };
    // Kept between rounds: its buffer grows once, not in every round.
    let mut batch = Batch::default();
    'jobs: loop {
        let first = match receiver.recv_timeout(APPLY_EVERY) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                core.pending.apply_settled();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut jobs = vec![first];
        if matches!(jobs[0], Job::Wake) {
            gather(receiver, waiting, &mut jobs);
        }
        take(core, waiting, &mut batch, false);
        for job in jobs {
            match job {
                Job::Wake => {}
                Job::Barrier(done) => {
                    core.sync_spill();
                    let _ = done.send(());
                }
                Job::Stop => break 'jobs,
            }
        }
        core.pending.apply_settled();
    }
    // A stop, or every sender gone: the last of the list, and later sends get their entry back.
    take(core, waiting, &mut batch, true);
    core.sync_spill();
    guard.clean = true;
}

/// Lets a burst gather for up to [`GATHER`]: returns early at a full batch, or with the first
/// barrier or stop (which `jobs` then carries, so it is answered after the entries before it).
fn gather(receiver: &mpsc::Receiver<Job>, waiting: &Waiting, jobs: &mut Vec<Job>) {
    let until = Instant::now() + GATHER;
    loop {
        if lock(waiting).as_ref().is_none_or(|l| l.len() >= BATCH) {
            return;
        }
        match receiver.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(Job::Wake) => {}
            Ok(job) => {
                jobs.push(job);
                return;
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Prepares and spills everything waiting, a batch per write; `last` closes the list, so later
/// sends get their entry back.
fn take(core: &Core, waiting: &Waiting, batch: &mut Batch, last: bool) {
    loop {
        // The keys move to the spilled ids first, then the records leave the list: a check
        // (which reads the list under the lock `hold_spilled` takes) finds each in one or the
        // other. The list's lock is never held across the move, so no request waits on it.
        let (count, keys): (usize, Vec<Key>) = match lock(waiting).as_ref() {
            Some(list) => (list.len(), list.iter().filter_map(|(_, _, k)| *k).collect()),
            None => (0, Vec::new()),
        };
        core.pending.hold_spilled(keys);
        let (items, closed) = {
            let mut waiting = lock(waiting);
            let items: Vec<_> = match waiting.as_mut() {
                // Only what was counted: later sends wait for the next round.
                Some(list) => list.drain(..count.min(list.len())).collect(),
                None => Vec::new(),
            };
            // The last round closes the list once it is empty, so later sends get their entry
            // back; what came after the count goes round once more.
            let closed = last && waiting.as_ref().is_none_or(Vec::is_empty);
            if closed {
                *waiting = None;
            }
            (items, closed)
        };
        spill_items(core, items, batch);
        if !last || closed {
            return;
        }
    }
}

/// Prepares and spills `items`, a batch per write.
fn spill_items(core: &Core, items: Vec<(Item, usize, Option<Key>)>, batch: &mut Batch) {
    for (item, size, _) in items {
        match item.prepared(&core.config.prepare) {
            Ok(entry) => {
                batch.encoded.push(entry);
                batch.bytes += size;
            }
            Err(mark) => {
                core.release_overflow(size);
                core.drop_marks(vec![mark], PANICKED);
            }
        }
        if batch.encoded.len() >= BATCH {
            batch.write(core);
        }
    }
    batch.write(core);
}

/// Closes the list when the thread ends; after a panic, what still waits is counted and logged
/// as dropped, unbuilt (building it again could panic again).
struct Taker<'a> {
    core: &'a Core,
    waiting: &'a Waiting,
    clean: bool,
}

impl Drop for Taker<'_> {
    fn drop(&mut self) {
        if self.clean {
            return;
        }
        let items = lock(self.waiting).take().unwrap_or_default();
        if items.is_empty() {
            return;
        }
        let bytes = items.iter().map(|(_, size, _)| size).sum();
        let marks: Vec<_> = items.iter().map(|(item, _, _)| item.mark()).collect();
        self.core.release_overflow(bytes);
        // What is still in the list was never put in the spilled ids: nothing to settle.
        self.core
            .drop_unsettled(&marks, "the capture overflow thread failed");
    }
}

/// Prepared entries, encoded but not yet written, and the overflow bytes they hold.
#[derive(Default)]
struct Batch {
    encoded: Encoded,
    bytes: usize,
}

impl Batch {
    fn write(&mut self, core: &Core) {
        if self.encoded.len() == 0 {
            return;
        }
        core.spill_encoded(&mut self.encoded, Tracked::Spilled);
        core.release_overflow(std::mem::take(&mut self.bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_id::print::PrintKey;
    use crate::store::{ClientTimings, Entry};

    /// An overflow list with no thread taking from it.
    fn idle() -> Overflow {
        let (sender, _) = mpsc::channel();
        Overflow {
            sender,
            waiting: Arc::new(Mutex::new(Some(Vec::new()))),
            thread: Mutex::new(None),
        }
    }

    fn item(id: &str) -> Item {
        Item::Entry(Entry::ClientTimings(ClientTimings {
            id: id.to_owned(),
            timings: serde_json::Value::Null,
            owner: None,
        }))
    }

    #[test]
    fn a_check_reads_the_whole_list_a_chunk_per_hold() {
        let overflow = idle();
        let key = PrintKey::new();
        let owner = Owner::parse(&"12".repeat(16));
        let n = SCAN * 3 + 7;
        for i in 0..n {
            let id = format!("w{i}");
            assert!(
                overflow
                    .send(item(&id), 1, Some((key.print(&id), owner)))
                    .is_none()
            );
        }
        // An entry that is not a record has no key and matches nothing.
        assert!(overflow.send(item("t"), 1, None).is_none());
        for i in [0, 1, SCAN - 1, SCAN, 2 * SCAN + 3, n - 1] {
            let print = key.print(&format!("w{i}"));
            assert!(overflow.holds(print, Some(owner)), "w{i}");
            assert!(overflow.holds(print, None), "w{i}, any owner");
            assert!(!overflow.holds(print, Some(None)), "w{i}, another owner");
        }
        assert!(!overflow.holds(key.print("absent"), None));
        assert!(!overflow.holds(key.print("t"), None));
        *lock(&overflow.waiting) = None;
        assert!(
            !overflow.holds(key.print("w0"), None),
            "a stopped list holds nothing"
        );
    }
}
