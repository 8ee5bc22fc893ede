//! The real capture path for tests that count records: the batching writer into a SQLite file
//! in a temp dir, behind the sink aloud runs with. A thin wrapper counts submissions (it
//! forwards every one, hiding nothing) so a test can wait for records instead of sleeping; rows
//! are then counted in the store itself, after the writer is closed.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use aloud::capture::beacon::{ClientTimings, Feedback};
use aloud::capture::sink::WriterSink;
use aloud::capture::{CaptureRecord, CaptureSink, CaptureWriter, WriterConfig};
use aloud::config::Owner;
use aloud::store::{Filter, SqliteStore, Store};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// The writer sink, plus a log of what was submitted (id, attempt, outcome) for waiting and
/// for diagnostics.
struct Counting {
    inner: WriterSink,
    submitted: Mutex<Vec<String>>,
    changed: Notify,
}

impl CaptureSink for Counting {
    fn submit(&self, record: CaptureRecord) {
        self.submitted.lock().unwrap().push(format!(
            "{} attempt {} {}",
            record.id,
            record.attempt,
            record.outcome.as_str()
        ));
        self.inner.submit(record);
        self.changed.notify_waiters();
    }
    fn known(&self, id: &str, owner: Option<Owner>) -> bool {
        self.inner.known(id, owner)
    }
    fn timings(&self, id: &str, owner: Option<Owner>, timings: ClientTimings) {
        self.inner.timings(id, owner, timings);
    }
    fn feedback(&self, id: &str, owner: Option<Owner>, feedback: Feedback) {
        self.inner.feedback(id, owner, feedback);
    }
}

/// A capture database in a temp dir, fed by the real writer.
pub struct Stored {
    _dir: tempfile::TempDir,
    pub db: PathBuf,
    writer: CaptureWriter,
    sink: Arc<Counting>,
}

impl Stored {
    pub fn new() -> Stored {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("capture.db");
        let config = WriterConfig {
            flush_interval: Duration::from_millis(20),
            ..WriterConfig::with_spill_dir(dir.path().join("spill"))
        };
        let open = db.clone();
        let writer = CaptureWriter::start(config, move || SqliteStore::open(&open)).unwrap();
        let sink = Arc::new(Counting {
            inner: WriterSink::new(writer.clone(), db.clone()),
            submitted: Mutex::new(Vec::new()),
            changed: Notify::new(),
        });
        Stored {
            _dir: dir,
            db,
            writer,
            sink,
        }
    }

    /// The sink to hand to `Aloud::start_with_sink`.
    pub fn sink(&self) -> Option<Arc<dyn CaptureSink>> {
        Some(Arc::clone(&self.sink) as Arc<dyn CaptureSink>)
    }

    /// What was submitted so far, one line per record.
    pub fn submitted(&self) -> Vec<String> {
        self.sink.submitted.lock().unwrap().clone()
    }

    /// Waits (bounded) until at least `n` records were submitted.
    pub async fn wait_submitted(&self, n: usize) {
        let wait = async {
            loop {
                let notified = self.sink.changed.notified();
                if self.sink.submitted.lock().unwrap().len() >= n {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .is_err()
        {
            panic!(
                "waited for {n} capture records; submitted so far: {:#?}",
                self.submitted()
            );
        }
    }

    /// Flushes and closes the writer, then reads every row of the store.
    pub async fn rows(self) -> Vec<CaptureRecord> {
        self.writer.flush().await;
        self.writer.clone().close().await;
        let store = SqliteStore::open(&self.db).unwrap();
        store
            .query(&Filter::default())
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }
}

/// One line per row, for assertion messages.
pub fn describe(rows: &[CaptureRecord]) -> String {
    rows.iter()
        .map(|r| {
            format!(
                "{} attempt {} tier {} outcome {} status {:?} error {:?}",
                r.id,
                r.attempt,
                r.tier,
                r.outcome.as_str(),
                r.client_status,
                r.error
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
