//! Anthropic Messages stream reading: `message_start`, content blocks (thinking, text, tool use),
//! `message_delta` usage and stop reason, `message_stop`, `ping`, `error`.

use crate::apis::at::At;
use serde_json::Value;

use super::label::ParagraphLabels;
use super::signal::{Phase, Usage};
use super::tally::{Tally, error_message, num};

#[derive(Debug, Default)]
pub struct Anthropic {
    input: Option<u64>,
    thinking: ParagraphLabels,
    labels: Vec<String>,
}

impl Anthropic {
    pub fn on_event(&mut self, t: &mut Tally, name: Option<&str>, data: &str) {
        t.event();
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            t.ignored();
            return;
        };
        // An `event: error` is an error whatever its data's `type` (llama.cpp's Anthropic
        // endpoint sends `{"code":500,"type":"server_error",...}` under it).
        let kind = match name {
            Some("error") => "error",
            _ => v.get("type").and_then(Value::as_str).or(name).unwrap_or(""),
        };
        let key = num(v.get("index")).unwrap_or(0).to_string();
        if kind.starts_with("message_") || kind.starts_with("content_block_") {
            t.shaped();
        }
        match kind {
            "message_start" => {
                t.waiting();
                t.response_ids(v.at("/message/id"), v.at("/message/model"));
                let u = v.at("/message/usage");
                self.input = u.and_then(|u| num(u.get("input_tokens")));
                t.usage(Usage {
                    input: self.input,
                    output: None,
                    reasoning: None,
                });
            }
            "content_block_start" => {
                let block = v.get("content_block").unwrap_or(&Value::Null);
                match block.get("type").and_then(Value::as_str).unwrap_or("") {
                    "thinking" | "redacted_thinking" => {
                        t.phase(Phase::Thinking);
                        self.thinking = ParagraphLabels::new();
                        if let Some(text) = block
                            .get("thinking")
                            .and_then(Value::as_str)
                            .filter(|s| !s.is_empty())
                        {
                            self.thinking_text(t, text);
                        }
                    }
                    "text" => t.answer(block.get("text").and_then(Value::as_str).unwrap_or("")),
                    // Calls only: a server tool's result block (`web_search_tool_result`, ...)
                    // or a `container_upload` is no call (docs/streams.md).
                    kind @ ("tool_use" | "server_tool_use" | "mcp_tool_use") => {
                        let name = block.get("name").and_then(Value::as_str).unwrap_or(kind);
                        t.tool_call(&key, block.get("id").and_then(Value::as_str), name);
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                let text = |k: &str| delta.get(k).and_then(Value::as_str).unwrap_or("");
                match delta.get("type").and_then(Value::as_str).unwrap_or("") {
                    "thinking_delta" => self.thinking_text(t, text("thinking")),
                    "signature_delta" => t.phase(Phase::Thinking),
                    "text_delta" => t.answer(text("text")),
                    "input_json_delta" => t.tool_args(&key, text("partial_json")),
                    _ => {}
                }
            }
            "content_block_stop" => {
                self.thinking.finish(&mut self.labels);
                self.flush_labels(t);
            }
            "message_delta" => {
                if let Some(reason) = v.at("/delta/stop_reason").and_then(Value::as_str) {
                    t.finish(reason);
                }
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    let input = num(u.get("input_tokens")).or(self.input);
                    t.usage(Usage {
                        input,
                        output: num(u.get("output_tokens")),
                        reasoning: None,
                    });
                }
            }
            "message_stop" => t.done(),
            "error" => {
                let err = v.get("error").filter(|e| e.is_object()).unwrap_or(&v);
                t.error(&error_message(err));
            }
            _ => {}
        }
    }

    fn thinking_text(&mut self, t: &mut Tally, text: &str) {
        t.reasoning(text);
        self.thinking.push(text, &mut self.labels);
        self.flush_labels(t);
    }

    fn flush_labels(&mut self, t: &mut Tally) {
        for label in self.labels.drain(..) {
            t.label(&label);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::apis::Api;
    use crate::apis::stream::{Phase, Signal, StreamInterpreter};

    #[test]
    fn thinking_labels_tools_and_usage() {
        let mut i = StreamInterpreter::new(Api::Anthropic, "/v1/messages", "text/event-stream");
        let bytes = include_bytes!("../../../tests/fixtures/streams/anthropic_thinking.sse");
        let mut signals = Vec::new();
        for chunk in bytes.chunks(5) {
            signals.extend(i.feed(chunk).signals);
        }
        signals.extend(i.finish());
        let s = i.summary();
        assert_eq!(
            s.output.labels,
            ["Understanding the question", "Checking the forecast"]
        );
        assert!(
            s.output
                .reasoning
                .starts_with("Understanding the question\n")
        );
        assert_eq!(s.output.answer, "Let me check. Sunny, 21°C.");
        assert_eq!(s.output.tool_calls[0].name, "get_weather");
        assert_eq!(s.output.tool_calls[0].arguments, "{\"city\": \"Paris\"}");
        assert_eq!(s.output.tool_calls[0].id, "toolu_1");
        assert_eq!(s.output.finish_reason.as_deref(), Some("end_turn"));
        let u = s.output.usage.unwrap_or_default();
        assert_eq!((u.input, u.output), (Some(472), Some(89)));
        assert_eq!(s.phase, Some(Phase::Done));
        assert!(signals.contains(&Signal::Phase(Phase::Tool)));
    }

    #[test]
    fn overloaded_error() {
        let mut i = StreamInterpreter::new(Api::Anthropic, "/v1/messages", "text/event-stream");
        let sig = i.feed(b"event: error\r\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\r\n\r\n").signals;
        assert!(sig.contains(&Signal::UpstreamError {
            message: "overloaded_error: Overloaded".into()
        }));
    }

    #[test]
    fn an_error_event_is_an_error_whatever_its_data_type() {
        // llama.cpp's Anthropic endpoint, then `message_stop` would not make it a success.
        let mut i = StreamInterpreter::new(Api::Anthropic, "/v1/messages", "text/event-stream");
        let sig = i.feed(b"event: error\ndata: {\"code\":500,\"message\":\"the request exceeds the available context size\",\"type\":\"server_error\"}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n").signals;
        assert!(sig.contains(&Signal::UpstreamError {
            message: "server_error: the request exceeds the available context size".into()
        }));
        assert_eq!(i.summary().phase, Some(Phase::Error));
    }

    #[test]
    fn server_tool_results_are_not_calls() {
        let block = |i: u32, b: &str| {
            format!(
                "event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":{i},\"content_block\":{b}}}\n\n"
            )
        };
        let body = [
            block(0, r#"{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{}}"#),
            block(1, r#"{"type":"web_search_tool_result","tool_use_id":"srvtoolu_1","content":[]}"#),
            block(2, r#"{"type":"code_execution_tool_result","tool_use_id":"x","content":{}}"#),
            block(3, r#"{"type":"container_upload","file_id":"f"}"#),
            block(4, r#"{"type":"mcp_tool_use","id":"mcptoolu_1","name":"lookup","server_name":"s","input":{}}"#),
        ]
        .concat();
        let mut i = StreamInterpreter::new(Api::Anthropic, "/v1/messages", "text/event-stream");
        i.feed(body.as_bytes());
        i.finish();
        let s = i.summary();
        let names: Vec<&str> = s
            .output
            .tool_calls
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, ["web_search", "lookup"]);
        assert_eq!(s.counters.tool_calls, 2);
    }

    #[test]
    fn a_stream_closed_before_message_stop_or_a_stop_reason_is_unterminated() {
        let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":3}}}\n\n";
        let text = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n";
        let delta = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n";
        let stop = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        for (body, want) in [
            (format!("{start}{text}"), true),
            (format!("{start}{text}{delta}"), false),
            (format!("{start}{text}{delta}{stop}"), false),
        ] {
            let mut i = StreamInterpreter::new(Api::Anthropic, "/v1/messages", "text/event-stream");
            i.feed(body.as_bytes());
            i.finish();
            assert_eq!(i.unterminated(), want, "{body}");
        }
    }
}
