//! Fuzz target: the SSE decoder over arbitrary bytes cut at a fuzzer-chosen point; checks the
//! bound and that chunking does not change the decoded items.
#![no_main]

use aloud::sse::SseDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, &[u8])| {
    let (cut, bytes) = input;
    let cut = usize::from(cut) % (bytes.len() + 1);
    let mut whole = SseDecoder::new(256);
    let a = whole.feed(bytes).items;
    let mut split = SseDecoder::new(256);
    let mut b = split.feed(&bytes[..cut]).items;
    assert!(split.buffered() <= 256);
    b.extend(split.feed(&bytes[cut..]).items);
    assert_eq!(a, b);
});
