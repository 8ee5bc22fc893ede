//! Capture records for store and writer tests.
#![allow(dead_code)]

use aloud::capture::{
    CaptureLevel, CaptureRecord, Delta, DeltaKind, Outcome, Reassembled, Timings, TokenUsage,
};
use serde_json::json;

/// A realistic record whose serialized size is roughly `size` bytes.
pub fn record(id: &str, attempt: u32, started_at_ms: i64, size: usize) -> CaptureRecord {
    let text = "x".repeat(size.saturating_sub(900) / 2);
    CaptureRecord {
        id: id.to_string(),
        attempt,
        owner: None,
        started_at_ms,
        route: "openai".to_string(),
        api: "openai_chat".to_string(),
        model: Some("gpt-test".to_string()),
        method: "POST".to_string(),
        path: "/v1/chat/completions".to_string(),
        client_status: Some(200),
        upstream_status: Some(200),
        streamed: true,
        tier: "events".to_string(),
        outcome: Outcome::Ok,
        partial: false,
        capture: CaptureLevel::Full,
        timings: Timings {
            upstream_headers_ms: Some(120.0),
            upstream_first_byte_ms: Some(130.5),
            client_first_byte_ms: Some(2.0),
            first_feedback_ms: Some(3.0),
            first_reasoning_ms: Some(400.0),
            first_token_ms: Some(900.25),
            done_ms: Some(1500.0),
            longest_silence_ms: Some(380.0),
            overhead_ms: Some(1.5),
            upstream_ms: Some(118.0),
        },
        usage: Some(TokenUsage {
            input: Some(12),
            output: Some(34),
            reasoning: Some(5),
        }),
        upstream_timings: None,
        eta: None,
        request: Some(
            json!({"model": "gpt-test", "messages": [{"role": "user", "content": text}]}).into(),
        ),
        response: Some(Reassembled {
            text: text.clone(),
            reasoning: "thinking".to_string(),
            tool_calls: vec![],
            finish_reason: Some("stop".to_string()),
            body: None,
        }),
        deltas: vec![Delta::span(900.25, DeltaKind::Answer, 1)],
        error: None,
        truncated: false,
        disconnect: None,
    }
}

/// A small record with the filterable fields set.
pub fn tagged(
    id: &str,
    started_at_ms: i64,
    route: &str,
    model: &str,
    outcome: Outcome,
) -> CaptureRecord {
    let mut r = record(id, 1, started_at_ms, 1000);
    r.route = route.to_string();
    r.model = Some(model.to_string());
    r.outcome = outcome;
    r
}
