//! Fuzz target: the NDJSON line splitter and the JSON array splitter stay bounded on any input.
#![no_main]

use aloud::sse::{JsonArraySplitter, LineSplitter, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let mut out = Vec::new();
    let mut lines = LineSplitter::new(128);
    lines.feed(bytes, &mut out);
    assert!(lines.buffered() <= 128);
    lines.finish(&mut out);
    let mut array = JsonArraySplitter::new(128);
    array.feed(bytes, &mut out);
    assert!(array.buffered() <= 128);
    assert!(out.iter().all(|r| match r {
        Record::Item(b) => b.len() <= 128,
        Record::Oversized { limit } => *limit == 128,
    }));
});
