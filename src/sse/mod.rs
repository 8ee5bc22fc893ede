//! The SSE codec and its siblings: decoder, encoder, NDJSON/JSON-array splitters, bounded gzip.
//!
//! **Invariant:** nothing here does I/O, reads a clock or grows without a bound.

mod decode;
mod encode;
mod events;
mod gzip;
mod lines;

pub use decode::{DEFAULT_MAX_EVENT_SIZE, Fed, SseDecoder, SseEvent, SseItem};
pub use encode::{comment, event};
pub use events::{EventEnds, Framing};
pub use gzip::{GzipDecoder, GzipError};
pub use lines::{JsonArraySplitter, LineSplitter, Record};
