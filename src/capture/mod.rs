//! Capture: one record per exchange, redacted, queued and written without slowing the request.
//!
//! `record` is the data; `writer` is the handle requests submit to, with its queue, batching
//! thread (`worker`), disk spill (`spill`) and size estimate (`size`).

use crate::config::Owner;

pub mod beacon;
mod cut;
mod item;
mod overflow;
mod pending;
pub(crate) mod priority;
/// The record is plain data on a floor of its own (`crate::record`), below the store.
pub use crate::record;
pub mod recorder;
pub mod redact;
pub mod redaction;
pub mod sink;
mod size;
mod spill;
pub mod stats;
mod worker;
pub mod writer;
mod writer_config;

pub use record::{
    CaptureLevel, CaptureRecord, Delta, DeltaKind, DeltaText, Outcome, Reassembled, Timings,
    TokenUsage, ToolCall,
};

/// Where finished records and beacons go (the batching writer). Nothing here may block, except
/// `known`, which may read the database (call it off the runtime).
///
/// `owner` is the fingerprint of the client token a beacon came with (`None` when client tokens
/// are off): a beacon only counts for requests made with the same token.
pub trait CaptureSink: Send + Sync {
    fn submit(&self, record: CaptureRecord);
    /// Hands over a record still to be built; a sink with a thread of its own builds it there.
    fn submit_pending(&self, pending: recorder::Pending) {
        self.submit(pending.build());
    }
    /// Whether a request `id` made by `owner` is waiting in the queue or already stored
    /// (beacons for any other get 404).
    fn known(&self, id: &str, owner: Option<Owner>) -> bool;
    fn timings(&self, id: &str, owner: Option<Owner>, timings: beacon::ClientTimings);
    fn feedback(&self, id: &str, owner: Option<Owner>, feedback: beacon::Feedback);
}
pub use writer::{CaptureWriter, WriterConfig, WriterError, WriterStats};
