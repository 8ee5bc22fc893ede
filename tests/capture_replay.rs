//! A long spill replay does not hold up what requests hand over meanwhile: between segments the
//! writer takes its queue (so new records never pile up into the normal-priority overflow
//! thread while the idle-priority writer replays for seconds). Real SQLite files; the store's
//! writes are let through one at a time, so every check is made at a known point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

#[path = "support/hooked.rs"]
mod hooked;
#[path = "support/records.rs"]
mod records;

use aloud::capture::{CaptureWriter, WriterConfig};
use aloud::store::{SqliteStore, StoreError};
use hooked::Hooked;
use records::record;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Writes allowed and writes waiting for one.
#[derive(Default)]
struct Steps {
    permits: usize,
    waiting: bool,
}

type Gate = Arc<(Mutex<Steps>, Condvar)>;

/// A store whose batch writes each wait for a permit.
fn stepped(db: &Path, gate: &Gate) -> Result<Hooked<impl Fn() + Send + use<>>, StoreError> {
    let gate = gate.clone();
    Ok(Hooked {
        inner: SqliteStore::open(db)?,
        before_write: move || {
            let (steps, changed) = &*gate;
            let mut s = steps.lock().unwrap();
            s.waiting = true;
            changed.notify_all();
            while s.permits == 0 {
                s = changed.wait(s).unwrap();
            }
            s.permits -= 1;
            s.waiting = false;
            changed.notify_all();
        },
    })
}

/// Waits until the writer waits at the gate again (or `done` holds), then returns `done`.
fn settle(gate: &Gate, done: impl Fn() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(20);
    let (steps, changed) = &**gate;
    let mut s = steps.lock().unwrap();
    loop {
        if s.permits == 0 && s.waiting {
            return done();
        }
        if done() {
            return true;
        }
        assert!(
            Instant::now() < until,
            "the writer neither waits nor is done"
        );
        s = changed
            .wait_timeout(s, Duration::from_millis(20))
            .unwrap()
            .0;
    }
}

#[tokio::test]
async fn a_long_replay_takes_the_queue_between_segments() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("capture.db");
    let spill = dir.path().join("spill");
    drop(SqliteStore::open(&db).unwrap());
    let config = WriterConfig {
        batch_records: 2,
        spill_segment_bytes: 4096,
        ..WriterConfig::with_spill_dir(&spill)
    };

    // A spill of many segments left by a run whose store was locked throughout.
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let path = db.clone();
    let writer = CaptureWriter::start(config.clone(), move || SqliteStore::open(&path)).unwrap();
    const LEFT: u64 = 24;
    for i in 0..LEFT {
        writer.submit(record(&format!("left-{i:04}"), 1, i as i64, 2048));
    }
    writer.close().await;
    drop(lock);
    let segments = std::fs::read_dir(&spill).unwrap().count();
    assert!(segments >= 6, "{segments} segments");

    // The next run replays them through a store that lets one write through at a time.
    let gate: Gate = Arc::default();
    let (path, theirs) = (db.clone(), gate.clone());
    let writer = CaptureWriter::start(config, move || stepped(&path, &theirs)).unwrap();
    assert!(
        !settle(&gate, || false),
        "the replay waits for its first write"
    );
    // Requests hand over a batch's worth while the replay has barely begun.
    writer.submit(record("new-0000", 1, 1_000, 2048));
    writer.submit(record("new-0001", 1, 1_001, 2048));
    assert!(writer.stats().queued_bytes > 0);

    let mut taken_while_replaying = false;
    while writer.stats().replayed < LEFT {
        gate.0.lock().unwrap().permits += 1;
        gate.1.notify_all();
        settle(&gate, || writer.stats().replayed >= LEFT);
        let stats = writer.stats();
        if stats.queued_bytes == 0 && stats.replayed < LEFT {
            taken_while_replaying = true;
        }
    }
    assert!(
        taken_while_replaying,
        "the queued record waited for the whole replay: {:?}",
        writer.stats()
    );
    // Nothing is lost: the new records were spilled behind the old ones, and are replayed too.
    gate.0.lock().unwrap().permits = usize::MAX / 2;
    gate.1.notify_all();
    writer.flush().await;
    let stats = writer.stats();
    assert_eq!(stats.replayed, LEFT + 2, "{stats:?}");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert_eq!(stats.queued_bytes, 0);
    writer.close().await;
}
