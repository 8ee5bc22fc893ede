//! Capture: one record per exchange, redacted, queued and written without slowing the request.
//!
//! `record` is the data; `writer` is the handle requests submit to, with its queue, batching
//! thread (`worker`), disk spill (`spill`) and size estimate (`size`).

pub mod beacon;
pub mod record;
pub mod recorder;
pub mod redact;
pub mod redaction;
pub mod sink;
mod size;
mod spill;
pub mod stats;
mod worker;
pub mod writer;

pub use record::{
    CaptureLevel, CaptureRecord, Delta, DeltaKind, DeltaText, Outcome, Reassembled, Timings,
    TokenUsage, ToolCall,
};

/// Where finished records and beacons go (the batching writer). Nothing here may block.
pub trait CaptureSink: Send + Sync {
    fn submit(&self, record: CaptureRecord);
    /// Whether `id` is waiting in the queue or already stored (beacons for others get 404).
    fn known(&self, id: &str) -> bool;
    fn timings(&self, id: &str, timings: beacon::ClientTimings);
    fn feedback(&self, id: &str, feedback: beacon::Feedback);
}
pub use writer::{CaptureWriter, WriterConfig, WriterError, WriterStats};
