//! The OpenAI-shaped dataset formats, chat fine-tuning JSONL and openai/evals samples, and what
//! every dataset format checks first: the record ended whole and reads as a conversation.

use serde_json::{Map, Value, json};

use super::Skip;
use super::messages::{Conversation, Message, Part, Role, Tool, conversation};
use crate::capture::record::{CaptureRecord, Outcome};

/// The record's conversation, or why it makes no sample. `text_answer`: the format's target is a
/// string, so an answer of tool calls alone does not count.
pub(super) fn sample(record: &CaptureRecord, text_answer: bool) -> Result<Conversation, Skip> {
    if record.outcome != Outcome::Ok {
        return Err(Skip::Error);
    }
    if record.partial {
        return Err(Skip::Partial);
    }
    if record.truncated {
        return Err(Skip::Truncated);
    }
    let c = conversation(record);
    if !c.messages.iter().any(|m| m.role != Role::System) {
        return Err(Skip::NoMessages);
    }
    match &c.answer {
        None => Err(Skip::NoAnswer),
        Some(a) if text_answer && a.text().is_empty() => Err(Skip::NoAnswerText),
        Some(_) => Ok(c),
    }
}

/// The answer; [`sample`] made sure there is one.
pub(super) fn answer(c: &Conversation) -> Message {
    c.answer
        .clone()
        .unwrap_or_else(|| Message::new(Role::Assistant, String::new()))
}

/// OpenAI chat fine-tuning: `{"messages": [..., answer], "tools": [...]}`. Images go in user
/// messages as `image_url` parts (http(s) URLs or JPEG, PNG and WebP data URLs, what OpenAI's
/// vision fine-tuning takes); every tool result must answer a call, and every call name a tool
/// the request declared. With `reasoning`, the
/// answer carries `reasoning_content` (open-weight trainers' field; OpenAI's own validator
/// rejects unknown keys, so it is off by default).
pub fn chat(record: &CaptureRecord, reasoning: bool) -> Result<(Value, Conversation), Skip> {
    let c = sample(record, false)?;
    let fits = |m: &Message| {
        m.parts.iter().all(|p| match p {
            Part::Text(_) => true,
            Part::Image(url) => m.role == Role::User && url.as_deref().is_some_and(openai_image),
        })
    };
    if !c.messages.iter().chain(c.answer.iter()).all(fits) {
        return Err(Skip::Images);
    }
    if !c.tool_results_linked() {
        return Err(Skip::UnlinkedToolResult);
    }
    if !c.tools_declared() {
        return Err(Skip::UndeclaredTool);
    }
    let mut messages: Vec<Value> = c.messages.iter().map(openai_message).collect();
    let mut last = openai_message(&answer(&c));
    if reasoning && !c.reasoning.is_empty() {
        last["reasoning_content"] = c.reasoning.clone().into();
    }
    messages.push(last);
    let mut line = json!({"messages": messages});
    if !c.tools.is_empty() {
        line["tools"] = openai_tools(&c.tools);
    }
    Ok((line, c))
}

/// openai/evals: `{"input": [messages], "ideal": answer}` (plus `tools` when offered). Its
/// messages are text: a record with images is skipped.
pub fn evals(record: &CaptureRecord) -> Result<(Value, Conversation), Skip> {
    let c = sample(record, true)?;
    if c.messages
        .iter()
        .chain(c.answer.iter())
        .any(Message::has_images)
    {
        return Err(Skip::Images);
    }
    if !c.tool_results_linked() {
        return Err(Skip::UnlinkedToolResult);
    }
    let mut line = json!({
        "input": c.messages.iter().map(openai_message).collect::<Vec<_>>(),
        "ideal": answer(&c).text(),
    });
    if !c.tools.is_empty() {
        line["tools"] = openai_tools(&c.tools);
    }
    Ok((line, c))
}

/// What OpenAI's fine-tuning takes as an image: an http(s) URL or a JPEG, PNG or WebP data URL.
fn openai_image(url: &str) -> bool {
    url.starts_with("https://")
        || url.starts_with("http://")
        || ["jpeg", "png", "webp"]
            .iter()
            .any(|t| url.starts_with(&format!("data:image/{t};base64,")))
}

/// Tools in OpenAI's shape: `{"type": "function", "function": {name, description, parameters}}`.
pub(super) fn openai_tools(tools: &[Tool]) -> Value {
    tools
        .iter()
        .map(|t| {
            let mut f = json!({"name": t.name, "parameters": t.parameters});
            if let Some(d) = &t.description {
                f["description"] = d.clone().into();
            }
            json!({"type": "function", "function": f})
        })
        .collect()
}

/// A message in OpenAI's chat shape: content a string, or text and `image_url` parts when there
/// are images; an assistant message of tool calls alone has no `content`.
fn openai_message(m: &Message) -> Value {
    let mut o = Map::new();
    o.insert("role".into(), m.role.as_str().into());
    if m.has_images() {
        let parts = m.parts.iter().map(|p| match p {
            Part::Text(t) => json!({"type": "text", "text": t}),
            Part::Image(url) => json!({"type": "image_url", "image_url": {"url": url}}),
        });
        o.insert("content".into(), Value::Array(parts.collect()));
    } else if !m.parts.is_empty() || m.tool_calls.is_empty() {
        o.insert("content".into(), m.text().into());
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
    Value::Object(o)
}

/// `--dedupe`'s key: every message's role, text with runs of whitespace made one space and the
/// ends trimmed, images, tool calls' names and arguments (JSON re-serialised with sorted keys),
/// then the tools offered and the answer. Ids (of calls, results, requests) are left out.
pub fn dedupe_key(c: &Conversation) -> String {
    let mut key = String::new();
    let mut push = |piece: &str| {
        key.push_str(piece);
        key.push('\u{1f}');
    };
    for m in c.messages.iter().chain(c.answer.iter()) {
        push(m.role.as_str());
        for part in &m.parts {
            match part {
                Part::Text(t) => push(&t.split_whitespace().collect::<Vec<_>>().join(" ")),
                Part::Image(url) => push(url.as_deref().unwrap_or("image")),
            }
        }
        for call in &m.tool_calls {
            push(&call.name);
            push(&canonical_json(&call.arguments));
        }
        push("\u{1e}");
    }
    for t in &c.tools {
        push(&t.name);
        push(t.description.as_deref().unwrap_or_default());
        push(&t.parameters.to_string());
    }
    key
}

fn canonical_json(text: &str) -> String {
    serde_json::from_str::<Value>(text).map_or_else(|_| text.trim().to_owned(), |v| v.to_string())
}
