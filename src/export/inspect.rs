//! Inspect AI samples: `{"input", "target", "id", "metadata"}`, loaded by Inspect's
//! `json_dataset`. The id is the request id (`id#attempt` for a retry); the metadata carries the
//! record's figures, the tools offered, the answer's reasoning and the feedback given.

use serde_json::{Map, Value, json};

use super::Skip;
use super::jsonl::{answer, openai_tools, sample};
use super::messages::{Conversation, Message, Part, Role};
use crate::capture::record::CaptureRecord;
use crate::store::Feedback;

/// The line id: the request id, or `id#attempt` for a retry.
pub fn line_id(record: &CaptureRecord) -> String {
    if record.attempt > 1 {
        format!("{}#{}", record.id, record.attempt)
    } else {
        record.id.clone()
    }
}

/// The input is a plain string when the conversation is a single user message of text; images
/// are `{"type": "image", "image": URL}` content parts (in any message, as Inspect allows).
pub fn inspect(
    record: &CaptureRecord,
    feedback: Option<&Feedback>,
) -> Result<(Value, Conversation), Skip> {
    let c = sample(record, true)?;
    let unknown_image = |m: &Message| m.parts.iter().any(|p| matches!(p, Part::Image(None)));
    if c.messages.iter().any(unknown_image) {
        return Err(Skip::Images);
    }
    let input = match c.messages.as_slice() {
        [only] if only.role == Role::User && only.tool_calls.is_empty() && !only.has_images() => {
            Value::String(only.text())
        }
        _ => Value::Array(c.messages.iter().map(inspect_message).collect()),
    };
    let line = json!({
        "input": input,
        "target": answer(&c).text(),
        "id": line_id(record),
        "metadata": metadata(record, &c, feedback),
    });
    Ok((line, c))
}

/// A message in Inspect's `ChatMessage` shape: tool calls carry parsed `arguments` (an object;
/// text that is not one goes to `parse_error`) and tool messages name their `function`.
fn inspect_message(m: &Message) -> Value {
    let mut o = Map::new();
    o.insert("role".into(), m.role.as_str().into());
    let content = if m.has_images() {
        let parts = m.parts.iter().map(|p| match p {
            Part::Text(t) => json!({"type": "text", "text": t}),
            Part::Image(url) => json!({"type": "image", "image": url}),
        });
        Value::Array(parts.collect())
    } else {
        m.text().into()
    };
    o.insert("content".into(), content);
    if !m.tool_calls.is_empty() {
        let calls = m.tool_calls.iter().map(|c| {
            let mut call = Map::new();
            call.insert("id".into(), c.id.clone().into());
            call.insert("function".into(), c.name.clone().into());
            call.insert("type".into(), "function".into());
            let args = match serde_json::from_str::<Value>(&c.arguments) {
                Ok(args @ Value::Object(_)) => args,
                _ if c.arguments.trim().is_empty() => json!({}),
                _ => {
                    call.insert("parse_error".into(), c.arguments.clone().into());
                    json!({})
                }
            };
            call.insert("arguments".into(), args);
            Value::Object(call)
        });
        o.insert("tool_calls".into(), Value::Array(calls.collect()));
    }
    if let Some(id) = &m.tool_call_id {
        o.insert("tool_call_id".into(), id.clone().into());
    }
    if let Some(name) = &m.name {
        o.insert("function".into(), name.clone().into());
    }
    Value::Object(o)
}

fn metadata(r: &CaptureRecord, c: &Conversation, feedback: Option<&Feedback>) -> Value {
    let t = &r.timings;
    let answer_calls: Vec<Value> = c
        .answer
        .iter()
        .flat_map(|a| &a.tool_calls)
        .map(|c| json!({"id": c.id, "function": c.name, "arguments": c.arguments}))
        .collect();
    json!({
        "request_id": r.id,
        "route": r.route,
        "model": r.model,
        "api": r.api,
        "outcome": r.outcome.as_str(),
        "attempt": r.attempt,
        "started_at": super::csv::rfc3339_millis(r.started_at_ms),
        "streamed": r.streamed,
        "tier": r.tier,
        "client_status": r.client_status,
        "upstream_status": r.upstream_status,
        "first_feedback_ms": t.first_feedback_ms,
        "first_reasoning_ms": t.first_reasoning_ms,
        "first_token_ms": t.first_token_ms,
        "longest_silence_ms": t.longest_silence_ms,
        "done_ms": t.done_ms,
        "overhead_ms": t.overhead_ms,
        "upstream_ms": t.upstream_ms,
        "upstream_headers_ms": t.upstream_headers_ms,
        "usage": r.usage.map(|u| json!({
            "input_tokens": u.input, "output_tokens": u.output, "reasoning_tokens": u.reasoning,
        })),
        "finish_reason": r.response.as_ref().and_then(|x| x.finish_reason.clone()),
        "reasoning": (!c.reasoning.is_empty()).then(|| c.reasoning.clone()),
        "tools": (!c.tools.is_empty()).then(|| openai_tools(&c.tools)),
        "answer_tool_calls": answer_calls,
        "feedback": feedback.map(|f| json!({"score": f.score, "label": f.label})),
    })
}
