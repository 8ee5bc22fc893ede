//! The shared state every dialect writes into: phase, counters, labels and bounded reassembly.
//!
//! **Invariant:** the reassembled answer, the reasoning and all tool calls' arguments together
//! never exceed `max_text` bytes each (the arguments share one budget); past the bound they are
//! cut (on a char boundary) and marked truncated, while counters keep counting.

use serde::Serialize;

use super::label;
use super::signal::{Phase, Signal, UpstreamTimings, Usage};

/// At most this many tool calls are reassembled (later ones are still counted).
const MAX_TOOLS: usize = 128;

/// Counts of what passed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub reasoning_deltas: u64,
    pub reasoning_chars: u64,
    pub answer_deltas: u64,
    pub answer_chars: u64,
    pub tool_calls: u64,
    pub events: u64,
    /// Records that could not be read (bad JSON, oversized, invalid UTF-8 in JSON).
    pub ignored: u64,
}

/// One reassembled tool call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ToolCallRecord {
    /// The upstream's key for this call (index, item id or output index), for matching deltas.
    pub key: String,
    /// The call's own id as the upstream named it (`call_…`, `toolu_…`; what a tool result
    /// answers to), bounded; empty when it named none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// What the stream said, put back together (bounded).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Reassembly {
    pub answer: String,
    pub reasoning: String,
    pub tool_calls: Vec<ToolCallRecord>,
    pub labels: Vec<String>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    pub timings: Option<UpstreamTimings>,
    pub error: Option<String>,
    /// The upstream's id for this response (`chatcmpl-...`, `msg_...`, Gemini's `responseId`).
    pub response_id: Option<String>,
    /// The model that answered, as the upstream named it (Gemini's `modelVersion`).
    pub response_model: Option<String>,
    /// Some text was cut at the bound.
    pub truncated: bool,
}

/// Everything an interpreter knows so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub phase: Option<Phase>,
    pub counters: Counters,
    pub output: Reassembly,
}

/// The writer side used by dialects; signals queue in `out` until drained.
#[derive(Debug)]
pub struct Tally {
    pub(crate) summary: Summary,
    out: Vec<Signal>,
    max_text: usize,
    /// Call ids named before their call (an OpenAI chat chunk with the id, then one with the
    /// name), by key, until the call starts (bounded like the calls).
    early_ids: Vec<(String, String)>,
    /// Bytes of arguments kept over all tool calls (one `max_text` budget for them all).
    tool_bytes: usize,
    /// A record of the dialect's own shape was read (a chat chunk with `choices`, a typed
    /// Responses or Anthropic event, a Gemini candidate, an Ollama line with `done`): only then
    /// can a missing end mean a cut answer.
    pub(crate) shaped: bool,
}

impl Tally {
    pub fn new(max_text: usize) -> Self {
        Tally {
            summary: Summary {
                phase: None,
                counters: Counters::default(),
                output: Reassembly::default(),
            },
            out: Vec::new(),
            max_text,
            early_ids: Vec::new(),
            tool_bytes: 0,
            shaped: false,
        }
    }

    pub fn drain(&mut self) -> Vec<Signal> {
        std::mem::take(&mut self.out)
    }

    pub fn drain_into(&mut self, out: &mut Vec<Signal>) {
        // Hand over the buffer itself when `out` is empty: a waiting stream keeps no capacity.
        if out.is_empty() {
            std::mem::swap(out, &mut self.out);
        } else {
            out.append(&mut self.out);
        }
    }

    pub fn event(&mut self) {
        self.summary.counters.events += 1;
    }

    /// The record just read has the dialect's own shape.
    pub fn shaped(&mut self) {
        self.shaped = true;
    }

    pub fn ignored(&mut self) {
        self.summary.counters.ignored += 1;
    }

    /// Moves to `phase` unless already there or already terminal.
    pub fn phase(&mut self, phase: Phase) {
        let current = self.summary.phase;
        if current == Some(phase) || current.is_some_and(Phase::is_terminal) {
            return;
        }
        self.summary.phase = Some(phase);
        self.out.push(Signal::Phase(phase));
    }

    /// The upstream is alive but has produced nothing to show yet.
    pub fn waiting(&mut self) {
        if self.summary.phase.is_none() || self.summary.phase == Some(Phase::Queued) {
            self.phase(Phase::Waiting);
        }
    }

    pub fn reasoning(&mut self, text: &str) {
        self.phase(Phase::Thinking);
        let chars = text.chars().count();
        let c = &mut self.summary.counters;
        c.reasoning_deltas += 1;
        c.reasoning_chars += chars as u64;
        let max = self.max_text;
        let out = &mut self.summary.output;
        out.truncated |= push_bounded(&mut out.reasoning, text, max);
        self.out.push(Signal::ReasoningDelta { chars });
    }

    pub fn answer(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.phase(Phase::Generating);
        let chars = text.chars().count();
        let c = &mut self.summary.counters;
        c.answer_deltas += 1;
        c.answer_chars += chars as u64;
        let max = self.max_text;
        let out = &mut self.summary.output;
        out.truncated |= push_bounded(&mut out.answer, text, max);
        self.out.push(Signal::AnswerDelta { chars });
    }

    /// A tool call started; `key` matches later argument deltas, `id` is the call's own id.
    pub fn tool_call(&mut self, key: &str, id: Option<&str>, name: &str) {
        self.phase(Phase::Tool);
        self.summary.counters.tool_calls += 1;
        let name = label::clean(name).unwrap_or_else(|| "tool".to_owned());
        let calls = &mut self.summary.output.tool_calls;
        let early = match id {
            Some(_) => None,
            None => self
                .early_ids
                .iter()
                .position(|(k, _)| k == key)
                .map(|at| self.early_ids.swap_remove(at).1),
        };
        if calls.len() < MAX_TOOLS {
            calls.push(ToolCallRecord {
                key: key.to_owned(),
                id: tool_id(id.or(early.as_deref())),
                name: name.clone(),
                arguments: String::new(),
            });
        }
        self.out.push(Signal::ToolCall { name });
    }

    /// The call `key` is named `id` by a chunk that starts no call: kept for the call when it
    /// has none yet, or until the call starts.
    pub fn tool_id(&mut self, key: &str, id: &str) {
        let out = &mut self.summary.output;
        match out.tool_calls.iter_mut().rev().find(|t| t.key == key) {
            Some(call) if call.id.is_empty() => call.id = tool_id(Some(id)),
            Some(_) => {}
            None if self.early_ids.len() < MAX_TOOLS
                && !self.early_ids.iter().any(|(k, _)| k == key) =>
            {
                self.early_ids.push((key.to_owned(), tool_id(Some(id))));
            }
            None => {}
        }
    }

    /// The response's id and model, the first time the upstream names them (bounded, cleaned).
    pub fn response_ids(
        &mut self,
        id: Option<&serde_json::Value>,
        model: Option<&serde_json::Value>,
    ) {
        let out = &mut self.summary.output;
        set_once(&mut out.response_id, id);
        set_once(&mut out.response_model, model);
    }

    /// The id of the latest call under `key` (empty when it has none), if there is one.
    pub fn tool_id_of(&self, key: &str) -> Option<&str> {
        let calls = &self.summary.output.tool_calls;
        calls
            .iter()
            .rev()
            .find(|t| t.key == key)
            .map(|t| t.id.as_str())
    }

    /// Appends to the latest call under `key`, within the budget all calls' arguments share.
    pub fn tool_args(&mut self, key: &str, delta: &str) {
        let room = self.max_text.saturating_sub(self.tool_bytes);
        let out = &mut self.summary.output;
        if let Some(call) = out.tool_calls.iter_mut().rev().find(|t| t.key == key) {
            let before = call.arguments.len();
            out.truncated |= push_bounded(&mut call.arguments, delta, before + room);
            self.tool_bytes += call.arguments.len() - before;
        }
    }

    /// Emits a cleaned label unless it repeats the previous one.
    pub fn label(&mut self, text: &str) {
        let Some(label) = label::clean(text) else {
            return;
        };
        let labels = &mut self.summary.output.labels;
        if labels.last() == Some(&label) {
            return;
        }
        if labels.len() < MAX_TOOLS {
            labels.push(label.clone());
        }
        self.out.push(Signal::Label(label));
    }

    pub fn usage(&mut self, usage: Usage) {
        if usage == Usage::default() || self.summary.output.usage == Some(usage) {
            return;
        }
        self.summary.output.usage = Some(usage);
        self.out.push(Signal::Usage(usage));
    }

    pub fn timings(&mut self, timings: UpstreamTimings) {
        if timings == UpstreamTimings::default() {
            return;
        }
        self.summary.output.timings = Some(timings);
        self.out.push(Signal::Timings(timings));
    }

    pub fn finish(&mut self, reason: &str) {
        let reason: String = reason
            .chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect();
        if self.summary.output.finish_reason.as_deref() == Some(reason.as_str()) {
            return;
        }
        self.summary.output.finish_reason = Some(reason.clone());
        self.out.push(Signal::Finish { reason });
    }

    pub fn error(&mut self, message: &str) {
        let mut message = message.to_owned();
        cut(&mut message, 1024);
        self.summary.output.error = Some(message.clone());
        self.out.push(Signal::UpstreamError { message });
        self.phase(Phase::Error);
    }

    pub fn done(&mut self) {
        self.phase(Phase::Done);
    }
}

/// Appends within `max` bytes; returns true if anything was cut.
/// Sets `slot` from a JSON string the first time one comes (at most 256 chars, no controls).
pub fn set_once(slot: &mut Option<String>, v: Option<&serde_json::Value>) {
    if slot.is_none()
        && let Some(s) = v
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
    {
        *slot = Some(printable_prefix(s));
    }
}

/// `s` without control characters, at most 256 chars. An id or model name is almost always
/// short printable ASCII: that is copied whole (the char-by-char filter cost about 1,300
/// instructions per name, a twentieth of building a capture record).
fn printable_prefix(s: &str) -> String {
    if s.len() <= 256 && s.bytes().all(|b| (b' '..b'\x7f').contains(&b)) {
        return s.to_owned();
    }
    s.chars().filter(|c| !c.is_control()).take(256).collect()
}

fn push_bounded(s: &mut String, text: &str, max: usize) -> bool {
    let room = max.saturating_sub(s.len());
    if text.len() <= room {
        s.push_str(text);
        return false;
    }
    let mut end = room;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    s.push_str(&text[..end]);
    true
}

fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Reads a JSON number (or numeric string) as u64.
pub fn num(v: Option<&serde_json::Value>) -> Option<u64> {
    let v = v?;
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// The text of an upstream error value: `{"message":..}`, a bare string, or the JSON itself.
pub fn error_message(v: &serde_json::Value) -> String {
    if let Some(s) = v.as_str() {
        return s.to_owned();
    }
    let msg = v.get("message").and_then(|m| m.as_str());
    let kind = ["code", "type", "status"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(|k| k.as_str()))
        .find(|k| *k != "error");
    match (msg, kind) {
        (Some(m), Some(k)) => format!("{k}: {m}"),
        (Some(m), None) => m.to_owned(),
        _ => v.to_string(),
    }
}

/// The longest tool-call id kept (ids are short; a hostile upstream's is cut, not stored whole).
const MAX_TOOL_ID: usize = 256;

/// A call id as kept: bounded at a character boundary, empty when there is none.
pub fn tool_id(id: Option<&str>) -> String {
    let id = id.unwrap_or_default();
    let mut end = id.len().min(MAX_TOOL_ID);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    id[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_printable_chars_up_to_256() {
        let slow =
            |s: &str| -> String { s.chars().filter(|c| !c.is_control()).take(256).collect() };
        let long = "m".repeat(300);
        let long_wide = "é".repeat(200);
        for s in [
            "gpt-4o-2024-08-06",
            "chatcmpl-abc 123~",
            "a\tb\nc\x7fd\u{85}e",
            "del\x7fonly",
            "c1\u{85}control",
            &"é".repeat(100),
            &"y".repeat(257),
            "模型-name",
            &long,
            &long_wide,
            &"x".repeat(256),
            " ",
        ] {
            assert_eq!(printable_prefix(s), slow(s), "{s:?}");
        }
        let mut slot = None;
        set_once(&mut slot, Some(&serde_json::json!("a\u{0}b")));
        assert_eq!(slot.as_deref(), Some("ab"));
        set_once(&mut slot, Some(&serde_json::json!("other")));
        assert_eq!(slot.as_deref(), Some("ab"), "set once only");
    }

    #[test]
    fn bounded_text_and_terminal_phases() {
        let mut t = Tally::new(2);
        t.answer("héllo");
        assert_eq!(t.summary.output.answer, "h");
        assert!(t.summary.output.truncated);
        t.done();
        t.reasoning("late");
        assert_eq!(t.summary.phase, Some(Phase::Done));
        assert_eq!(t.summary.counters.reasoning_chars, 4);
    }

    #[test]
    fn all_calls_arguments_share_one_budget() {
        let mut t = Tally::new(10);
        for key in ["0", "1", "2"] {
            t.tool_call(key, None, "f");
            t.tool_args(key, "abcdef");
        }
        let args: Vec<&str> = t
            .summary
            .output
            .tool_calls
            .iter()
            .map(|c| c.arguments.as_str())
            .collect();
        assert_eq!(args, ["abcdef", "abcd", ""]);
        assert!(t.summary.output.truncated);
        assert_eq!(t.summary.counters.tool_calls, 3);
    }
}
