//! A record's conversation in one neutral shape that every export format renders its own way:
//! messages with text and image parts, tool calls linked to their results, the tools offered,
//! the answer and its reasoning. `read.rs` reads the request and answer bodies of each api;
//! this file puts them together the way the provider saw them.

use serde_json::Value;

use super::{read, tools};
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

    pub(super) fn parse(text: &str) -> Option<Role> {
        match text {
            "system" | "developer" => Some(Role::System),
            "user" => Some(Role::User),
            "assistant" | "model" => Some(Role::Assistant),
            "tool" | "function" | "ipython" => Some(Role::Tool),
            _ => None,
        }
    }
}

/// A piece of a message's content, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    Text(String),
    /// An image as an `http(s)` URL or a `data:` URL; `None` when the request named it in a way
    /// no export can carry (an uploaded file's id).
    Image(Option<String>),
}

/// One message: content parts, tool calls (assistant) or the call answered (tool).
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
    pub tool_calls: Vec<ToolCall>,
    /// For tool messages: the call this answers (given by the api, or linked here).
    pub tool_call_id: Option<String>,
    /// For tool messages: the function's name, when the api says.
    pub name: Option<String>,
}

impl Message {
    pub(super) fn new(role: Role, text: String) -> Message {
        let mut m = Message {
            role,
            parts: Vec::new(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        };
        m.push_text(text);
        m
    }

    pub(super) fn push_text(&mut self, text: String) {
        if !text.is_empty() {
            self.parts.push(Part::Text(text));
        }
    }

    /// The text parts, joined by newlines (images left out).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for part in &self.parts {
            if let Part::Text(t) = part {
                read::join_text(&mut out, t);
            }
        }
        out
    }

    pub fn has_images(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Image(_)))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.parts.is_empty() && self.tool_calls.is_empty() && self.role != Role::Tool
    }
}

/// A tool the request offered the model.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments (`{"type": "object"}` when the request gave none).
    pub parameters: Value,
}

/// A record's conversation: the request's messages, the tools offered, the answer and the
/// answer's reasoning.
#[derive(Clone, Debug, PartialEq)]
pub struct Conversation {
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    pub answer: Option<Message>,
    /// The answer's reasoning (thinking, summaries) as stored, redacted; empty when none.
    pub reasoning: String,
}

impl Conversation {
    /// Whether every tool message answers a call made earlier in the conversation.
    pub fn tool_results_linked(&self) -> bool {
        let mut calls = std::collections::HashSet::new();
        for m in &self.messages {
            calls.extend(m.tool_calls.iter().map(|c| c.id.as_str()));
            if m.role == Role::Tool
                && !m
                    .tool_call_id
                    .as_deref()
                    .is_some_and(|id| calls.contains(id))
            {
                return false;
            }
        }
        true
    }

    /// Whether every tool call (in the request and the answer) names a tool the request offered.
    pub fn tools_declared(&self) -> bool {
        self.messages
            .iter()
            .chain(self.answer.iter())
            .flat_map(|m| &m.tool_calls)
            .all(|c| self.tools.iter().any(|t| t.name == c.name))
    }
}

/// The record's conversation, put together as the provider saw it:
///
/// - tool calls without ids get `call_<n>` (numbered across the conversation, so the same
///   record always gets the same ids), and tool results without ids (Gemini `functionResponse`,
///   Ollama `tool` messages) are linked to the earliest unanswered call of the same name (or
///   the earliest unanswered call when the result names none), taking its id and name;
/// - Anthropic joins consecutive turns of the same role into one turn, and continues a trailing
///   assistant message (a prefill) with its answer: both are merged here the same way.
pub fn conversation(record: &CaptureRecord) -> Conversation {
    let request = record.request.as_ref().map(|r| r.tree());
    let request = request.as_deref();
    let mut messages = request.map(read::request_messages).unwrap_or_default();
    let tools = request.map(tools::tools).unwrap_or_default();
    let mut answer = read::answer(record);
    let calls = messages
        .iter_mut()
        .chain(answer.iter_mut())
        .flat_map(|m| m.tool_calls.iter_mut());
    for (n, call) in calls.enumerate() {
        if call.id.is_empty() {
            call.id = format!("call_{n}");
        }
    }
    link_tool_results(&mut messages);
    if record.api == "anthropic" {
        messages = merge_turns(messages);
        if let Some(a) = answer.take() {
            answer = Some(continue_prefill(&mut messages, a));
        }
    }
    let reasoning = record
        .response
        .as_ref()
        .map(|r| r.reasoning.clone())
        .unwrap_or_default();
    Conversation {
        messages,
        tools,
        answer,
        reasoning,
    }
}

fn link_tool_results(messages: &mut [Message]) {
    // Calls not answered yet, in the order they were made: (id, name).
    let mut pending: Vec<(String, String)> = Vec::new();
    for m in messages.iter_mut() {
        if m.role == Role::Assistant {
            pending.extend(m.tool_calls.iter().map(|c| (c.id.clone(), c.name.clone())));
            continue;
        }
        if m.role != Role::Tool {
            continue;
        }
        let at = match &m.tool_call_id {
            Some(id) => pending.iter().position(|(p, _)| p == id),
            None => m
                .name
                .as_ref()
                .and_then(|name| pending.iter().position(|(_, n)| n == name))
                .or_else(|| (!pending.is_empty()).then_some(0)),
        };
        if let Some(at) = at {
            let (id, name) = pending.remove(at);
            m.tool_call_id.get_or_insert(id);
            m.name.get_or_insert(name);
        }
    }
}

/// Consecutive user turns (or assistant turns) become one, their parts in order; tool results
/// stay messages of their own.
fn merge_turns(messages: Vec<Message>) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(messages.len());
    for m in messages {
        match out.last_mut() {
            Some(last) if last.role == m.role && matches!(m.role, Role::User | Role::Assistant) => {
                last.parts.extend(m.parts);
                last.tool_calls.extend(m.tool_calls);
            }
            _ => out.push(m),
        }
    }
    out
}

/// A trailing assistant message is the start of the answer: the answer's text continues its
/// last text part directly (no separator), as the model continued it.
fn continue_prefill(messages: &mut Vec<Message>, answer: Message) -> Message {
    if messages.last().is_none_or(|m| m.role != Role::Assistant) {
        return answer;
    }
    let Some(mut prefill) = messages.pop() else {
        return answer;
    };
    let mut parts = answer.parts;
    if let (Some(Part::Text(end)), Some(Part::Text(first))) =
        (prefill.parts.last_mut(), parts.first())
    {
        end.push_str(first);
        parts.remove(0);
    }
    prefill.parts.extend(parts);
    prefill.tool_calls.extend(answer.tool_calls);
    prefill
}
