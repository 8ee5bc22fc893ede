//! The writer's bookkeeping, seen from inside: where pending ids live, and ids settled by the
//! idle-priority writer applied by the overflow thread without any request or beacon asking.

use super::*;
use crate::store::SqliteStore;
use std::time::{Duration, Instant};

fn record(id: &str) -> CaptureRecord {
    CaptureRecord::minimal(id)
}

#[tokio::test]
async fn settled_ids_are_applied_without_anyone_asking() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("capture.db");
    let spill = dir.path().join("spill");
    let writer = CaptureWriter::start(WriterConfig::with_spill_dir(&spill), move || {
        SqliteStore::open(&db)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    writer.submit(record("settle-0001"));
    writer.flush().await;
    assert_eq!(writer.stats().written, 1);
    // Stored and settled by the writer; the overflow thread applies it within its period.
    let until = Instant::now() + Duration::from_secs(10);
    let pending = &writer.handle.core.pending;
    while pending.lock().contains(pending.print("settle-0001")) {
        assert!(Instant::now() < until, "the settled id was never applied");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    writer.close().await;
}

/// A writer whose every record is past the queue's budget (so the overflow thread takes it),
/// and a connection holding the store's write lock: nothing is replayed, stored or settled
/// until it commits.
async fn overflowing_writer() -> (tempfile::TempDir, CaptureWriter, rusqlite::Connection) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("capture.db");
    let mut config = WriterConfig::with_spill_dir(dir.path().join("spill"));
    config.queue_bytes = 1;
    let lock = rusqlite::Connection::open(&db).unwrap_or_else(|e| panic!("{e}"));
    let writer = CaptureWriter::start(config, move || SqliteStore::open(&db))
        .unwrap_or_else(|e| panic!("{e}"));
    writer.flush().await;
    lock.execute_batch("BEGIN IMMEDIATE")
        .unwrap_or_else(|e| panic!("{e}"));
    (dir, writer, lock)
}

/// Records past the queue's budget never enter the hot map a request adds to: their ids are
/// pending in the overflow thread's list, then in the spilled ids, until replayed and stored.
#[tokio::test]
async fn overflowed_records_are_pending_without_touching_the_hot_map() {
    let (_dir, writer, lock) = overflowing_writer().await;
    let ids: Vec<String> = (0..300).map(|i| format!("ovf-{i:04}")).collect();
    for id in &ids {
        writer.submit(record(id));
        // Pending from the moment it is handed over: in the list or already moved.
        assert!(writer.in_queue(id) && writer.in_queue_for(id, None), "{id}");
        assert!(!writer.in_queue_for(id, Owner::parse(&"ef".repeat(16))));
    }
    writer.flush().await;
    let core = &writer.handle.core;
    assert_eq!(writer.stats().spilled, 300, "{:?}", writer.stats());
    core.pending.apply_settled();
    assert!(
        ids.iter()
            .all(|id| !core.pending.lock().contains(core.pending.print(id))),
        "an overflowed id reached the hot map"
    );
    assert!(
        ids.iter().all(|id| writer.in_queue(id)),
        "spilled ids are pending"
    );
    lock.execute_batch("COMMIT")
        .unwrap_or_else(|e| panic!("{e}"));
    drop(lock);
    let until = Instant::now() + Duration::from_secs(20);
    while writer.stats().replayed < 300 {
        assert!(Instant::now() < until, "{:?}", writer.stats());
        writer.flush().await;
    }
    assert!(
        ids.iter().all(|id| !writer.in_queue(id)),
        "stored ids are settled"
    );
    writer.close().await;
}

/// A record dropped before it was made pending (both budgets full) settles nothing: a retry of
/// the same id by the same owner, waiting in the spill, stays pending.
#[tokio::test]
async fn a_record_dropped_unbuilt_leaves_a_pending_retry_pending() {
    let (_dir, writer, lock) = overflowing_writer().await;
    writer.submit(record("retried"));
    writer.flush().await;
    assert_eq!(writer.stats().spilled, 1);
    // The second attempt is larger than the overflow's whole budget: dropped unbuilt.
    let mut big = record("retried");
    big.attempt = 2;
    big.error = Some("x".repeat(OVERFLOW_MIN_BYTES + 1));
    writer.submit(big);
    assert_eq!(writer.stats().dropped, 1, "{:?}", writer.stats());
    assert!(
        writer.in_queue_for("retried", None),
        "the first attempt is still in the spill"
    );
    lock.execute_batch("COMMIT")
        .unwrap_or_else(|e| panic!("{e}"));
    drop(lock);
    writer.close().await;
}

/// While records overflow and the overflow thread takes them (its list drained, its keys moved),
/// a concurrent check never misses one: every submitted id stays pending while the store is
/// locked and nothing can be stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_racing_the_overflow_thread_never_miss_a_pending_id() {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    let (_dir, writer, lock) = overflowing_writer().await;
    const PER_THREAD: usize = 3000;
    let submitted: Vec<AtomicUsize> = (0..2).map(|_| AtomicUsize::new(0)).collect();
    let done = AtomicBool::new(false);
    let checks = AtomicUsize::new(0);
    // Set when the checker stops, however (a failed check too): the submitters stop waiting.
    let checker_gone = AtomicBool::new(false);
    std::thread::scope(|s| {
        let mut submitters = Vec::new();
        for (t, count) in submitted.iter().enumerate() {
            let (writer, checks, checker_gone) = (&writer, &checks, &checker_gone);
            submitters.push(s.spawn(move || {
                let mut seen = 0;
                for i in 0..PER_THREAD {
                    writer.submit(record(&format!("race-{t}-{i:05}")));
                    count.store(i + 1, Ordering::Release);
                    // Every 25 submits, wait for a new check: under load (a CI build beside
                    // it) the submitters could otherwise finish before the checker ran at all.
                    if i % 25 == 24 {
                        while checks.load(Ordering::Acquire) == seen
                            && !checker_gone.load(Ordering::Acquire)
                        {
                            std::thread::yield_now();
                        }
                        seen = checks.load(Ordering::Acquire);
                    }
                }
            }));
        }
        let (writer, submitted, done, checks) = (&writer, &submitted, &done, &checks);
        let checker_gone = &checker_gone;
        s.spawn(move || {
            struct Gone<'a>(&'a AtomicBool);
            impl Drop for Gone<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Release);
                }
            }
            let _gone = Gone(checker_gone);
            let mut i = 0usize;
            while !done.load(Ordering::Acquire) {
                for (t, count) in submitted.iter().enumerate() {
                    let n = count.load(Ordering::Acquire);
                    if n == 0 {
                        continue;
                    }
                    // The newest, and one further back: in the list, moving, or spilled.
                    for k in [n - 1, (i * 7919) % n] {
                        let id = format!("race-{t}-{k:05}");
                        assert!(writer.in_queue(&id), "{id} read as not pending");
                        checks.fetch_add(1, Ordering::Release);
                    }
                }
                i += 1;
            }
        });
        // Until both submitters ended, however (a panic is raised again by the scope).
        while !submitters.iter().all(|h| h.is_finished()) {
            std::thread::yield_now();
        }
        done.store(true, Ordering::Release);
    });
    writer.flush().await;
    assert_eq!(
        writer.stats().spilled,
        2 * PER_THREAD as u64,
        "{:?}",
        writer.stats()
    );
    // The checker ran throughout, by construction: each submitter waited for a new check
    // every 25 submits (no count to assert).
    lock.execute_batch("COMMIT")
        .unwrap_or_else(|e| panic!("{e}"));
    drop(lock);
    writer.close().await;
}
