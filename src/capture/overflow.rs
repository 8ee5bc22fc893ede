//! The overflow: entries past the writer queue's byte budget are prepared (redacted) and spilled
//! on a thread of their own — never on a request's thread, and never behind a store that may be
//! stalled (the writer thread may be stuck in it). Its own byte budget bounds what waits here.

use super::writer::{Core, Item, lock};
use crate::store::Entry;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

pub(crate) enum Job {
    Spill(Item, usize),
    /// Answered once every job sent before it is done and the spill is synced.
    Barrier(oneshot::Sender<()>),
    Stop,
}

pub(crate) struct Overflow {
    sender: mpsc::Sender<Job>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Overflow {
    pub(crate) fn start(core: Arc<Core>) -> std::io::Result<Overflow> {
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("capture-overflow".to_string())
            .spawn(move || run(&core, &receiver))?;
        Ok(Overflow {
            sender,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Hands an entry to the thread; gives it back when the thread has stopped.
    pub(crate) fn send(&self, item: Item, size: usize) -> Option<Item> {
        match self.sender.send(Job::Spill(item, size)) {
            Err(mpsc::SendError(Job::Spill(item, _))) => Some(item),
            Ok(()) | Err(_) => None,
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

/// At most this many entries go to the spill in one write: a burst is one `write` call instead
/// of one per entry (measured at saturation: the per-entry write and its `statx` were a third of
/// this thread's time), and a barrier or stop still waits behind no more than one batch.
const BATCH: usize = 256;

fn run(core: &Core, receiver: &mpsc::Receiver<Job>) {
    let mut batch = Batch::default();
    while let Ok(first) = receiver.recv() {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Spill(item, size) => {
                    let mut entry = item.into_entry();
                    core.config.prepare.apply(&mut entry);
                    batch.entries.push(entry);
                    batch.bytes += size;
                    if batch.entries.len() >= BATCH {
                        batch.write(core);
                    }
                }
                Job::Barrier(done) => {
                    batch.write(core);
                    core.sync_spill();
                    let _ = done.send(());
                }
                Job::Stop => {
                    batch.write(core);
                    core.sync_spill();
                    return;
                }
            }
            // What else is already waiting joins this batch, without blocking.
            next = receiver.try_recv().ok();
        }
        batch.write(core);
    }
    batch.write(core);
    core.sync_spill();
}

/// Prepared entries not yet written, and the overflow bytes they hold.
#[derive(Default)]
struct Batch {
    entries: Vec<Entry>,
    bytes: usize,
}

impl Batch {
    fn write(&mut self, core: &Core) {
        if self.entries.is_empty() {
            return;
        }
        core.spill(std::mem::take(&mut self.entries));
        core.release_overflow(std::mem::take(&mut self.bytes));
    }
}
