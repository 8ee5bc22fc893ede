//! Reading captured bodies into [`Message`]s, whatever the api (the tools offered are read in
//! `tools.rs`). The request's shape decides how it reads, so a gateway serving another
//! provider's format is read right whatever the route's api:
//!
//! - `messages` (OpenAI chat, Anthropic, Ollama chat), with a top-level `system` (Anthropic);
//!   content is a string or blocks (`text`, `input_text`, `output_text`, `image_url`, `image`,
//!   `input_image`, `tool_use`, `tool_result`; thinking is dropped); Ollama's `images`;
//!   `tool_calls` with arguments as a string (OpenAI) or an object (Ollama); `developer` reads
//!   as `system`.
//! - `input` (OpenAI Responses): a string, or items (messages, `function_call`,
//!   `function_call_output`), with `instructions` as the system message.
//! - `contents` (Gemini), with `systemInstruction`; role `model` reads as `assistant`; parts
//!   `text` (thoughts dropped), `inlineData`, `fileData`, `functionCall`, `functionResponse`.
//! - `prompt` (Ollama generate, legacy completions), with `system` and `images`.

use crate::apis::at::At;
use serde_json::{Map, Value};

use super::messages::{Message, Part, Role};
use crate::capture::record::{CaptureRecord, ToolCall};

/// The request's conversation; empty when the body is not JSON or has no shape known here.
pub fn request_messages(request: &Value) -> Vec<Message> {
    let Value::Object(body) = request else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        push_system(&mut out, body.get("system"));
        for m in messages {
            chat_message(&mut out, m);
        }
    } else if let Some(input) = body.get("input") {
        push_system(&mut out, body.get("instructions"));
        responses_input(&mut out, input);
    } else if let Some(contents) = body.get("contents") {
        let system = body
            .get("systemInstruction")
            .or_else(|| body.get("system_instruction"));
        push_system(&mut out, system);
        match contents {
            Value::Array(items) => items.iter().for_each(|c| gemini_content(&mut out, c)),
            other => gemini_content(&mut out, other),
        }
    } else if let Some(prompt) = body.get("prompt") {
        push_system(&mut out, body.get("system"));
        let mut m = Message::new(Role::User, text_of(prompt));
        ollama_images(&mut m, body.get("images"));
        out.push(m);
    }
    out.retain(|m| !m.is_empty());
    out
}

/// The answer as an assistant message: the reassembled text and tool calls, or, when those are
/// empty, what the upstream's JSON body holds. `None` when there is no answer at all.
pub fn answer(record: &CaptureRecord) -> Option<Message> {
    let response = record.response.as_ref()?;
    let mut message = Message::new(Role::Assistant, response.text.clone());
    message.tool_calls = response.tool_calls.clone();
    if message.is_empty() {
        message = response
            .body
            .as_ref()
            .and_then(|b| answer_from_body(&b.tree()))?;
    }
    Some(message)
}

fn answer_from_body(body: &Value) -> Option<Message> {
    let mut out = Vec::new();
    if let Some(message) = body.at("/choices/0/message") {
        chat_message(&mut out, message);
    } else if let Some(text) = body.at("/choices/0/text") {
        out.push(Message::new(Role::Assistant, text_of(text)));
    } else if let Some(output) = body.get("output") {
        responses_input(&mut out, output);
    } else if let Some(content) = body.at("/candidates/0/content") {
        gemini_content(&mut out, content);
    } else if let Some(message) = body.get("message") {
        chat_message(&mut out, message); // Ollama chat
    } else if body.get("content").is_some() {
        chat_message(&mut out, body); // Anthropic: the body is the message
    } else if let Some(text) = body.get("response").and_then(Value::as_str) {
        out.push(Message::new(Role::Assistant, text.to_owned())); // Ollama generate
    }
    // Everything the body said, as one assistant message.
    let mut answer = Message::new(Role::Assistant, String::new());
    for m in out.into_iter().filter(|m| m.role == Role::Assistant) {
        answer.parts.extend(m.parts);
        answer.tool_calls.extend(m.tool_calls);
    }
    (!answer.is_empty()).then_some(answer)
}

fn push_system(out: &mut Vec<Message>, system: Option<&Value>) {
    let Some(system) = system else { return };
    let text = match system {
        Value::Object(o) => o.get("parts").map(text_of).unwrap_or_default(),
        other => text_of(other),
    };
    if !text.is_empty() {
        out.push(Message::new(Role::System, text));
    }
}

/// A `messages` entry (OpenAI chat, Anthropic, Ollama).
fn chat_message(out: &mut Vec<Message>, value: &Value) {
    let Value::Object(m) = value else { return };
    let Some(role) = m.get("role").and_then(Value::as_str).and_then(Role::parse) else {
        return;
    };
    let mut message = Message::new(role, String::new());
    if role == Role::Tool {
        message.tool_call_id = str_field(m, "tool_call_id");
        message.name = str_field(m, "name").or_else(|| str_field(m, "tool_name"));
    }
    let mut tool_results = Vec::new();
    match m.get("content") {
        Some(Value::Array(blocks)) => {
            for block in blocks {
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => message.tool_calls.push(ToolCall {
                        id: block.get("id").map(text_of).unwrap_or_default(),
                        name: block.get("name").map(text_of).unwrap_or_default(),
                        arguments: block.get("input").map(json_text).unwrap_or_default(),
                    }),
                    Some("tool_result") => {
                        let mut result = Message::new(Role::Tool, String::new());
                        push_content(&mut result, block.get("content"));
                        result.tool_call_id = block.get("tool_use_id").map(text_of);
                        tool_results.push(result);
                    }
                    _ => push_block(&mut message, block),
                }
            }
        }
        other => push_content(&mut message, other),
    }
    ollama_images(&mut message, m.get("images"));
    if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
        for call in calls {
            let function = call.get("function").unwrap_or(call);
            message.tool_calls.push(ToolCall {
                id: call.get("id").map(text_of).unwrap_or_default(),
                name: function.get("name").map(text_of).unwrap_or_default(),
                arguments: function.get("arguments").map(json_text).unwrap_or_default(),
            });
        }
    }
    // Anthropic puts tool results inside a user message: they come first, as tool messages.
    let only_results = !tool_results.is_empty() && message.is_empty();
    out.extend(tool_results);
    if !only_results {
        out.push(message);
    }
}

/// Content that is a string or a list of blocks.
fn push_content(message: &mut Message, content: Option<&Value>) {
    match content {
        Some(Value::Array(blocks)) => blocks.iter().for_each(|b| push_block(message, b)),
        Some(other) => message.push_text(text_of(other)),
        None => {}
    }
}

/// A content block: text, or an image in any api's shape; other blocks (thinking, documents,
/// audio) are left out.
fn push_block(message: &mut Message, block: &Value) {
    match block.get("type").and_then(Value::as_str) {
        Some("image_url") => {
            let url = block.get("image_url").map(|u| match u {
                Value::Object(o) => o.get("url").map(text_of).unwrap_or_default(),
                other => text_of(other),
            });
            message
                .parts
                .push(Part::Image(url.filter(|u| !u.is_empty())));
        }
        Some("input_image") => {
            let url = block.get("image_url").and_then(Value::as_str);
            message.parts.push(Part::Image(url.map(str::to_owned)));
        }
        Some("image") => {
            let source = block.get("source");
            let url = match source.and_then(|s| s.get("type")).and_then(Value::as_str) {
                Some("base64") => source.and_then(|s| {
                    let media = s.get("media_type")?.as_str()?;
                    let data = s.get("data")?.as_str()?;
                    Some(format!("data:{media};base64,{data}"))
                }),
                Some("url") => source.and_then(|s| s.get("url")?.as_str().map(str::to_owned)),
                _ => None,
            };
            message.parts.push(Part::Image(url));
        }
        _ => message.push_text(block_text(block)),
    }
}

/// Ollama's `images`: base64 without a media type, which is read from the data's first bytes.
fn ollama_images(message: &mut Message, images: Option<&Value>) {
    for image in images.and_then(Value::as_array).into_iter().flatten() {
        let url = image.as_str().and_then(|data| {
            let media = [
                ("iVBORw0KGgo", "image/png"),
                ("/9j/", "image/jpeg"),
                ("R0lGOD", "image/gif"),
                ("UklGR", "image/webp"),
            ]
            .into_iter()
            .find(|(magic, _)| data.starts_with(magic))?
            .1;
            Some(format!("data:{media};base64,{data}"))
        });
        message.parts.push(Part::Image(url));
    }
}

/// Responses `input` (or a response's `output`).
fn responses_input(out: &mut Vec<Message>, input: &Value) {
    let items = match input {
        Value::Array(items) => items,
        other => {
            let text = text_of(other);
            if !text.is_empty() {
                out.push(Message::new(Role::User, text));
            }
            return;
        }
    };
    for item in items {
        match item.get("type").and_then(Value::as_str) {
            Some("function_call") => {
                let call = ToolCall {
                    id: item
                        .get("call_id")
                        .or_else(|| item.get("id"))
                        .map(text_of)
                        .unwrap_or_default(),
                    name: item.get("name").map(text_of).unwrap_or_default(),
                    arguments: item.get("arguments").map(json_text).unwrap_or_default(),
                };
                match out.last_mut() {
                    Some(last) if last.role == Role::Assistant => last.tool_calls.push(call),
                    _ => {
                        let mut m = Message::new(Role::Assistant, String::new());
                        m.tool_calls.push(call);
                        out.push(m);
                    }
                }
            }
            Some("function_call_output") => {
                let mut m = Message::new(Role::Tool, String::new());
                push_content(&mut m, item.get("output"));
                m.tool_call_id = item.get("call_id").map(text_of);
                out.push(m);
            }
            Some("message") | None => chat_message(out, item),
            Some(_) => {} // reasoning, web search calls, ...
        }
    }
}

/// A Gemini `contents` entry.
fn gemini_content(out: &mut Vec<Message>, content: &Value) {
    let role = content
        .get("role")
        .and_then(Value::as_str)
        .and_then(Role::parse);
    let mut message = Message::new(role.unwrap_or(Role::User), String::new());
    let parts = content.get("parts").and_then(Value::as_array);
    for part in parts.into_iter().flatten() {
        if let Some(call) = part.get("functionCall") {
            message.tool_calls.push(ToolCall {
                id: call.get("id").map(text_of).unwrap_or_default(),
                name: call.get("name").map(text_of).unwrap_or_default(),
                arguments: call
                    .get("args")
                    .map(json_text)
                    .unwrap_or_else(|| "{}".to_owned()),
            });
        } else if let Some(response) = part.get("functionResponse") {
            let mut m = Message::new(
                Role::Tool,
                response.get("response").map(json_text).unwrap_or_default(),
            );
            m.tool_call_id = response.get("id").map(text_of);
            m.name = response.get("name").map(text_of);
            out.push(m);
        } else if let Some(data) = part.get("inlineData").or_else(|| part.get("inline_data")) {
            let media = data.get("mimeType").or_else(|| data.get("mime_type"));
            let url = match (media.and_then(Value::as_str), data.get("data")) {
                (Some(m), Some(Value::String(d))) if m.starts_with("image/") => {
                    Some(format!("data:{m};base64,{d}"))
                }
                _ => None,
            };
            message.parts.push(Part::Image(url));
        } else if let Some(file) = part.get("fileData").or_else(|| part.get("file_data")) {
            let uri = file.get("fileUri").or_else(|| file.get("file_uri"));
            let url = uri
                .and_then(Value::as_str)
                .filter(|u| u.starts_with("https://") || u.starts_with("http://"));
            message.parts.push(Part::Image(url.map(str::to_owned)));
        } else if part.get("thought").and_then(Value::as_bool) != Some(true) {
            message.push_text(block_text(part));
        }
    }
    out.push(message);
}

fn str_field(m: &Map<String, Value>, key: &str) -> Option<String> {
    m.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// The text of a content block or part (`{"text": ...}`); other blocks have none.
fn block_text(block: &Value) -> String {
    match block {
        Value::String(s) => s.clone(),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            None | Some("text" | "input_text" | "output_text") => o
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            Some(_) => String::new(),
        },
        _ => String::new(),
    }
}

/// Text from a string, an array of blocks (joined by newlines), or a `{"parts": [...]}`.
pub(super) fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let mut text = String::new();
            for item in items {
                join_text(&mut text, &block_text(item));
            }
            text
        }
        Value::Object(o) if o.contains_key("parts") => {
            o.get("parts").map(text_of).unwrap_or_default()
        }
        Value::Object(_) => block_text(value),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Arguments or results as JSON text: strings as they are, anything else serialised.
fn json_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn join_text(into: &mut String, text: &str) {
    if text.is_empty() {
        return;
    }
    if !into.is_empty() {
        into.push('\n');
    }
    into.push_str(text);
}
