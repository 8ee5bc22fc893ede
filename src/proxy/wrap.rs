//! The events tier's wrapping of upstream bodies, bounded: NDJSON lines and JSON array elements
//! become `data:` events, and a whole (non-streaming) body is collected for `aloud.result` within
//! a per-request limit and a budget shared by every request. Past a bound the caller ends the
//! stream with `aloud.error`; nothing is cut or dropped silently. No I/O.

use crate::apis::stream::Dialect;
use crate::config::units::ShownSize;
use crate::sse::{JsonArraySplitter, LineSplitter, Record};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Why wrapping stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    /// One NDJSON line or array element was larger than the per-record limit.
    Record { limit: usize },
    /// The whole body was larger than `max_wrap_body`.
    Body { limit: usize },
    /// Every request's collected bodies together reached the shared budget.
    Budget { limit: usize },
}

impl Over {
    /// The `code` of the `aloud.error` event.
    pub fn code(self) -> &'static str {
        match self {
            Over::Record { .. } => "event_too_large",
            Over::Body { .. } => "wrap_body_too_large",
            Over::Budget { .. } => "wrap_memory_exhausted",
        }
    }

    pub fn message(self) -> String {
        match self {
            Over::Record { limit } => format!(
                "an upstream record is larger than the events tier's limit of {}; \
                 use Aloud-Progress: off or comments for this request",
                ShownSize(limit as u64)
            ),
            Over::Body { limit } => format!(
                "the upstream answer is larger than [progress] max_wrap_body ({}); \
                 use Aloud-Progress: off or comments for this request",
                ShownSize(limit as u64)
            ),
            Over::Budget { limit } => format!(
                "aloud is holding {} of answers for the events tier already \
                 ([progress] max_wrap_total); retry shortly, or use Aloud-Progress: off or comments",
                ShownSize(limit as u64)
            ),
        }
    }
}

/// How upstream stream bytes become SSE in the events tier.
pub enum Reframe {
    /// SSE already: forward as is.
    None,
    /// NDJSON: one `data:` event per line.
    Lines(LineSplitter),
    /// A JSON array (Gemini without `alt=sse`): one `data:` event per element.
    Array(JsonArraySplitter),
}

impl Reframe {
    pub fn for_events(dialect: Option<Dialect>, max_record: usize) -> Self {
        match dialect {
            Some(Dialect::OllamaNdjson) => Reframe::Lines(LineSplitter::new(max_record)),
            Some(Dialect::GeminiJsonArray) => Reframe::Array(JsonArraySplitter::new(max_record)),
            _ => Reframe::None,
        }
    }

    /// Whether aloud re-frames (every event it emits ends at a boundary).
    pub fn reframes(&self) -> bool {
        !matches!(self, Reframe::None)
    }

    /// Queues what `data` completes.
    pub fn feed(&mut self, data: Bytes, out: &mut VecDeque<Bytes>) -> Result<(), Over> {
        let mut records = Vec::new();
        match self {
            Reframe::None => {
                out.push_back(data);
                return Ok(());
            }
            Reframe::Lines(s) => s.feed(&data, &mut records),
            Reframe::Array(s) => s.feed(&data, &mut records),
        }
        push_records(out, records)
    }

    /// The body ended: a last NDJSON line without its newline still counts.
    pub fn finish(&mut self, out: &mut VecDeque<Bytes>) -> Result<(), Over> {
        let mut records = Vec::new();
        if let Reframe::Lines(s) = self {
            s.finish(&mut records);
        }
        push_records(out, records)
    }
}

fn push_records(out: &mut VecDeque<Bytes>, records: Vec<Record>) -> Result<(), Over> {
    for r in records {
        match r {
            Record::Item(bytes) => {
                let mut frame = Vec::with_capacity(bytes.len() + 8);
                frame.extend_from_slice(b"data: ");
                frame.extend(bytes.iter().filter(|b| **b != b'\n' && **b != b'\r'));
                frame.extend_from_slice(b"\n\n");
                out.push_back(Bytes::from(frame));
            }
            Record::Oversized { limit } => return Err(Over::Record { limit }),
        }
    }
    Ok(())
}

/// Bytes held by every collector together, against one limit.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    fn reserve(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|t| *t <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// A whole upstream body, collected within its limit and the shared budget.
pub struct Collector {
    buf: BytesMut,
    max: usize,
    budget: Arc<Budget>,
}

impl Collector {
    pub fn new(max: usize, budget: Arc<Budget>) -> Self {
        Collector {
            buf: BytesMut::new(),
            max,
            budget,
        }
    }

    pub fn push(&mut self, data: &[u8]) -> Result<(), Over> {
        if self.buf.len() + data.len() > self.max {
            return Err(Over::Body { limit: self.max });
        }
        if !self.budget.reserve(data.len()) {
            return Err(Over::Budget {
                limit: self.budget.limit,
            });
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.budget.release(self.buf.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_over_its_limit_or_the_budget_is_refused_and_the_budget_comes_back() {
        let budget = Budget::new(10);
        let mut a = Collector::new(8, Arc::clone(&budget));
        a.push(b"12345").unwrap();
        assert_eq!(a.push(b"6789"), Err(Over::Body { limit: 8 }));
        let mut b = Collector::new(8, Arc::clone(&budget));
        assert_eq!(b.push(b"123456"), Err(Over::Budget { limit: 10 }));
        drop(a);
        assert_eq!(budget.used(), 0);
        b.push(b"123456").unwrap();
        assert_eq!(budget.used(), 6);
    }

    #[test]
    fn an_oversized_line_is_an_error_not_a_gap() {
        let mut r = Reframe::for_events(Some(Dialect::OllamaNdjson), 8);
        let mut out = VecDeque::new();
        r.feed(Bytes::from_static(b"{\"a\":1}\n"), &mut out)
            .unwrap();
        assert_eq!(out.pop_front().unwrap(), "data: {\"a\":1}\n\n");
        assert_eq!(
            r.feed(Bytes::from_static(b"{\"long\":123456}\n"), &mut out),
            Err(Over::Record { limit: 8 })
        );
        let mut r = Reframe::for_events(Some(Dialect::OllamaNdjson), 64);
        r.feed(Bytes::from_static(b"{\"done\":true}"), &mut out)
            .unwrap();
        r.finish(&mut out).unwrap();
        assert_eq!(out.pop_front().unwrap(), "data: {\"done\":true}\n\n");
    }
}
