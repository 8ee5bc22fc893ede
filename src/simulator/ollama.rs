//! Ollama `/api/chat` and `/api/generate`: NDJSON objects ending in a `done: true` summary.

use super::chat::aborted;
use super::plan::{Frames, JSON, NDJSON, Plan};
use super::script::{Script, Style};
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, UNIX_EPOCH};

/// Which endpoint: `chat` puts text in `message`, `generate` in top-level fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Generate,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub endpoint: Endpoint,
    pub stream: bool,
    pub think: bool,
}

impl Options {
    pub fn from_request(endpoint: Endpoint, req: &Value) -> Self {
        let think = match &req["think"] {
            Value::Bool(b) => *b,
            Value::String(level) => !level.is_empty(),
            _ => false,
        };
        Self {
            endpoint,
            // Ollama streams unless told otherwise.
            stream: req["stream"].as_bool().unwrap_or(true),
            think,
        }
    }
}

/// The minimal `GET /api/tags` answer.
pub fn tags() -> Value {
    json!({
        "models": [{
            "name": "sim-reasoner:latest",
            "model": "sim-reasoner:latest",
            "modified_at": "2026-01-01T00:00:00Z",
            "size": 0,
            "digest": "0000000000000000000000000000000000000000000000000000000000000000",
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": "sim",
                "families": ["sim"],
                "parameter_size": "0B",
                "quantization_level": "none",
            },
        }],
    })
}

pub fn plan(s: &Script, opts: Options) -> Plan {
    if opts.stream {
        return stream(s, opts);
    }
    let headers_ms = s.knobs.headers_ms.saturating_add(s.total_ms());
    if s.fail_after().is_some() {
        return aborted(headers_ms);
    }
    let thinking = opts.think.then(|| s.plain_thinking());
    let mut body = object(s, opts, s.total_ms(), &s.answer_text(), thinking.as_deref());
    finish(s, opts, &mut body);
    Plan::whole(
        StatusCode::OK,
        JSON,
        headers_ms,
        Bytes::from(body.to_string()),
    )
}

/// RFC 3339 time `at_ms` after the call started.
fn created_at(s: &Script, at_ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(s.created) + Duration::from_millis(at_ms);
    humantime::format_rfc3339_nanos(t).to_string()
}

fn object(s: &Script, opts: Options, at_ms: u64, content: &str, thinking: Option<&str>) -> Value {
    let mut o = json!({ "model": s.model, "created_at": created_at(s, at_ms), "done": false });
    match opts.endpoint {
        Endpoint::Chat => {
            let mut message = json!({ "role": "assistant", "content": content });
            if let Some(t) = thinking {
                message["thinking"] = json!(t);
            }
            o["message"] = message;
        }
        Endpoint::Generate => {
            o["response"] = json!(content);
            if let Some(t) = thinking {
                o["thinking"] = json!(t);
            }
        }
    }
    o
}

/// Marks `o` as the final object, with counts and durations in nanoseconds.
fn finish(s: &Script, opts: Options, o: &mut Value) {
    let ns = |ms: u64| ms.saturating_mul(1_000_000);
    let load = s.think_ms / 10;
    let prompt_eval = s.think_ms / 10;
    let total = s.total_ms();
    let eval_count = s.answer_tokens() + if opts.think { s.thought_tokens() } else { 0 };
    o["done"] = json!(true);
    o["done_reason"] = json!("stop");
    o["total_duration"] = json!(ns(total));
    o["load_duration"] = json!(ns(load));
    o["prompt_eval_count"] = json!(s.prompt_tokens);
    o["prompt_eval_duration"] = json!(ns(prompt_eval));
    o["eval_count"] = json!(eval_count);
    o["eval_duration"] = json!(ns(total.saturating_sub(load + prompt_eval)));
    if opts.endpoint == Endpoint::Generate {
        o["context"] = json!([]);
    }
}

fn stream(s: &Script, opts: Options) -> Plan {
    let mut f = Frames::new(false);
    let line = |v: &Value| format!("{v}\n");
    if opts.think {
        for (at, piece) in s.think_pieces() {
            let text = piece.text(Style::Plain);
            if text.is_empty() {
                continue;
            }
            f.raw(at, line(&object(s, opts, at, "", Some(&text))));
        }
    }
    for (i, token) in s.answer.iter().enumerate() {
        let at = s.answer_at(i);
        if s.fail_after() == Some(i) {
            f.abort(at);
        }
        f.raw(at, line(&object(s, opts, at, token, None)));
    }
    let end = s.total_ms();
    let mut last = object(s, opts, end, "", None);
    finish(s, opts, &mut last);
    f.raw(end, line(&last));
    f.finish(NDJSON, s.knobs.headers_ms)
}
