//! The capture writer against real SQLite files: outages spill and replay, the spill cap drops
//! and counts, shutdown and restart lose nothing, the queue stays within its bound.
//! Tests wait on `flush()` and on bounded polling, never on sleeps.
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
use aloud::store::{Entry, Feedback, Filter, SqliteStore, Store, StoreError};
use hooked::Hooked;
use records::record;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// Everything logged in this test binary (the writer logs from its own thread, so the
/// subscriber must be global).
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || LogSink(sink.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    db: PathBuf,
    spill: PathBuf,
}

fn setup() -> Setup {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("capture.db");
    let spill = dir.path().join("spill");
    // Created and migrated before any lock is taken.
    drop(SqliteStore::open(&db).unwrap());
    Setup {
        db,
        spill,
        _dir: dir,
    }
}

fn config(spill: &Path) -> WriterConfig {
    WriterConfig {
        batch_records: 64,
        ..WriterConfig::with_spill_dir(spill)
    }
}

fn start(config: WriterConfig, db: &Path) -> CaptureWriter {
    let db = db.to_path_buf();
    CaptureWriter::start(config, move || SqliteStore::open(&db)).unwrap()
}

/// A second connection holding the write lock, as another process would.
fn lock_db(db: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    conn
}

fn counts(db: &Path) -> std::collections::HashMap<String, i64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut statement = conn
        .prepare("SELECT id, COUNT(*) FROM captures GROUP BY id")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn spill_files(spill: &Path) -> usize {
    std::fs::read_dir(spill).unwrap().count()
}

fn ids(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

/// Flushes until the spill is empty, at most `rounds` times (each flush tries a replay).
async fn flush_until_replayed(writer: &CaptureWriter, rounds: usize) {
    for _ in 0..rounds {
        writer.flush().await;
        if writer.stats().spill_bytes == 0 {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("spill not replayed: {:?}", writer.stats());
}

#[tokio::test]
async fn healthy_store_gets_every_record_and_beacon() {
    let s = setup();
    let writer = start(config(&s.spill), &s.db);
    let all = ids(300, "ok");
    for (i, id) in all.iter().enumerate() {
        writer.submit(record(id, 1, i as i64, 2048));
    }
    writer.submit_client_timings("ok-00001", json!({"first_paint_ms": 40}));
    writer.submit_feedback(Feedback {
        id: "ok-00001".into(),
        score: Some(1.0),
        label: Some("good".into()),
        comment: None,
        owner: None,
    });
    writer.flush().await;
    let stats = writer.stats();
    assert_eq!((stats.written, stats.spilled, stats.dropped), (302, 0, 0));
    assert_eq!(stats.queued_bytes, 0);
    let store = SqliteStore::open(&s.db).unwrap();
    assert_eq!(store.query(&Filter::default()).unwrap().count(), 300);
    assert_eq!(
        store.client_timings("ok-00001", None).unwrap(),
        Some(json!({"first_paint_ms": 40}))
    );
    assert_eq!(
        store.feedback("ok-00001", None).unwrap().unwrap().score,
        Some(1.0)
    );
    assert!(!writer.in_queue("ok-00001"));
    assert!(writer.known("ok-00001", None, &store).unwrap());
    assert!(!writer.known("nope", None, &store).unwrap());
    writer.close().await;
}

#[tokio::test]
async fn outage_spills_then_replays_every_record_once() {
    let s = setup();
    let writer = start(config(&s.spill), &s.db);
    writer.flush().await;
    let lock = lock_db(&s.db);

    let all = ids(500, "out");
    for (i, id) in all.iter().enumerate() {
        writer.submit(record(id, 1, i as i64, 2048));
    }
    // A retry of one request and a duplicate submit: stored once per (id, attempt).
    writer.submit(record("out-00007", 2, 7, 2048));
    writer.submit(record("out-00007", 2, 7, 2048));
    writer.submit_feedback(Feedback {
        id: "out-00003".into(),
        score: Some(0.25),
        ..Feedback::default()
    });
    writer.flush().await;
    let stats = writer.stats();
    assert_eq!(stats.written, 0, "{stats:?}");
    assert_eq!(stats.spilled, 503, "{stats:?}");
    assert_eq!(stats.dropped, 0);
    assert!(stats.spill_bytes > 0 && spill_files(&s.spill) > 0);
    // Ids in the spill are still pending, so beacons for them are accepted.
    assert!(all.iter().all(|id| writer.in_queue(id)));

    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    flush_until_replayed(&writer, 50).await;

    let stats = writer.stats();
    assert_eq!(stats.replayed, 503, "{stats:?}");
    assert_eq!(spill_files(&s.spill), 0);
    let counts = counts(&s.db);
    assert_eq!(counts.len(), 500);
    for id in &all {
        let want = if id == "out-00007" { 2 } else { 1 };
        assert_eq!(counts.get(id), Some(&want), "{id}");
    }
    let store = SqliteStore::open(&s.db).unwrap();
    assert_eq!(
        store.feedback("out-00003", None).unwrap().unwrap().score,
        Some(0.25)
    );
    assert!(all.iter().all(|id| !writer.in_queue(id)));

    // Healthy again: new records go straight to the store.
    writer.submit(record("after", 1, 1000, 2048));
    writer.flush().await;
    assert_eq!(writer.stats().written, 1);
    writer.close().await;
}

#[tokio::test]
async fn spill_cap_drops_counts_and_logs_the_excess_only() {
    let s = setup();
    let writer = start(
        WriterConfig {
            spill_max_bytes: 24 * 1024,
            batch_records: 8,
            ..WriterConfig::with_spill_dir(&s.spill)
        },
        &s.db,
    );
    writer.flush().await;
    let lock = lock_db(&s.db);
    let all = ids(40, "cap");
    // Every other record made with a client token: a drop must settle the id with its owner.
    let owner = |i: usize| {
        i.is_multiple_of(2)
            .then(|| aloud::config::Owner::parse(&"ab".repeat(16)).unwrap())
    };
    for (i, id) in all.iter().enumerate() {
        let mut r = record(id, 1, i as i64, 2048);
        r.owner = owner(i);
        writer.submit(r);
    }
    writer.flush().await;
    let stats = writer.stats();
    assert!(stats.dropped > 0 && stats.spilled > 0, "{stats:?}");
    assert_eq!(stats.spilled + stats.dropped, 40, "{stats:?}");
    assert!(stats.spill_bytes <= 24 * 1024);
    // Spilled ids stay pending (with their owner) until replayed; dropped ones are settled.
    let pending: Vec<usize> = (0..40).filter(|&i| writer.in_queue(&all[i])).collect();
    assert_eq!(pending.len() as u64, stats.spilled, "{stats:?}");
    assert!(
        pending
            .iter()
            .all(|&i| writer.in_queue_for(&all[i], owner(i)))
    );
    assert!(
        pending
            .iter()
            .all(|&i| !writer.in_queue_for(&all[i], owner(i + 1))),
        "pending for another owner"
    );
    let logged = String::from_utf8_lossy(&logs().lock().unwrap()).to_string();
    assert!(
        logged.contains("capture entries dropped")
            && logged.contains(&format!("dropped_total={}", stats.dropped)),
        "{logged}"
    );

    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    flush_until_replayed(&writer, 50).await;
    let stored = counts(&s.db);
    assert_eq!(stored.len() as u64, stats.spilled);
    assert!(stored.values().all(|&n| n == 1));
    assert_eq!(writer.stats().replayed, stats.spilled);
    writer.close().await;
}

#[tokio::test]
async fn close_flushes_everything() {
    let s = setup();
    let writer = start(config(&s.spill), &s.db);
    let clone = writer.clone();
    for (i, id) in ids(1000, "close").iter().enumerate() {
        clone.submit(record(id, 1, i as i64, 1024));
    }
    writer.close().await;
    assert_eq!(counts(&s.db).len(), 1000);
    // The thread is gone; a late submit is kept in the spill for the next run.
    clone.submit(record("late", 1, 0, 1024));
    assert_eq!(clone.stats().spilled, 1);
    drop(clone);
    let writer = start(config(&s.spill), &s.db);
    writer.flush().await;
    assert!(counts(&s.db).contains_key("late"));
    assert_eq!(spill_files(&s.spill), 0);
    writer.close().await;
}

#[tokio::test]
async fn restart_replays_leftover_spill_segments() {
    let s = setup();
    let lock = lock_db(&s.db);
    let writer = start(config(&s.spill), &s.db);
    let all = ids(200, "restart");
    for (i, id) in all.iter().enumerate() {
        writer.submit(record(id, 1, i as i64, 2048));
    }
    writer.close().await;
    assert!(spill_files(&s.spill) > 0);
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);

    let writer = start(config(&s.spill), &s.db);
    writer.flush().await;
    assert_eq!(writer.stats().replayed, 200);
    assert_eq!(spill_files(&s.spill), 0);
    let counts = counts(&s.db);
    assert!(all.iter().all(|id| counts.get(id) == Some(&1)));
    writer.close().await;
}

#[tokio::test]
async fn replay_after_a_crash_mid_replay_stores_nothing_twice() {
    let s = setup();
    // A segment whose first half is already in the store, as after a crash mid-replay, and a
    // torn last line.
    std::fs::create_dir_all(&s.spill).unwrap();
    let entries: Vec<Entry> = ids(100, "torn")
        .iter()
        .map(|id| Entry::Record(Box::new(record(id, 1, 0, 1024))))
        .collect();
    let mut text = Vec::new();
    for entry in &entries {
        serde_json::to_writer(&mut text, entry).unwrap();
        text.push(b'\n');
    }
    text.extend_from_slice(br#"{"kind":"record","data":{"id":"cut"#);
    std::fs::write(s.spill.join("spill-00000000000000000001.jsonl"), text).unwrap();
    SqliteStore::open(&s.db)
        .unwrap()
        .write_batch(&entries[..50])
        .unwrap();

    let writer = start(config(&s.spill), &s.db);
    writer.flush().await;
    assert_eq!(writer.stats().dropped, 1, "the torn line");
    assert_eq!(spill_files(&s.spill), 0);
    let counts = counts(&s.db);
    assert_eq!(counts.len(), 100);
    assert!(counts.values().all(|&n| n == 1));
    writer.close().await;
}

#[tokio::test]
async fn corrupt_database_spills_then_recovers_when_the_file_is_replaced() {
    let s = setup();
    std::fs::remove_file(&s.db).unwrap();
    std::fs::write(&s.db, vec![0x5a; 4096]).unwrap();
    assert!(matches!(
        SqliteStore::open(&s.db),
        Err(StoreError::Corrupt { .. })
    ));
    let writer = start(config(&s.spill), &s.db);
    for id in ids(20, "corrupt") {
        writer.submit(record(&id, 1, 0, 1024));
    }
    writer.flush().await;
    assert_eq!(writer.stats().spilled, 20);
    std::fs::remove_file(&s.db).unwrap();
    flush_until_replayed(&writer, 10).await;
    assert_eq!(counts(&s.db).len(), 20);
    writer.close().await;
}

type Gate = Arc<(Mutex<bool>, Condvar)>;

/// A store whose writes wait at `gate`, to stall the writer thread.
fn gated(db: &Path, gate: &Gate) -> Result<Hooked<impl Fn() + Send + use<>>, StoreError> {
    let gate = gate.clone();
    Ok(Hooked {
        inner: SqliteStore::open(db)?,
        before_write: move || {
            let (open, changed) = &*gate;
            let mut open = open.lock().unwrap();
            while !*open {
                open = changed.wait(open).unwrap();
            }
        },
    })
}

#[tokio::test]
async fn queue_stays_within_its_bound_while_the_store_stalls() {
    let s = setup();
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let bound = 64 * 1024;
    let db = s.db.clone();
    let opener_gate = gate.clone();
    let writer = CaptureWriter::start(
        WriterConfig {
            queue_bytes: bound,
            batch_records: 16,
            ..WriterConfig::with_spill_dir(&s.spill)
        },
        move || gated(&db, &opener_gate),
    )
    .unwrap();
    let all = ids(400, "stall");
    for (i, id) in all.iter().enumerate() {
        writer.submit(record(id, 1, i as i64, 2048));
        assert!(writer.stats().queued_bytes <= bound);
    }
    // The overflow goes to the spill, on the writer's overflow thread (never the caller's):
    // wait for it on a condition, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while writer.stats().spilled == 0 {
        assert!(std::time::Instant::now() < deadline, "nothing spilled");
        std::thread::yield_now();
    }
    let stats = writer.stats();
    assert!(stats.queued_bytes_peak <= bound, "{stats:?}");
    assert_eq!(stats.dropped, 0);

    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    flush_until_replayed(&writer, 50).await;
    let counts = counts(&s.db);
    assert!(all.iter().all(|id| counts.get(id) == Some(&1)));
    let stats = writer.stats();
    assert_eq!(stats.written + stats.replayed, 400, "{stats:?}");
    assert_eq!(stats.queued_bytes, 0);
    writer.close().await;
}

#[tokio::test]
async fn interval_flushes_a_lone_record() {
    let s = setup();
    let writer = start(
        WriterConfig {
            flush_interval: std::time::Duration::from_millis(20),
            ..config(&s.spill)
        },
        &s.db,
    );
    writer.submit(record("lone", 1, 0, 512));
    // Bounded wait on a condition, not on time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while writer.stats().written == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "interval flush never came"
        );
        tokio::task::yield_now().await;
    }
    assert!(counts(&s.db).contains_key("lone"));
    writer.close().await;
}

#[tokio::test]
async fn a_full_queue_never_redacts_or_spills_on_the_submitting_thread() {
    let s = setup();
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let db = s.db.clone();
    let opener_gate = gate.clone();
    let threads: Arc<Mutex<Vec<std::thread::ThreadId>>> = Arc::default();
    let seen = Arc::clone(&threads);
    let writer = CaptureWriter::start(
        WriterConfig {
            queue_bytes: 16 * 1024,
            batch_records: 4,
            prepare: aloud::capture::writer::Prepare(Some(Arc::new(move |_r| {
                seen.lock().unwrap().push(std::thread::current().id());
            }))),
            ..WriterConfig::with_spill_dir(&s.spill)
        },
        move || gated(&db, &opener_gate),
    )
    .unwrap();
    let all = ids(100, "full");
    for (i, id) in all.iter().enumerate() {
        writer.submit(record(id, 1, i as i64, 2048));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while writer.stats().spilled == 0 {
        assert!(std::time::Instant::now() < deadline, "nothing spilled");
        std::thread::yield_now();
    }
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    flush_until_replayed(&writer, 50).await;
    let me = std::thread::current().id();
    let prepared = threads.lock().unwrap().clone();
    assert!(prepared.len() >= all.len(), "every record was prepared");
    assert!(
        prepared.iter().all(|t| *t != me),
        "a record was redacted on the submitting thread"
    );
    let counts = counts(&s.db);
    assert!(all.iter().all(|id| counts.get(id) == Some(&1)));
    writer.close().await;
}

/// A second stop during the last writes: `hurry` sends what is not yet written to the spill
/// (fsynced) instead of the store, and the next start replays every record once.
#[tokio::test]
async fn hurry_sends_what_is_left_to_the_spill() {
    let s = setup();
    // Nothing is written before the close: no batch fills, no flush interval passes.
    let quiet = || WriterConfig {
        batch_records: 100_000,
        flush_interval: std::time::Duration::from_secs(3600),
        ..WriterConfig::with_spill_dir(&s.spill)
    };
    let writer = start(quiet(), &s.db);
    for (i, id) in ids(500, "hurry").iter().enumerate() {
        writer.submit(record(id, 1, i as i64, 1024));
    }
    writer.hurry();
    writer.close().await;
    assert_eq!(counts(&s.db).len(), 0, "a hurried close wrote to the store");
    assert!(spill_files(&s.spill) > 0);
    let writer = start(config(&s.spill), &s.db);
    flush_until_replayed(&writer, 20).await;
    let stored = counts(&s.db);
    assert_eq!(stored.len(), 500);
    assert!(stored.values().all(|&n| n == 1), "{stored:?}");
    writer.close().await;
}

/// The store comes back while nothing new arrives and nobody flushes: the thread's own retry
/// replays the spill (it once spun, waking without retrying, until the next record came).
#[tokio::test]
async fn a_store_that_comes_back_is_retried_without_new_records() {
    let s = setup();
    let writer = start(config(&s.spill), &s.db);
    writer.flush().await;
    let lock = lock_db(&s.db);
    for (i, id) in ids(100, "back").iter().enumerate() {
        writer.submit(record(id, 1, i as i64, 1024));
    }
    writer.flush().await;
    assert_eq!(writer.stats().spilled, 100, "{:?}", writer.stats());
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while writer.stats().replayed < 100 {
        assert!(
            std::time::Instant::now() < deadline,
            "not replayed without a flush: {:?}",
            writer.stats()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(counts(&s.db).len(), 100);
    writer.close().await;
}

#[tokio::test]
async fn a_record_whose_redaction_panics_is_dropped_and_counted_alone() {
    // A queue of one byte sends everything through the overflow thread; the default queue, the
    // writer thread. Either way the panic costs that record only.
    for queue_bytes in [1, WriterConfig::with_spill_dir(".").queue_bytes] {
        let s = setup();
        let writer = start(
            WriterConfig {
                queue_bytes,
                batch_records: 4,
                prepare: aloud::capture::writer::Prepare(Some(Arc::new(
                    |e: &mut aloud::store::Entry| {
                        assert!(!e.id().ends_with("-00003"), "a redaction defect");
                    },
                ))),
                ..WriterConfig::with_spill_dir(&s.spill)
            },
            &s.db,
        );
        let all = ids(10, "panics");
        for (i, id) in all.iter().enumerate() {
            writer.submit(record(id, 1, i as i64, 512));
        }
        flush_until_replayed(&writer, 50).await;
        let stats = writer.stats();
        assert_eq!(stats.dropped, 1, "queue {queue_bytes}: {stats:?}");
        let stored = counts(&s.db);
        assert_eq!(stored.len(), 9, "queue {queue_bytes}: {stored:?}");
        assert!(!stored.contains_key("panics-00003"));
        assert!(
            all.iter().all(|id| !writer.in_queue(id)),
            "an id left pending"
        );
        let logged = String::from_utf8_lossy(&logs().lock().unwrap()).to_string();
        assert!(logged.contains("building or redacting the record panicked"));
        // The thread lives on: a later record is stored.
        writer.submit(record("panics-later", 1, 99, 512));
        writer.flush().await;
        flush_until_replayed(&writer, 50).await;
        assert!(
            counts(&s.db).contains_key("panics-later"),
            "queue {queue_bytes}"
        );
        writer.close().await;
    }
}
