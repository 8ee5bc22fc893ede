//! A plan is the pure result of simulating one request: status, headers delay and timed frames.
//!
//! **Invariant:** building a plan reads no clock; only `PlanBody` (in `body.rs`) waits.

use bytes::Bytes;
use http::StatusCode;

/// One step of a response body, due `at_ms` after the body starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        at_ms: u64,
        bytes: Bytes,
    },
    /// Abort the connection (the body yields an error, so no terminating chunk is sent).
    Abort {
        at_ms: u64,
    },
}

impl Frame {
    pub fn at_ms(&self) -> u64 {
        match self {
            Frame::Data { at_ms, .. } | Frame::Abort { at_ms } => *at_ms,
        }
    }
}

/// Everything the timing edge needs to send one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub status: StatusCode,
    pub content_type: &'static str,
    /// How long to wait before sending the status and headers.
    pub headers_ms: u64,
    pub frames: Vec<Frame>,
}

impl Plan {
    /// A complete body sent at once after `headers_ms` (non-streamed answers and errors).
    pub fn whole(
        status: StatusCode,
        content_type: &'static str,
        headers_ms: u64,
        body: Bytes,
    ) -> Self {
        Self {
            status,
            content_type,
            headers_ms,
            frames: vec![Frame::Data {
                at_ms: 0,
                bytes: body,
            }],
        }
    }

    /// A JSON body sent at once.
    pub fn json(status: StatusCode, headers_ms: u64, body: &serde_json::Value) -> Self {
        Self::whole(status, JSON, headers_ms, Bytes::from(body.to_string()))
    }

    /// All body bytes concatenated, ignoring timing.
    #[cfg(test)]
    pub fn body_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for f in &self.frames {
            if let Frame::Data { bytes, .. } = f {
                out.extend_from_slice(bytes);
            }
        }
        out
    }
}

pub const JSON: &str = "application/json";
pub const SSE: &str = "text/event-stream; charset=utf-8";
pub const NDJSON: &str = "application/x-ndjson";

/// Collects frames in time order for a streamed response.
#[derive(Debug, Default)]
pub struct Frames {
    frames: Vec<Frame>,
    /// The `id:` counter when `x-sim-sse-ids` is on.
    sse_ids: Option<u64>,
    aborted: bool,
}

impl Frames {
    pub fn new(sse_ids: bool) -> Self {
        Self {
            frames: Vec::new(),
            sse_ids: sse_ids.then_some(0),
            aborted: false,
        }
    }

    /// Appends raw bytes due at `at_ms` (ignored once the stream was aborted).
    pub fn raw(&mut self, at_ms: u64, bytes: impl Into<Bytes>) {
        if !self.aborted {
            self.frames.push(Frame::Data {
                at_ms,
                bytes: bytes.into(),
            });
        }
    }

    /// Appends an SSE event with an optional `event:` name and one `data:` line.
    pub fn sse(&mut self, at_ms: u64, event: Option<&str>, data: &str) {
        let mut text = String::with_capacity(data.len() + 32);
        if let Some(n) = self.sse_ids.as_mut() {
            *n += 1;
            text.push_str(&format!("id: {n}\n"));
        }
        if let Some(event) = event {
            text.push_str("event: ");
            text.push_str(event);
            text.push('\n');
        }
        text.push_str("data: ");
        text.push_str(data);
        text.push_str("\n\n");
        self.raw(at_ms, text);
    }

    /// Ends the stream abruptly at `at_ms`; later frames are dropped.
    pub fn abort(&mut self, at_ms: u64) {
        if !self.aborted {
            self.frames.push(Frame::Abort { at_ms });
            self.aborted = true;
        }
    }

    pub fn finish(self, content_type: &'static str, headers_ms: u64) -> Plan {
        Plan {
            status: StatusCode::OK,
            content_type,
            headers_ms,
            frames: self.frames,
        }
    }
}
