//! The overflow: entries past the writer queue's byte budget are prepared (redacted) and spilled
//! on a thread of their own — never on a request's thread, and never behind a store that may be
//! stalled (the writer thread may be stuck in it). Its own byte budget bounds what waits here.
//!
//! Entries wait in a shared list; the thread is woken once per burst, not per entry. The overflow
//! is busy exactly when the proxy's cores are (the writer, at idle priority, is then starved), and
//! a wake per entry was a context switch per request on the request's core: at saturation the
//! channel's wake-ups were a third of this thread's time.

use super::spill::Encoded;
use super::writer::{Core, Item, PANICKED, lock};
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

/// What waits for the thread; `None` once the thread has taken the last of it (stopped).
type Waiting = Mutex<Option<Vec<(Item, usize)>>>;

pub(crate) struct Overflow {
    sender: mpsc::Sender<Job>,
    waiting: Arc<Waiting>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// At most this many entries go to the spill in one write: a burst is one `write` call instead
/// of one per entry (measured at saturation: the per-entry write and its `statx` were a third of
/// this thread's time), and a barrier or stop still waits behind no more than one batch.
const BATCH: usize = 256;

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

    /// Hands an entry to the thread; gives it back when the thread has stopped.
    pub(crate) fn send(&self, item: Item, size: usize) -> Option<Item> {
        let wake = {
            let mut waiting = lock(&self.waiting);
            let Some(list) = waiting.as_mut() else {
                return Some(item);
            };
            list.push((item, size));
            list.len() == 1 || list.len() % BATCH == 0
        };
        // A thread that died without stopping leaves its list in place: `run`'s guard takes it.
        if wake {
            let _ = self.sender.send(Job::Wake);
        }
        None
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
        take(core, waiting, false);
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
    take(core, waiting, true);
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
fn take(core: &Core, waiting: &Waiting, last: bool) {
    let items = {
        let mut waiting = lock(waiting);
        if last {
            waiting.take().unwrap_or_default()
        } else {
            waiting.as_mut().map(std::mem::take).unwrap_or_default()
        }
    };
    let mut batch = Batch::default();
    for (item, size) in items {
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
        let bytes = items.iter().map(|(_, size)| size).sum();
        let marks = items.iter().map(|(item, _)| item.mark()).collect();
        self.core.release_overflow(bytes);
        self.core
            .drop_marks(marks, "the capture overflow thread failed");
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
        core.spill_encoded(std::mem::take(&mut self.encoded));
        core.release_overflow(std::mem::take(&mut self.bytes));
    }
}
