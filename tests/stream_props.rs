//! Property tests for the stream readers: chunking never changes what is derived, arbitrary
//! bytes never panic, buffers stay bounded, and injection points are safe. These stand in for
//! the fuzz targets in `fuzz/` (same entry points, same inputs) on a stable toolchain.

use aloud::apis::Api;
use aloud::apis::stream::{Dialect, Limits, Signal, StreamInterpreter, Summary};
use aloud::sse::{SseDecoder, SseItem};
use proptest::prelude::*;

const FIXTURES: [(&str, Dialect, &[u8]); 6] = [
    (
        "chat",
        Dialect::OpenAiChat,
        include_bytes!("fixtures/streams/openai_chat_reasoning.sse"),
    ),
    (
        "responses",
        Dialect::OpenAiResponses,
        include_bytes!("fixtures/streams/openai_responses.sse"),
    ),
    (
        "anthropic",
        Dialect::Anthropic,
        include_bytes!("fixtures/streams/anthropic_thinking.sse"),
    ),
    (
        "gemini-sse",
        Dialect::GeminiSse,
        include_bytes!("fixtures/streams/gemini_thoughts.sse"),
    ),
    (
        "gemini-array",
        Dialect::GeminiJsonArray,
        include_bytes!("fixtures/streams/gemini_array.json"),
    ),
    (
        "ollama",
        Dialect::OllamaNdjson,
        include_bytes!("fixtures/streams/ollama_chat.ndjson"),
    ),
];

const DIALECTS: [Dialect; 6] = [
    Dialect::OpenAiChat,
    Dialect::OpenAiResponses,
    Dialect::Anthropic,
    Dialect::GeminiSse,
    Dialect::GeminiJsonArray,
    Dialect::OllamaNdjson,
];

/// Small limits so that arbitrary inputs actually reach the bounds.
const SMALL: Limits = Limits {
    max_event: 256,
    max_text: 64,
    max_decoded: 4096,
};

/// Cuts `bytes` at the given (sorted, deduplicated) positions.
fn cut<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for p in points {
        out.push(&bytes[start..p]);
        start = p;
    }
    out.push(&bytes[start..]);
    out
}

/// Everything derived from a stream: signals, absolute boundaries, the final summary.
fn interpret(
    dialect: Dialect,
    limits: Limits,
    chunks: &[&[u8]],
) -> (Vec<Signal>, Vec<usize>, Summary) {
    let mut i = StreamInterpreter::with_dialect(Some(dialect), limits);
    let mut signals = Vec::new();
    let mut boundaries = Vec::new();
    let mut offset = 0;
    for chunk in chunks {
        let step = i.feed(chunk);
        assert!(
            i.buffered() <= limits.max_event,
            "buffer {} over bound",
            i.buffered()
        );
        signals.extend(step.signals);
        boundaries.extend(step.boundaries.iter().map(|b| b + offset));
        offset += chunk.len();
    }
    signals.extend(i.finish());
    let s = i.summary().clone();
    for text in [&s.output.answer, &s.output.reasoning] {
        assert!(text.len() <= limits.max_text);
    }
    for label in &s.output.labels {
        assert!(label.chars().count() <= 120 && !label.chars().any(char::is_control));
    }
    (signals, boundaries, s)
}

fn decode_all(chunks: &[&[u8]]) -> Vec<SseItem> {
    let mut d = SseDecoder::new(256);
    let mut items = Vec::new();
    for chunk in chunks {
        items.extend(d.feed(chunk).items);
        assert!(d.buffered() <= 256);
    }
    d.finish();
    items
}

/// SSE-ish input built from pieces that hit the interesting paths.
fn sse_soup() -> impl Strategy<Value = Vec<u8>> {
    let pieces: Vec<&'static [u8]> = vec![
        b"data: ",
        b"data:",
        b"data",
        b"event: x",
        b"id: 1",
        b"id: a\0b",
        b"retry: 10",
        b": c",
        b"\n",
        b"\r",
        b"\r\n",
        b"\n\n",
        b"\xEF\xBB\xBF",
        b"\xC3\xA9",
        b"\xC3",
        b"\xFF",
        b"{\"a\":1}",
        b"[DONE]",
        b"x",
        b"\"",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b"0123456789abcdef0123456789abcdef",
        &[0xFF; 64],
    ];
    prop::collection::vec(prop::sample::select(pieces), 0..120).prop_map(|v| v.concat())
}

/// Fixture bytes with random splices of soup and random bytes.
fn mutated_fixture() -> impl Strategy<Value = (usize, Vec<u8>)> {
    (
        0..FIXTURES.len(),
        any::<usize>(),
        sse_soup(),
        prop::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(f, at, soup, noise)| {
            let base = FIXTURES[f].2;
            let at = at % (base.len() + 1);
            let mut v = base[..at].to_vec();
            v.extend(soup);
            v.extend(noise);
            v.extend(&base[at..]);
            (f, v)
        })
}

/// Well-formed events of one dialect with arbitrary text in every string hole, framed as the
/// dialect frames them; reaches the JSON paths that random bytes rarely do.
fn structured(dialect: Dialect) -> impl Strategy<Value = Vec<u8>> {
    let templates: &'static [&'static str] = match dialect {
        Dialect::OpenAiChat => &[
            r#"{"choices":[{"index":0,"delta":{"reasoning_content":S}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"reasoning":S,"content":S}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":N,"function":{"name":S,"arguments":S}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":S}],"usage":{"prompt_tokens":N}}"#,
            r#"{"error":{"message":S,"type":S}}"#,
            "[DONE]",
        ],
        Dialect::OpenAiResponses => &[
            r#"{"type":"response.reasoning_summary_part.added"}"#,
            r#"{"type":"response.reasoning_summary_text.delta","delta":S}"#,
            r#"{"type":"response.reasoning_summary_text.done","text":S}"#,
            r#"{"type":"response.output_item.added","output_index":N,"item":{"type":S,"name":S}}"#,
            r#"{"type":"response.function_call_arguments.delta","output_index":N,"delta":S}"#,
            r#"{"type":"response.output_text.delta","delta":S}"#,
            r#"{"type":"response.incomplete","response":{"incomplete_details":{"reason":S}}}"#,
            r#"{"type":"error","message":S,"code":S}"#,
        ],
        Dialect::Anthropic => &[
            r#"{"type":"content_block_start","index":N,"content_block":{"type":"thinking","thinking":S}}"#,
            r#"{"type":"content_block_delta","index":N,"delta":{"type":"thinking_delta","thinking":S}}"#,
            r#"{"type":"content_block_start","index":N,"content_block":{"type":S,"name":S}}"#,
            r#"{"type":"content_block_delta","index":N,"delta":{"type":"input_json_delta","partial_json":S}}"#,
            r#"{"type":"content_block_delta","index":N,"delta":{"type":"text_delta","text":S}}"#,
            r#"{"type":"content_block_stop","index":N}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":S},"usage":{"output_tokens":N}}"#,
        ],
        Dialect::GeminiSse | Dialect::GeminiJsonArray => &[
            r#"{"candidates":[{"content":{"parts":[{"text":S,"thought":true}]}}]}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":S},{"functionCall":{"name":S,"args":{"a":S}}}]},"finishReason":S}]}"#,
            r#"{"usageMetadata":{"thoughtsTokenCount":N},"error":null}"#,
            r#"[{"error":{"message":S,"status":S}}]"#,
        ],
        Dialect::OllamaNdjson => &[
            r#"{"message":{"thinking":S,"content":S}}"#,
            r#"{"thinking":S,"response":S}"#,
            r#"{"message":{"tool_calls":[{"function":{"name":S,"arguments":{"x":S}}}]}}"#,
            r#"{"done":true,"done_reason":S,"load_duration":N}"#,
            r#"{"error":S}"#,
        ],
    };
    let text = prop_oneof![
        any::<String>(),
        "[*# \n\r\t€é]{0,12}(\\*\\*[a-zA-Zé€ ]{0,8}\\*\\*)?[\n a-z]{0,6}"
    ];
    let event = (
        prop::sample::select(templates),
        prop::collection::vec(text, 6),
        any::<u8>(),
    )
        .prop_map(|(t, texts, n)| {
            let mut texts = texts.into_iter();
            let mut out = String::new();
            for (i, piece) in t.replace('N', &n.to_string()).split('S').enumerate() {
                if i > 0 {
                    out.push_str(
                        &serde_json::Value::String(texts.next().unwrap_or_default()).to_string(),
                    );
                }
                out.push_str(piece);
            }
            out
        });
    prop::collection::vec(event, 0..24).prop_map(move |events| match dialect {
        Dialect::OllamaNdjson => events.join("\n").into_bytes(),
        Dialect::GeminiJsonArray => format!("[{}]", events.join(",\r\n")).into_bytes(),
        _ => events
            .iter()
            .map(|e| format!("data: {e}\r\n\r\n"))
            .collect::<String>()
            .into_bytes(),
    })
}

fn any_structured() -> impl Strategy<Value = (Dialect, Vec<u8>)> {
    prop::sample::select(DIALECTS.to_vec())
        .prop_flat_map(|d| structured(d).prop_map(move |b| (d, b)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn structured_events_do_not_depend_on_chunking((dialect, bytes) in any_structured(), cuts in prop::collection::vec(any::<usize>(), 0..24)) {
        for limits in [Limits::default(), SMALL] {
            let whole = interpret(dialect, limits, &[&bytes]);
            prop_assert_eq!(whole, interpret(dialect, limits, &cut(&bytes, &cuts)));
        }
    }

    #[test]
    fn fixtures_do_not_depend_on_chunking(f in 0..FIXTURES.len(), cuts in prop::collection::vec(any::<usize>(), 0..40)) {
        let (_, dialect, bytes) = FIXTURES[f];
        let whole = interpret(dialect, Limits::default(), &[bytes]);
        let pieces = interpret(dialect, Limits::default(), &cut(bytes, &cuts));
        prop_assert_eq!(&whole, &pieces);
        prop_assert!(whole.2.phase.is_some_and(|p| p.is_terminal()));
    }

    #[test]
    fn decoder_does_not_depend_on_chunking(bytes in sse_soup(), cuts in prop::collection::vec(any::<usize>(), 0..20)) {
        prop_assert_eq!(decode_all(&[&bytes]), decode_all(&cut(&bytes, &cuts)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        decode_all(&cut(&bytes, &cuts));
        for dialect in DIALECTS {
            let whole = interpret(dialect, SMALL, &[&bytes]);
            prop_assert_eq!(whole, interpret(dialect, SMALL, &cut(&bytes, &cuts)));
        }
        let mut gz = StreamInterpreter::with_dialect(Some(Dialect::OpenAiChat), SMALL).with_content_encoding(Some("gzip"));
        gz.feed(&bytes);
        gz.finish();
    }

    #[test]
    fn mutated_fixtures_degrade_without_panic((f, bytes) in mutated_fixture(), cuts in prop::collection::vec(any::<usize>(), 0..12)) {
        let dialect = FIXTURES[f].1;
        for limits in [Limits::default(), SMALL] {
            let whole = interpret(dialect, limits, &[&bytes]);
            prop_assert_eq!(whole, interpret(dialect, limits, &cut(&bytes, &cuts)));
        }
    }

    /// A comment injected at every reported boundary changes nothing but the comments seen.
    #[test]
    fn injection_at_boundaries_is_invisible(bytes in sse_soup(), cuts in prop::collection::vec(any::<usize>(), 0..12)) {
        let chunks = cut(&bytes, &cuts);
        let mut d = SseDecoder::new(256);
        let mut injected = Vec::new();
        for chunk in &chunks {
            let fed = d.feed(chunk);
            let mut last = 0;
            for b in fed.boundaries {
                injected.extend_from_slice(&chunk[last..b]);
                injected.extend_from_slice(&aloud::sse::comment("{\"phase\":\"thinking\"}"));
                last = b;
            }
            injected.extend_from_slice(&chunk[last..]);
        }
        let strip = |items: Vec<SseItem>| -> Vec<SseItem> {
            items.into_iter().filter(|i| !matches!(i, SseItem::Comment(c) if c.starts_with("aloud "))).collect()
        };
        prop_assert_eq!(strip(decode_all(&[&bytes])), strip(decode_all(&[&injected])));
    }
}

#[test]
fn fixture_boundaries_sit_after_blank_lines() {
    for (name, dialect, bytes) in FIXTURES {
        let (_, boundaries, _) = interpret(dialect, Limits::default(), &[bytes]);
        if !dialect.is_sse() {
            assert!(boundaries.is_empty(), "{name}");
            continue;
        }
        assert_eq!(boundaries.first(), Some(&0), "{name}");
        for b in boundaries.into_iter().skip(1) {
            assert!(
                bytes[..b].ends_with(b"\n\n") || bytes[..b].ends_with(b"\r\n\r\n"),
                "{name} at {b}"
            );
        }
    }
}

#[test]
fn interpreter_picks_dialects_from_the_request() {
    let i = StreamInterpreter::new(
        Api::Gemini,
        "/v1beta/openai/chat/completions",
        "text/event-stream",
    );
    assert_eq!(i.dialect(), Some(Dialect::OpenAiChat));
}
