//! The capture writer's settings, counters and errors, and the prepare step (redaction) it
//! applies to each record.

use crate::store::Entry;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How the writer queues, batches and spills. Every field has a default (see each field).
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// The queue's bound in estimated bytes, counting the batch being written. Default 64 MiB.
    pub queue_bytes: usize,
    /// A batch is written once it has this many entries. Default 256.
    pub batch_records: usize,
    /// …or this many estimated bytes. Default 1 MiB.
    pub batch_bytes: usize,
    /// …or when its first entry has waited this long. Default 200 ms.
    pub flush_interval: Duration,
    /// Where spill segments live. Default `capture-spill` (relative to the working directory).
    pub spill_dir: PathBuf,
    /// The cap on all spill segments together; entries past it are dropped and counted.
    /// Default 1 GiB.
    pub spill_max_bytes: u64,
    /// A new segment starts once the current one reaches this size. Default 16 MiB.
    pub spill_segment_bytes: u64,
    /// The first wait before retrying a failed store; it doubles up to `retry_max`.
    /// Default 100 ms.
    pub retry_min: Duration,
    /// The longest wait between store retries. Default 5 s.
    pub retry_max: Duration,
    /// Applied to every entry before it is stored or spilled (redaction). Default: nothing.
    pub prepare: Prepare,
}

/// A step applied to each entry (record or beacon) before anything is written: in aloud,
/// redaction.
#[derive(Clone, Default)]
pub struct Prepare(pub Option<Arc<PrepareFn>>);

/// What a prepare step does to one entry.
pub type PrepareFn = dyn Fn(&mut Entry) + Send + Sync;

impl Prepare {
    pub(crate) fn apply(&self, entry: &mut Entry) {
        if let Some(f) = &self.0 {
            f(entry);
        }
    }
}

impl std::fmt::Debug for Prepare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Prepare(set)"
        } else {
            "Prepare(none)"
        })
    }
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue_bytes: 64 << 20,
            batch_records: 256,
            batch_bytes: 1 << 20,
            flush_interval: Duration::from_millis(200),
            spill_dir: PathBuf::from("capture-spill"),
            spill_max_bytes: 1 << 30,
            spill_segment_bytes: 16 << 20,
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            prepare: Prepare::default(),
        }
    }
}

impl WriterConfig {
    /// The defaults, spilling to `spill_dir`.
    pub fn with_spill_dir(spill_dir: impl Into<PathBuf>) -> Self {
        WriterConfig {
            spill_dir: spill_dir.into(),
            ..WriterConfig::default()
        }
    }
}

/// Counters since the writer started (entries: records, client timings and feedback).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Estimated bytes in the queue and the batch being written.
    pub queued_bytes: usize,
    /// The most `queued_bytes` has ever been.
    pub queued_bytes_peak: usize,
    /// Entries committed to the store straight from the queue.
    pub written: u64,
    /// Entries written to a spill segment.
    pub spilled: u64,
    /// Entries lost: the spill was at its cap, a spill write failed, or a spilled line was
    /// unreadable at replay.
    pub dropped: u64,
    /// Entries committed to the store from spill segments (this run's or a previous one's).
    pub replayed: u64,
    /// Bytes in spill segments now.
    pub spill_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("capture spill directory {dir}: {source}")]
    SpillDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("capture writer thread: {0}")]
    Thread(#[source] std::io::Error),
}
