//! The JSONL dataset formats: one JSON object per record, built from its [`Conversation`].

use serde_json::{Map, Value, json};

use super::Skip;
use super::messages::{Conversation, Message, Role, conversation};
use crate::capture::record::{CaptureRecord, Outcome};

/// The record's conversation, or why it makes no sample. `text_answer`: the format's target is a
/// string, so an answer of tool calls alone does not count.
fn sample(record: &CaptureRecord, text_answer: bool) -> Result<(Vec<Message>, Message), Skip> {
    if record.outcome != Outcome::Ok || record.partial || record.truncated {
        return Err(Skip::Incomplete);
    }
    let Conversation { messages, answer } = conversation(record);
    if !messages.iter().any(|m| m.role != Role::System) {
        return Err(Skip::NoMessages);
    }
    match answer {
        Some(a) if !text_answer || !a.content.is_empty() => Ok((messages, a)),
        _ => Err(Skip::NoAnswer),
    }
}

/// OpenAI chat fine-tuning: `{"messages": [..., answer]}`.
pub fn chat(record: &CaptureRecord) -> Result<Value, Skip> {
    let (mut messages, answer) = sample(record, false)?;
    messages.push(answer);
    Ok(json!({"messages": messages.iter().map(openai_message).collect::<Vec<_>>()}))
}

/// openai/evals: `{"input": [messages], "ideal": answer}`.
pub fn evals(record: &CaptureRecord) -> Result<Value, Skip> {
    let (messages, answer) = sample(record, true)?;
    Ok(json!({
        "input": messages.iter().map(openai_message).collect::<Vec<_>>(),
        "ideal": answer.content,
    }))
}

/// Inspect AI: `{"input", "target", "id", "metadata"}`; the input is a plain string when the
/// conversation is a single user message.
pub fn inspect(record: &CaptureRecord) -> Result<Value, Skip> {
    let (messages, answer) = sample(record, true)?;
    let input = match messages.as_slice() {
        [only] if only.role == Role::User && only.tool_calls.is_empty() => {
            Value::String(only.content.clone())
        }
        _ => Value::Array(messages.iter().map(inspect_message).collect()),
    };
    let id = if record.attempt > 1 {
        format!("{}#{}", record.id, record.attempt)
    } else {
        record.id.clone()
    };
    Ok(json!({
        "input": input,
        "target": answer.content,
        "id": id,
        "metadata": inspect_metadata(record),
    }))
}

/// A message in OpenAI's chat shape. An assistant message of tool calls alone has no `content`.
fn openai_message(m: &Message) -> Value {
    let mut o = Map::new();
    o.insert("role".into(), m.role.as_str().into());
    if !m.content.is_empty() || m.tool_calls.is_empty() {
        o.insert("content".into(), m.content.clone().into());
    }
    if !m.tool_calls.is_empty() {
        let calls = m.tool_calls.iter().map(|c| {
            json!({"id": c.id, "type": "function",
                   "function": {"name": c.name, "arguments": c.arguments}})
        });
        o.insert("tool_calls".into(), Value::Array(calls.collect()));
    }
    if let Some(id) = &m.tool_call_id {
        o.insert("tool_call_id".into(), id.clone().into());
    }
    if let Some(name) = &m.name {
        o.insert("name".into(), name.clone().into());
    }
    Value::Object(o)
}

/// A message in Inspect's `ChatMessage` shape: tool calls carry parsed `arguments` (an object;
/// text that is not one goes to `parse_error`) and tool messages name their `function`.
fn inspect_message(m: &Message) -> Value {
    let mut o = Map::new();
    o.insert("role".into(), m.role.as_str().into());
    o.insert("content".into(), m.content.clone().into());
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

fn inspect_metadata(r: &CaptureRecord) -> Value {
    let t = &r.timings;
    json!({
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
    })
}
