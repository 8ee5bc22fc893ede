//! Anthropic Messages: a `message` object, or `message_start` .. `message_stop` named events.

use super::chat::aborted;
use super::plan::{Frames, JSON, Plan, SSE};
use super::script::{Script, Style};
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

/// A silent stretch longer than this gets `ping` events, as the real api sends.
const PING_EVERY_MS: u64 = 5_000;

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub stream: bool,
    pub thinking: bool,
}

impl Options {
    pub fn from_request(req: &Value) -> Self {
        Self {
            stream: req["stream"].as_bool().unwrap_or(false),
            thinking: matches!(
                req["thinking"]["type"].as_str(),
                Some("enabled" | "adaptive")
            ),
        }
    }
}

pub fn plan(s: &Script, opts: Options) -> Plan {
    if opts.stream {
        return stream(s, opts);
    }
    let headers_ms = s.knobs.headers_ms.saturating_add(s.total_ms());
    if s.fail_after().is_some() {
        return aborted(headers_ms);
    }
    let mut content = Vec::new();
    if opts.thinking {
        content.push(json!({ "type": "thinking", "thinking": s.plain_thinking(), "signature": signature(s) }));
    }
    content.push(json!({ "type": "text", "text": s.answer_text() }));
    let body = json!({
        "id": id(s),
        "type": "message",
        "role": "assistant",
        "model": s.model,
        "content": content,
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": usage(s, output_tokens(s, opts)),
    });
    Plan::whole(
        StatusCode::OK,
        JSON,
        headers_ms,
        Bytes::from(body.to_string()),
    )
}

fn id(s: &Script) -> String {
    format!("msg_01{}", s.id(21, 22))
}

fn signature(s: &Script) -> String {
    format!("Eq{}==", s.id(22, 94))
}

fn output_tokens(s: &Script, opts: Options) -> u64 {
    s.answer_tokens() + if opts.thinking { s.thought_tokens() } else { 0 }
}

fn usage(s: &Script, output: u64) -> Value {
    json!({
        "input_tokens": s.prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output,
    })
}

fn event(f: &mut Frames, at: u64, kind: &str, mut body: Value) {
    body["type"] = json!(kind);
    f.sse(at, Some(kind), &body.to_string());
}

fn stream(s: &Script, opts: Options) -> Plan {
    let mut f = Frames::new(s.knobs.sse_ids);
    let start = json!({
        "id": id(s),
        "type": "message",
        "role": "assistant",
        "model": s.model,
        "content": [],
        "stop_reason": null,
        "stop_sequence": null,
        "usage": usage(s, 1),
    });
    event(&mut f, 0, "message_start", json!({ "message": start }));
    event(&mut f, 0, "ping", json!({}));
    let mut index = 0;
    if opts.thinking {
        event(
            &mut f,
            0,
            "content_block_start",
            json!({
                "index": 0, "content_block": { "type": "thinking", "thinking": "", "signature": "" },
            }),
        );
        for (at, piece) in s.think_pieces() {
            let text = piece.text(Style::Plain);
            if text.is_empty() {
                continue;
            }
            event(
                &mut f,
                at,
                "content_block_delta",
                json!({
                    "index": 0, "delta": { "type": "thinking_delta", "thinking": text },
                }),
            );
        }
        let t = s.think_ms;
        event(
            &mut f,
            t,
            "content_block_delta",
            json!({
                "index": 0, "delta": { "type": "signature_delta", "signature": signature(s) },
            }),
        );
        event(&mut f, t, "content_block_stop", json!({ "index": 0 }));
        index = 1;
    } else {
        let mut at = PING_EVERY_MS;
        while at < s.think_ms {
            event(&mut f, at, "ping", json!({}));
            at += PING_EVERY_MS;
        }
    }
    event(
        &mut f,
        s.think_ms,
        "content_block_start",
        json!({
            "index": index, "content_block": { "type": "text", "text": "" },
        }),
    );
    for (i, token) in s.answer.iter().enumerate() {
        if s.fail_after() == Some(i) {
            f.abort(s.answer_at(i));
        }
        event(
            &mut f,
            s.answer_at(i),
            "content_block_delta",
            json!({
                "index": index, "delta": { "type": "text_delta", "text": token },
            }),
        );
    }
    let end = s.total_ms();
    event(&mut f, end, "content_block_stop", json!({ "index": index }));
    event(
        &mut f,
        end,
        "message_delta",
        json!({
            "delta": { "stop_reason": "end_turn", "stop_sequence": null },
            "usage": { "output_tokens": output_tokens(s, opts) },
        }),
    );
    event(&mut f, end, "message_stop", json!({}));
    f.finish(SSE, s.knobs.headers_ms)
}
