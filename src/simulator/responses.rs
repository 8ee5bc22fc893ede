//! OpenAI Responses: a `response` object, or named events numbered by `sequence_number`.

use super::chat::aborted;
use super::plan::{Frames, JSON, Plan, SSE};
use super::script::{Script, ThinkPiece};
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub stream: bool,
    /// The request's `reasoning.summary`, when it asked for summaries.
    pub summary: Option<Value>,
    pub effort: Option<Value>,
}

impl Options {
    pub fn from_request(req: &Value) -> Self {
        let summary = req["reasoning"]
            .get("summary")
            .filter(|v| !v.is_null())
            .cloned();
        let effort = req["reasoning"]
            .get("effort")
            .filter(|v| !v.is_null())
            .cloned();
        Self {
            stream: req["stream"].as_bool().unwrap_or(false),
            summary,
            effort,
        }
    }
}

pub fn plan(s: &Script, opts: &Options) -> Plan {
    let ids = Ids::new(s);
    if opts.stream {
        return stream(s, opts, &ids);
    }
    let headers_ms = s.knobs.headers_ms.saturating_add(s.total_ms());
    if s.fail_after().is_some() {
        return aborted(headers_ms);
    }
    let body = response(s, opts, &ids, Some(s.answer_tokens()));
    Plan::whole(
        StatusCode::OK,
        JSON,
        headers_ms,
        Bytes::from(body.to_string()),
    )
}

struct Ids {
    response: String,
    reasoning: String,
    message: String,
}

impl Ids {
    fn new(s: &Script) -> Self {
        Self {
            response: format!("resp_{}", s.id(11, 48)),
            reasoning: format!("rs_{}", s.id(12, 48)),
            message: format!("msg_{}", s.id(13, 48)),
        }
    }
}

fn summary_parts(s: &Script, opts: &Options) -> Vec<Value> {
    if opts.summary.is_none() {
        return Vec::new();
    }
    (0..s.steps.len())
        .map(|i| json!({ "type": "summary_text", "text": s.bold_step(i) }))
        .collect()
}

fn reasoning_item(s: &Script, opts: &Options, ids: &Ids, done: bool) -> Value {
    let summary = if done {
        summary_parts(s, opts)
    } else {
        Vec::new()
    };
    json!({ "id": ids.reasoning, "type": "reasoning", "summary": summary })
}

fn text_part(text: &str) -> Value {
    json!({ "type": "output_text", "annotations": [], "logprobs": [], "text": text })
}

fn message_item(s: &Script, ids: &Ids, done: bool) -> Value {
    let (status, content) = if done {
        ("completed", json!([text_part(&s.answer_text())]))
    } else {
        ("in_progress", json!([]))
    };
    json!({
        "id": ids.message,
        "type": "message",
        "status": status,
        "content": content,
        "role": "assistant",
    })
}

/// The response object; `answered = None` means still in progress (no output, no usage).
fn response(s: &Script, opts: &Options, ids: &Ids, answered: Option<u64>) -> Value {
    let (status, output, usage) = match answered {
        None => ("in_progress", json!([]), Value::Null),
        Some(answered) => {
            let reasoning = s.thought_tokens();
            let output = json!([
                reasoning_item(s, opts, ids, true),
                message_item(s, ids, true)
            ]);
            let usage = json!({
                "input_tokens": s.prompt_tokens,
                "input_tokens_details": { "cached_tokens": 0 },
                "output_tokens": answered + reasoning,
                "output_tokens_details": { "reasoning_tokens": reasoning },
                "total_tokens": s.prompt_tokens + answered + reasoning,
            });
            ("completed", output, usage)
        }
    };
    json!({
        "id": ids.response,
        "object": "response",
        "created_at": s.created,
        "status": status,
        "background": false,
        "error": null,
        "incomplete_details": null,
        "instructions": null,
        "max_output_tokens": null,
        "max_tool_calls": null,
        "model": s.model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {
            "effort": opts.effort.clone().unwrap_or_else(|| json!("medium")),
            "summary": opts.summary.clone().unwrap_or(Value::Null),
        },
        "service_tier": "default",
        "store": true,
        "temperature": 1.0,
        "text": { "format": { "type": "text" }, "verbosity": "medium" },
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": null,
        "metadata": {},
    })
}

/// Writes named events whose `event:` equals `type`, numbering them as it goes.
struct Events {
    frames: Frames,
    seq: u64,
}

impl Events {
    fn emit(&mut self, at: u64, kind: &str, mut body: Value) {
        body["type"] = json!(kind);
        body["sequence_number"] = json!(self.seq);
        self.seq += 1;
        self.frames.sse(at, Some(kind), &body.to_string());
    }
}

fn stream(s: &Script, opts: &Options, ids: &Ids) -> Plan {
    let mut e = Events {
        frames: Frames::new(s.knobs.sse_ids),
        seq: 0,
    };
    let (rs, msg) = (&ids.reasoning, &ids.message);
    e.emit(
        0,
        "response.created",
        json!({ "response": response(s, opts, ids, None) }),
    );
    e.emit(
        0,
        "response.in_progress",
        json!({ "response": response(s, opts, ids, None) }),
    );
    e.emit(
        0,
        "response.output_item.added",
        json!({ "output_index": 0, "item": reasoning_item(s, opts, ids, false) }),
    );
    if opts.summary.is_some() {
        let mut current: Option<usize> = None;
        for (at, piece) in s.think_pieces() {
            let delta =
                match piece {
                    ThinkPiece::Heading { index, heading } => {
                        if let Some(prev) = current {
                            close_part(&mut e, at, s, rs, prev);
                        }
                        current = Some(index);
                        let part = json!({ "type": "summary_text", "text": "" });
                        e.emit(at, "response.reasoning_summary_part.added", json!({
                        "item_id": rs, "output_index": 0, "summary_index": index, "part": part,
                    }));
                        if heading.is_empty() {
                            continue;
                        }
                        format!("**{heading}**\n\n")
                    }
                    ThinkPiece::Word(w) => w.to_owned(),
                };
            e.emit(at, "response.reasoning_summary_text.delta", json!({
                "item_id": rs, "output_index": 0, "summary_index": current.unwrap_or(0), "delta": delta,
            }));
        }
        if let Some(prev) = current {
            close_part(&mut e, s.think_ms, s, rs, prev);
        }
    }
    let t = s.think_ms;
    e.emit(
        t,
        "response.output_item.done",
        json!({ "output_index": 0, "item": reasoning_item(s, opts, ids, true) }),
    );
    e.emit(
        t,
        "response.output_item.added",
        json!({ "output_index": 1, "item": message_item(s, ids, false) }),
    );
    e.emit(
        t,
        "response.content_part.added",
        json!({
            "item_id": msg, "output_index": 1, "content_index": 0, "part": text_part(""),
        }),
    );
    for (i, token) in s.answer.iter().enumerate() {
        if s.fail_after() == Some(i) {
            e.frames.abort(s.answer_at(i));
        }
        e.emit(s.answer_at(i), "response.output_text.delta", json!({
            "item_id": msg, "output_index": 1, "content_index": 0, "delta": token, "logprobs": [],
        }));
    }
    let end = s.total_ms();
    let text = s.answer_text();
    e.emit(
        end,
        "response.output_text.done",
        json!({
            "item_id": msg, "output_index": 1, "content_index": 0, "text": text, "logprobs": [],
        }),
    );
    e.emit(
        end,
        "response.content_part.done",
        json!({
            "item_id": msg, "output_index": 1, "content_index": 0, "part": text_part(&text),
        }),
    );
    e.emit(
        end,
        "response.output_item.done",
        json!({ "output_index": 1, "item": message_item(s, ids, true) }),
    );
    e.emit(
        end,
        "response.completed",
        json!({ "response": response(s, opts, ids, Some(s.answer_tokens())) }),
    );
    e.frames.finish(SSE, s.knobs.headers_ms)
}

fn close_part(e: &mut Events, at: u64, s: &Script, rs: &str, index: usize) {
    let text = s.bold_step(index);
    e.emit(
        at,
        "response.reasoning_summary_text.done",
        json!({
            "item_id": rs, "output_index": 0, "summary_index": index, "text": text,
        }),
    );
    e.emit(
        at,
        "response.reasoning_summary_part.done",
        json!({
            "item_id": rs, "output_index": 0, "summary_index": index,
            "part": { "type": "summary_text", "text": text },
        }),
    );
}
