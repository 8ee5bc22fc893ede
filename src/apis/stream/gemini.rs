//! Gemini `streamGenerateContent` reading: each record is a whole GenerateContentResponse
//! (SSE `data:` or a streamed JSON array element); `thought: true` parts, usage, finish reason.

use crate::apis::at::At;
use serde_json::Value;

use super::label;
use super::signal::Usage;
use super::tally::{Tally, error_message, num};

#[derive(Debug, Default)]
pub struct Gemini {
    /// The reasoning text seen so far ended a paragraph (or none was seen): a new step may start.
    at_paragraph: bool,
    seen_thought: bool,
}

impl Gemini {
    pub fn on_record(&mut self, t: &mut Tally, data: &[u8]) {
        t.event();
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            t.ignored();
            return;
        };
        // An error may arrive as `{"error": {...}}` or as a one-element array of it.
        let v = match v {
            Value::Array(mut items) if items.len() == 1 => items.swap_remove(0),
            other => other,
        };
        t.response_ids(v.get("responseId"), v.get("modelVersion"));
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            t.error(&error_message(err));
            return;
        }
        t.waiting();
        if ["candidates", "usageMetadata", "promptFeedback"]
            .iter()
            .any(|k| v.get(*k).is_some())
        {
            t.shaped();
        }
        let candidate = v
            .get("candidates")
            .and_then(Value::as_array)
            .and_then(|c| c.first());
        if let Some(c) = candidate {
            let parts = c.at("/content/parts").and_then(Value::as_array);
            for part in parts.into_iter().flatten() {
                self.part(t, part);
            }
            if let Some(reason) = c.get("finishReason").and_then(Value::as_str) {
                t.finish(reason);
            }
        }
        if let Some(reason) = v.at("/promptFeedback/blockReason").and_then(Value::as_str) {
            t.finish(reason);
        }
        if let Some(u) = v.get("usageMetadata").filter(|u| u.is_object()) {
            t.usage(Usage {
                input: num(u.get("promptTokenCount")),
                output: num(u.get("candidatesTokenCount")),
                reasoning: num(u.get("thoughtsTokenCount")),
            });
        }
    }

    /// Gemini sends no end marker: a stream that closed after a finish reason is done.
    pub fn on_end(&mut self, t: &mut Tally) {
        if t.summary.output.finish_reason.is_some() {
            t.done();
        }
    }

    fn part(&mut self, t: &mut Tally, part: &Value) {
        let text = part.get("text").and_then(Value::as_str);
        if part.get("thought").and_then(Value::as_bool) == Some(true) {
            let text = text.unwrap_or("");
            t.reasoning(text);
            let heading = label::bold_heading(text);
            // A plain first line is a step's heading only when the part holds it whole (a
            // newline follows): a part that is one word of a streamed body is not a heading,
            // even right after a paragraph break.
            let first_line = || {
                let trimmed = text.trim_start();
                let whole_line = trimmed.contains('\n');
                (whole_line && (self.at_paragraph || !self.seen_thought))
                    .then(|| trimmed.lines().next().and_then(label::clean))
                    .flatten()
            };
            if let Some(l) = heading.or_else(first_line) {
                t.label(&l);
            }
            self.seen_thought = true;
            self.at_paragraph = text.ends_with("\n\n") || text.ends_with("\n");
            return;
        }
        if let Some(call) = part.get("functionCall") {
            let name = call
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("function");
            let key = t.summary.counters.tool_calls.to_string();
            t.tool_call(&key, call.get("id").and_then(Value::as_str), name);
            if let Some(args) = call.get("args") {
                t.tool_args(&key, &args.to_string());
            }
        } else if part.get("executableCode").is_some() {
            let key = t.summary.counters.tool_calls.to_string();
            t.tool_call(&key, None, "code_execution");
        }
        if let Some(text) = text {
            t.answer(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::apis::Api;
    use crate::apis::stream::{Phase, StreamInterpreter};

    const PATH: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";

    #[test]
    fn sse_thoughts_and_usage() {
        let mut i =
            StreamInterpreter::new(Api::Gemini, &format!("{PATH}?alt=sse"), "text/event-stream");
        i.feed(include_bytes!(
            "../../../tests/fixtures/streams/gemini_thoughts.sse"
        ));
        i.finish();
        let s = i.summary();
        assert_eq!(
            s.output.labels,
            ["Analyzing the request", "Drafting the reply"]
        );
        assert_eq!(s.output.answer, "Hello there! How can I help?");
        assert_eq!(s.output.finish_reason.as_deref(), Some("STOP"));
        let u = s.output.usage.unwrap_or_default();
        assert_eq!(
            (u.input, u.output, u.reasoning),
            (Some(8), Some(9), Some(120))
        );
        assert_eq!(s.phase, Some(Phase::Done));
    }

    #[test]
    fn json_array_form() {
        let mut i = StreamInterpreter::new(Api::Gemini, PATH, "application/json; charset=UTF-8");
        let bytes = include_bytes!("../../../tests/fixtures/streams/gemini_array.json");
        for chunk in bytes.chunks(3) {
            i.feed(chunk);
        }
        i.finish();
        let s = i.summary();
        assert_eq!(s.output.answer, "Hello there!");
        assert_eq!(s.output.tool_calls[0].name, "lookup");
        assert_eq!(
            s.output.tool_calls[0].id, "",
            "Gemini named no id: none is made up"
        );
        assert_eq!(s.output.labels, ["Planning"]);
        assert_eq!(s.phase, Some(Phase::Done));
    }

    #[test]
    fn a_heading_in_a_part_of_its_own_is_not_replaced_by_the_next_word() {
        let record = |text: &str| {
            let part = serde_json::json!({"text": text, "thought": true});
            let v = serde_json::json!({"candidates": [{"content": {"parts": [part]}}]});
            format!("data: {v}\n\n")
        };
        // As the simulator streams them: the heading in a part of its own, then word by word.
        let body = [
            record("**Planning the structure**\n\n"),
            record("Holds"),
            record(" the outline."),
            record("\n\n**Comparing approaches**\n\n"),
            record("Step"),
            record(" one."),
        ]
        .concat();
        let mut i =
            StreamInterpreter::new(Api::Gemini, &format!("{PATH}?alt=sse"), "text/event-stream");
        i.feed(body.as_bytes());
        i.finish();
        assert_eq!(
            i.summary().output.labels,
            ["Planning the structure", "Comparing approaches"]
        );
    }
}
