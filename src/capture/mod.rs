//! Capture: one record per exchange, redacted, queued and written without slowing the request.
//!
//! `record` is the data; `writer` is the handle requests submit to, with its queue, batching
//! thread (`worker`), disk spill (`spill`) and size estimate (`size`).

pub mod record;
mod size;
mod spill;
mod worker;
pub mod writer;

pub use record::{
    CaptureLevel, CaptureRecord, Delta, DeltaKind, Outcome, Reassembled, Timings, TokenUsage,
    ToolCall,
};
pub use writer::{CaptureWriter, WriterConfig, WriterError, WriterStats};
