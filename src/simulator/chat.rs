//! OpenAI Chat Completions: `chat.completion` objects and unnamed `chat.completion.chunk` events.

use super::plan::{Frames, JSON, Plan, SSE};
use super::script::{Script, Style};
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

/// What the request asked of the response shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub stream: bool,
    pub include_usage: bool,
}

impl Options {
    pub fn from_request(req: &Value) -> Self {
        Self {
            stream: req["stream"].as_bool().unwrap_or(false),
            include_usage: req["stream_options"]["include_usage"]
                .as_bool()
                .unwrap_or(false),
        }
    }
}

pub fn plan(s: &Script, opts: Options) -> Plan {
    if opts.stream {
        stream(s, opts)
    } else {
        whole(s)
    }
}

fn id(s: &Script) -> String {
    format!("chatcmpl-{}", s.id(1, 29))
}

fn usage(s: &Script, answered: u64) -> Value {
    let reasoning = s.thought_tokens();
    let completion = answered + reasoning;
    json!({
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": s.prompt_tokens + completion,
        "prompt_tokens_details": { "cached_tokens": 0, "audio_tokens": 0 },
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    })
}

fn whole(s: &Script) -> Plan {
    let mut message = json!({
        "role": "assistant",
        "content": s.answer_text(),
        "refusal": null,
        "annotations": [],
    });
    if s.knobs.reasoning_content {
        message["reasoning_content"] = json!(s.plain_thinking());
    }
    let body = json!({
        "id": id(s),
        "object": "chat.completion",
        "created": s.created,
        "model": s.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": usage(s, s.answer_tokens()),
        "service_tier": "default",
        "system_fingerprint": null,
    });
    let headers_ms = s.knobs.headers_ms.saturating_add(s.total_ms());
    match s.fail_after() {
        Some(_) => aborted(headers_ms),
        None => Plan::whole(
            StatusCode::OK,
            JSON,
            headers_ms,
            Bytes::from(body.to_string()),
        ),
    }
}

/// A non-streamed response whose body breaks off before a byte is sent.
pub fn aborted(headers_ms: u64) -> Plan {
    let mut frames = Frames::new(false);
    frames.abort(0);
    frames.finish(JSON, headers_ms)
}

fn stream(s: &Script, opts: Options) -> Plan {
    let id = id(s);
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": s.created,
            "model": s.model,
            "service_tier": "default",
            "system_fingerprint": null,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        });
        if opts.include_usage {
            c["usage"] = Value::Null;
        }
        c.to_string()
    };
    let mut f = Frames::new(s.knobs.sse_ids);
    let role = json!({ "role": "assistant", "content": "", "refusal": null });
    if s.knobs.reasoning_content {
        f.sse(0, None, &chunk(role.clone(), Value::Null));
        for (at, piece) in s.think_pieces() {
            let text = piece.text(Style::Plain);
            if text.is_empty() {
                continue;
            }
            f.sse(
                at,
                None,
                &chunk(json!({ "reasoning_content": text }), Value::Null),
            );
        }
    } else {
        f.sse(s.think_ms, None, &chunk(role, Value::Null));
    }
    for (i, token) in s.answer.iter().enumerate() {
        if s.fail_after() == Some(i) {
            f.abort(s.answer_at(i));
        }
        f.sse(
            s.answer_at(i),
            None,
            &chunk(json!({ "content": token }), Value::Null),
        );
    }
    let end = s.total_ms();
    f.sse(end, None, &chunk(json!({}), json!("stop")));
    if opts.include_usage {
        let u = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": s.created,
            "model": s.model,
            "service_tier": "default",
            "system_fingerprint": null,
            "choices": [],
            "usage": usage(s, s.answer_tokens()),
        });
        f.sse(end, None, &u.to_string());
    }
    f.sse(end, None, "[DONE]");
    f.finish(SSE, s.knobs.headers_ms)
}
