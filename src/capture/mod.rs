//! Capture: one record per exchange, redacted, queued and written without slowing the request.

pub mod record;
pub mod redact;
pub mod stats;

pub use record::{
    CaptureLevel, CaptureRecord, Delta, DeltaKind, Outcome, Reassembled, Timings, TokenUsage,
    ToolCall,
};
