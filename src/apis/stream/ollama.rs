//! Ollama native stream reading (NDJSON): `/api/chat` (`message.thinking`, `message.content`,
//! `message.tool_calls`) and `/api/generate` (`thinking`, `response`); `done: true` with counts and
//! durations including `load_duration`.

use crate::apis::at::At;
use serde_json::Value;

use super::label::ParagraphLabels;
use super::signal::{UpstreamTimings, Usage};
use super::tally::{Tally, error_message, num};

#[derive(Debug, Default)]
pub struct Ollama {
    thinking: ParagraphLabels,
    labels: Vec<String>,
}

impl Ollama {
    pub fn on_record(&mut self, t: &mut Tally, line: &[u8]) {
        t.event();
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            t.ignored();
            return;
        };
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            t.error(&error_message(err));
            return;
        }
        t.waiting();
        if v.get("done").is_some() {
            t.shaped();
        }
        t.response_ids(None, v.get("model"));
        let msg = v.get("message");
        let field = |k: &str| {
            msg.and_then(|m| m.get(k))
                .or_else(|| v.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        let thinking = field("thinking");
        if !thinking.is_empty() {
            t.reasoning(thinking);
            self.thinking.push(thinking, &mut self.labels);
            for label in self.labels.drain(..) {
                t.label(&label);
            }
        }
        let calls = msg
            .and_then(|m| m.get("tool_calls"))
            .and_then(Value::as_array);
        for call in calls.into_iter().flatten() {
            let name = call
                .at("/function/name")
                .and_then(Value::as_str)
                .unwrap_or("function");
            let key = t.summary.counters.tool_calls.to_string();
            t.tool_call(&key, call.get("id").and_then(Value::as_str), name);
            if let Some(args) = call.at("/function/arguments") {
                t.tool_args(&key, &args.to_string());
            }
        }
        let content = if msg.is_some() {
            field("content")
        } else {
            field("response")
        };
        t.answer(content);
        if v.get("done").and_then(Value::as_bool) == Some(true) {
            self.thinking.finish(&mut self.labels);
            for label in self.labels.drain(..) {
                t.label(&label);
            }
            t.usage(Usage {
                input: num(v.get("prompt_eval_count")),
                output: num(v.get("eval_count")),
                reasoning: None,
            });
            t.timings(UpstreamTimings {
                total_ns: num(v.get("total_duration")),
                load_ns: num(v.get("load_duration")),
                prompt_eval_ns: num(v.get("prompt_eval_duration")),
                eval_ns: num(v.get("eval_duration")),
            });
            t.finish(
                v.get("done_reason")
                    .and_then(Value::as_str)
                    .unwrap_or("stop"),
            );
            t.done();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::apis::Api;
    use crate::apis::stream::{Phase, Signal, StreamInterpreter};

    #[test]
    fn chat_thinking_and_durations() {
        let mut i = StreamInterpreter::new(Api::Ollama, "/api/chat", "application/x-ndjson");
        let mut signals = i
            .feed(include_bytes!(
                "../../../tests/fixtures/streams/ollama_chat.ndjson"
            ))
            .signals;
        signals.extend(i.finish());
        let s = i.summary();
        assert_eq!(
            s.output.reasoning,
            "Okay, the user greets me.\nI should answer."
        );
        assert_eq!(s.output.labels, ["Okay, the user greets me."]);
        assert_eq!(s.output.answer, "Hi! 👋");
        let timings = s.output.timings.unwrap_or_default();
        assert_eq!(timings.load_ns, Some(1_200_000_000));
        assert_eq!(s.output.finish_reason.as_deref(), Some("stop"));
        assert_eq!(s.phase, Some(Phase::Done));
        assert!(signals.iter().any(|s| matches!(s, Signal::Timings(_))));
    }

    #[test]
    fn generate_without_trailing_newline_and_errors() {
        let mut i = StreamInterpreter::new(Api::Ollama, "/api/generate", "application/x-ndjson");
        i.feed(b"{\"response\":\"Hel\",\"thinking\":\"hm\",\"done\":false}\n{\"response\":\"lo\",\"done\":true,\"done_reason\":\"length\"}");
        i.finish();
        assert_eq!(i.summary().output.answer, "Hello");
        assert_eq!(i.summary().output.finish_reason.as_deref(), Some("length"));
        let mut e = StreamInterpreter::new(Api::Ollama, "/api/chat", "application/x-ndjson");
        let sig = e.feed(b"{\"error\":\"model 'x' not found\"}\n").signals;
        assert!(sig.contains(&Signal::UpstreamError {
            message: "model 'x' not found".into()
        }));
    }
}
