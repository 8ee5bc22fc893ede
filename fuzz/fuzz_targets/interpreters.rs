//! Fuzz target: every stream dialect (and the gzip path) over arbitrary bytes; the first byte
//! picks the dialect, the second the cut point. Checks bounds and chunking independence.
#![no_main]

use aloud::apis::stream::{Dialect, Limits, StreamInterpreter};
use libfuzzer_sys::fuzz_target;

const DIALECTS: [Dialect; 6] = [
    Dialect::OpenAiChat,
    Dialect::OpenAiResponses,
    Dialect::Anthropic,
    Dialect::GeminiSse,
    Dialect::GeminiJsonArray,
    Dialect::OllamaNdjson,
];
const LIMITS: Limits = Limits {
    max_event: 256,
    max_text: 64,
    max_decoded: 4096,
};

fuzz_target!(|input: (u8, u16, bool, &[u8])| {
    let (pick, cut, gzip, bytes) = input;
    let dialect = DIALECTS[usize::from(pick) % DIALECTS.len()];
    let cut = usize::from(cut) % (bytes.len() + 1);
    let encoding = gzip.then_some("gzip");
    let run = |chunks: &[&[u8]]| {
        let mut i =
            StreamInterpreter::with_dialect(Some(dialect), LIMITS).with_content_encoding(encoding);
        let mut signals = Vec::new();
        for chunk in chunks {
            signals.extend(i.feed(chunk).signals);
            assert!(i.buffered() <= LIMITS.max_event);
        }
        signals.extend(i.finish());
        (signals, i.summary().clone())
    };
    assert_eq!(run(&[bytes]), run(&[&bytes[..cut], &bytes[cut..]]));
});
