//! Conversations out of captured bodies: the request's messages and the answer, in one neutral
//! shape that every export format renders its own way.
//!
//! The request's shape decides how it reads, so a gateway serving another provider's format is
//! read right whatever the route's api:
//!
//! - `messages` (OpenAI chat, Anthropic, Ollama chat), with a top-level `system` (Anthropic);
//!   content is a string or blocks (`text`, `input_text`, `output_text`, `tool_use`,
//!   `tool_result`; images and thinking are dropped); `tool_calls` on assistant messages with
//!   arguments as a string (OpenAI) or an object (Ollama); `developer` reads as `system`.
//! - `input` (OpenAI Responses): a string, or items (messages, `function_call`,
//!   `function_call_output`), with `instructions` as the system message.
//! - `contents` (Gemini), with `systemInstruction`; role `model` reads as `assistant`; parts
//!   `text` (thoughts dropped), `functionCall`, `functionResponse`.
//! - `prompt` (Ollama generate, legacy completions), with `system`.

use serde_json::{Map, Value};

use crate::capture::record::{CaptureRecord, ToolCall};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        match text {
            "system" | "developer" => Some(Role::System),
            "user" => Some(Role::User),
            "assistant" | "model" => Some(Role::Assistant),
            "tool" | "function" | "ipython" => Some(Role::Tool),
            _ => None,
        }
    }
}

/// One message: text content, tool calls (assistant) or the call answered (tool).
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    /// For tool messages: the call this answers, when the api says.
    pub tool_call_id: Option<String>,
    /// For tool messages: the function's name, when the api says.
    pub name: Option<String>,
}

impl Message {
    fn new(role: Role, content: String) -> Message {
        Message {
            role,
            content,
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.content.is_empty() && self.tool_calls.is_empty() && self.role != Role::Tool
    }
}

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
        let text = text_of(prompt);
        if !text.is_empty() {
            out.push(Message::new(Role::User, text));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

/// A record's conversation: the request's messages and the answer, with ids given to tool calls
/// that had none (`call_<n>`, numbered across both, so tool messages and calls stay distinct).
#[derive(Clone, Debug, PartialEq)]
pub struct Conversation {
    pub messages: Vec<Message>,
    pub answer: Option<Message>,
}

pub fn conversation(record: &CaptureRecord) -> Conversation {
    let mut messages = record
        .request
        .as_ref()
        .map(request_messages)
        .unwrap_or_default();
    let mut answer = answer(record);
    let calls = messages
        .iter_mut()
        .chain(answer.iter_mut())
        .flat_map(|m| m.tool_calls.iter_mut());
    for (n, call) in calls.enumerate() {
        if call.id.is_empty() {
            call.id = format!("call_{n}");
        }
    }
    Conversation { messages, answer }
}

/// The answer as an assistant message: the reassembled text and tool calls, or, when those are
/// empty, what the upstream's JSON body holds. `None` when there is no answer at all.
pub fn answer(record: &CaptureRecord) -> Option<Message> {
    let response = record.response.as_ref()?;
    let mut message = Message::new(Role::Assistant, response.text.clone());
    message.tool_calls = response.tool_calls.clone();
    if message.is_empty() {
        message = response.body.as_ref().and_then(answer_from_body)?;
    }
    Some(message)
}

fn answer_from_body(body: &Value) -> Option<Message> {
    let mut out = Vec::new();
    if let Some(message) = body.pointer("/choices/0/message") {
        chat_message(&mut out, message);
    } else if let Some(text) = body.pointer("/choices/0/text") {
        out.push(Message::new(Role::Assistant, text_of(text)));
    } else if let Some(output) = body.get("output") {
        responses_input(&mut out, output);
    } else if let Some(content) = body.pointer("/candidates/0/content") {
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
        join_text(&mut answer.content, &m.content);
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
                        let mut result = Message::new(
                            Role::Tool,
                            block.get("content").map(text_of).unwrap_or_default(),
                        );
                        result.tool_call_id = block.get("tool_use_id").map(text_of);
                        tool_results.push(result);
                    }
                    _ => join_text(&mut message.content, &block_text(block)),
                }
            }
        }
        Some(other) => message.content = text_of(other),
        None => {}
    }
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
                let mut m = Message::new(
                    Role::Tool,
                    item.get("output").map(text_of).unwrap_or_default(),
                );
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
        } else if part.get("thought").and_then(Value::as_bool) != Some(true) {
            join_text(&mut message.content, &block_text(part));
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
fn text_of(value: &Value) -> String {
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

fn join_text(into: &mut String, text: &str) {
    if text.is_empty() {
        return;
    }
    if !into.is_empty() {
        into.push('\n');
    }
    into.push_str(text);
}
