//! The hand-written JSON against serde_json's, byte for byte.

use super::*;
use crate::config::{CaptureLevel, Owner};
use crate::record::{Delta, DeltaKind, Outcome, Resume, ToolCall};
use serde_json::json;

fn same(record: &CaptureRecord) {
    let theirs = serde_json::to_string(record).unwrap();
    let ours = to_string(record).unwrap();
    assert_eq!(ours, theirs);
}

/// Strings that take each path: plain, escapes of every kind, and text outside ASCII.
const TEXTS: &[&str] = &[
    "",
    "plain",
    "quote \" and back\\slash",
    "line\nfeed\ttab\rreturn\u{8}\u{c}",
    "\u{0}\u{1}\u{1f} controls",
    "del \u{7f} stays",
    "é, 漢字, 🦀 and </script>",
    "[REDACTED:email]",
];

/// Floats that take each path, non-finite ones included (serde_json writes `null`).
const FLOATS: &[f64] = &[
    0.0,
    -0.0,
    1.5,
    12.345,
    1e-9,
    1e21,
    f64::MAX,
    f64::NAN,
    f64::INFINITY,
];

fn every_field(text: &str, float: f64) -> CaptureRecord {
    CaptureRecord {
        id: format!("id-{text}"),
        attempt: u32::MAX,
        owner: Owner::parse(&"ab".repeat(16)),
        started_at_ms: i64::MIN,
        route: text.into(),
        api: "openai".into(),
        model: Some(text.into()),
        method: "POST".into(),
        path: format!("/v1/{text}?q={text}"),
        client_status: Some(200),
        upstream_status: Some(u16::MAX),
        streamed: true,
        tier: "events".into(),
        outcome: Outcome::ClientDisconnected,
        partial: true,
        capture: CaptureLevel::Full,
        timings: Timings {
            upstream_headers_ms: Some(float),
            upstream_first_byte_ms: Some(1.0),
            client_first_byte_ms: Some(2.25),
            first_feedback_ms: None,
            first_reasoning_ms: Some(float),
            first_token_ms: Some(3.0),
            done_ms: Some(4.5),
            longest_silence_ms: Some(float),
            overhead_ms: Some(0.001),
            upstream_ms: None,
        },
        usage: Some(TokenUsage {
            input: Some(u64::MAX),
            output: None,
            reasoning: Some(0),
        }),
        upstream_timings: Some(
            json!({"total_duration": 123, "nested": [1.5, -2, null, text]}).into(),
        ),
        eta: Some(EtaRecord {
            basis: 7,
            issued_ms: Some(float),
            eta_ms: Some(10.0),
            error_at_25: Some(0.2),
        }),
        request: Some(
            json!({
                "model": text,
                "messages": [{"role": "user", "content": text}],
                text: {"key \"quoted\"": [true, false, null, 0, -1, 18446744073709551615u64, 0.5]},
                "empty": {}, "none": []
            })
            .into(),
        ),
        response: Some(Reassembled {
            text: text.into(),
            reasoning: format!("{text}{text}"),
            tool_calls: vec![
                ToolCall {
                    id: "call_1".into(),
                    name: text.into(),
                    arguments: format!("{{\"a\":\"{text}\"}}"),
                },
                ToolCall::default(),
            ],
            finish_reason: Some(text.into()),
            body: Some(json!({"choices": [{"message": {"content": text}}], "n": float}).into()),
        }),
        deltas: vec![
            Delta::span(float, DeltaKind::Answer, 3),
            Delta::span(1.0, DeltaKind::Reasoning, usize::MAX),
            Delta::text(2.0, DeltaKind::Label, text),
            Delta::text(3.0, DeltaKind::Tool, ""),
        ],
        error: Some(text.into()),
        truncated: true,
        disconnect: Some(Disconnect {
            client_left_ms: Some(float),
            upstream_done_ms: None,
            resumes: vec![
                Resume {
                    at_ms: 1.0,
                    after: u64::MAX,
                },
                Resume {
                    at_ms: float,
                    after: 0,
                },
            ],
        }),
    }
}

#[test]
fn a_minimal_record_is_written_as_serde_json_writes_it() {
    same(&CaptureRecord::minimal("r-1"));
}

#[test]
fn every_field_with_every_kind_of_string_and_float_is_written_as_serde_json_writes_it() {
    for text in TEXTS {
        for float in FLOATS {
            same(&every_field(text, *float));
        }
    }
}

#[test]
fn optional_parts_left_out_are_left_out_as_serde_json_leaves_them() {
    let full = every_field("x", 1.0);
    let variants = [
        CaptureRecord {
            owner: None,
            eta: None,
            disconnect: None,
            ..full.clone()
        },
        CaptureRecord {
            usage: None,
            upstream_timings: None,
            request: None,
            response: None,
            deltas: Vec::new(),
            error: None,
            ..full.clone()
        },
        CaptureRecord {
            eta: Some(EtaRecord::default()),
            response: Some(Reassembled::default()),
            disconnect: Some(Disconnect::default()),
            request: Some(Value::String("not json \"at all\"".into()).into()),
            ..full.clone()
        },
        CaptureRecord {
            request: Some(Value::Null.into()),
            upstream_timings: Some(json!([]).into()),
            ..full
        },
    ];
    for record in &variants {
        same(record);
    }
}

#[test]
fn records_generated_from_a_seed_are_written_as_serde_json_writes_them() {
    // A small linear congruential generator: deterministic, no dependency.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as usize) % n
    };
    for _ in 0..500 {
        let text = TEXTS[next(TEXTS.len())];
        let float = FLOATS[next(FLOATS.len())];
        let mut r = every_field(text, float);
        if next(2) == 0 {
            r.owner = None;
        }
        if next(2) == 0 {
            r.eta = None;
        }
        if next(3) == 0 {
            r.response = None;
        }
        if next(3) == 0 {
            r.disconnect = None;
        }
        if next(2) == 0 {
            r.model = None;
        }
        r.outcome = [Outcome::Ok, Outcome::Timeout, Outcome::Shutdown][next(3)];
        r.capture = [CaptureLevel::Metadata, CaptureLevel::Full][next(2)];
        r.deltas.truncate(next(5));
        same(&r);
    }
}

#[test]
fn a_record_read_back_keeps_its_documents_as_text_and_writes_the_same_bytes() {
    for text in TEXTS {
        let r = every_field(text, 1.5);
        let written = to_string(&r).unwrap();
        let back: CaptureRecord = serde_json::from_str(&written).unwrap();
        let body = back.response.as_ref().and_then(|b| b.body.as_ref());
        for doc in [back.request.as_ref(), back.upstream_timings.as_ref(), body] {
            assert!(doc.and_then(|d| d.text()).is_some(), "{doc:?}");
        }
        assert_eq!(back, r, "the text reads as the tree it was written from");
        assert_eq!(to_string(&back).unwrap(), written);
        assert_eq!(serde_json::to_string(&back).unwrap(), written);
    }
}

/// serde_json's own text for a float.
fn serde_f64(v: f64) -> String {
    let mut out = Vec::new();
    CompactFormatter.write_f64(&mut out, v).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn durations_in_whole_microseconds_are_written_as_serde_json_writes_them() {
    let mut tried = 0;
    let mut fast = 0;
    let mut check = |v: f64| {
        let mut ours = Vec::new();
        f64_(&mut ours, v);
        assert_eq!(String::from_utf8(ours).unwrap(), serde_f64(v), "{v:e}");
        tried += 1;
        fast += usize::from(whole_micros(v).is_some());
    };
    // Every thousandth up to 2,000, and around each power of ten up to the bound.
    for micros in 0..2_000_000_u64 {
        check(micros as f64 / 1000.0);
    }
    for exp in 0..13 {
        let base = 10_u64.pow(exp);
        for d in base.saturating_sub(1500)..base + 1500 {
            check(d as f64 / 1000.0);
        }
    }
    // A duration rounded to the microsecond, as the recorder rounds them.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..200_000 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let secs = (state >> 11) as f64 / (1u64 << 53) as f64 * 1e7;
        check((secs * 1e6).round() / 1e3);
        check(secs);
    }
    // What takes the general path: negatives, -0.0, fractions of a microsecond, huge and
    // tiny values, non-finite ones.
    for v in [
        -0.0,
        -1.5,
        0.0001,
        1e-7,
        0.1 + 0.2,
        1e9,
        999_999_999.999,
        1e15 + 0.5,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
    ] {
        check(v);
    }
    let mut nan = Vec::new();
    f64_(&mut nan, f64::NAN);
    assert_eq!(nan, b"null");
    assert!(fast > 2_000_000 && fast < tried, "{fast} of {tried}");
}
