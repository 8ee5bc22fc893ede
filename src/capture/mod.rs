//! Capture: one record per exchange, redacted, queued and written without slowing the request.

pub mod record;
pub mod recorder;

pub use record::{
    CaptureLevel, CaptureRecord, Delta, DeltaKind, Outcome, Reassembled, Timings, TokenUsage,
    ToolCall,
};

/// Where finished records go (the batching writer). `submit` must never block.
pub trait CaptureSink: Send + Sync {
    fn submit(&self, record: CaptureRecord);
}
