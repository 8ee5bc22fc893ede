//! OpenAI Responses stream reading: typed events (`response.*`, `error`, `keepalive`), reasoning
//! summaries with bold headings, tool items, output text, final usage.

use crate::apis::at::At;
use serde_json::Value;

use super::label;
use super::signal::{Phase, Usage};
use super::tally::{Tally, error_message, num};

/// Bound on the summary text kept while looking for a heading.
const MAX_HEADING_SCAN: usize = 1024;

#[derive(Debug, Default)]
pub struct Responses {
    /// Text of the current reasoning summary part, until its heading is found.
    part: String,
    part_labelled: bool,
}

impl Responses {
    pub fn on_event(&mut self, t: &mut Tally, name: Option<&str>, data: &str) {
        t.event();
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            t.ignored();
            return;
        };
        // An `event: error`, or data with no `type` and an `error` (llama.cpp's Responses
        // endpoint), is an error whatever else the data says.
        let typed = v.get("type").and_then(Value::as_str);
        let kind = match (name, typed) {
            (Some("error"), _) => "error",
            (_, None) if v.get("error").is_some_and(|e| !e.is_null()) => "error",
            _ => typed.or(name).unwrap_or(""),
        };
        if kind.starts_with("response.") {
            t.shaped();
        }
        let kind = kind.strip_prefix("response.").unwrap_or(kind);
        if let Some(r) = v.get("response") {
            t.response_ids(r.get("id"), r.get("model"));
        }
        match kind {
            "created" | "in_progress" => match v.at("/response/status").and_then(Value::as_str) {
                Some("queued") => t.phase(Phase::Queued),
                _ => t.waiting(),
            },
            "queued" => t.phase(Phase::Queued),
            "output_item.added" => self.item_added(t, &v),
            // A server that names a call's `call_id` only once the item is done.
            "output_item.done" => {
                if let Some(id) = v.at("/item/call_id").and_then(Value::as_str) {
                    t.tool_id(&item_key(&v), id);
                }
            }
            "reasoning_summary_part.added" => {
                t.waiting();
                self.part.clear();
                self.part_labelled = false;
            }
            "reasoning_summary_text.delta" => {
                let delta = str_at(&v, "delta");
                t.reasoning(delta);
                self.summary_delta(t, delta);
            }
            "reasoning_summary_text.done" | "reasoning_summary_part.done" => {
                if !self.part_labelled {
                    let text = v
                        .get("text")
                        .or_else(|| v.at("/part/text"))
                        .and_then(Value::as_str);
                    if let Some(heading) = text.and_then(label::bold_heading) {
                        t.label(&heading);
                    }
                }
                self.part.clear();
                self.part_labelled = true;
            }
            "reasoning_text.delta" => t.reasoning(str_at(&v, "delta")),
            "function_call_arguments.delta"
            | "custom_tool_call_input.delta"
            | "mcp_call_arguments.delta" => {
                t.tool_args(&item_key(&v), str_at(&v, "delta"));
            }
            "output_text.delta" | "refusal.delta" => t.answer(str_at(&v, "delta")),
            "completed" | "incomplete" => {
                self.usage(t, &v);
                let reason = v
                    .at("/response/incomplete_details/reason")
                    .and_then(Value::as_str);
                t.finish(reason.unwrap_or(kind));
                t.done();
            }
            "failed" => {
                self.usage(t, &v);
                let err = v.at("/response/error").filter(|e| !e.is_null());
                t.error(&err.map_or_else(|| "response failed".to_owned(), error_message));
            }
            "error" => {
                let err = v.get("error").filter(|e| e.is_object()).unwrap_or(&v);
                t.error(&error_message(err));
            }
            k if is_tool_progress(k) => t.phase(Phase::Tool),
            _ => {}
        }
    }

    fn item_added(&mut self, t: &mut Tally, v: &Value) {
        let Some(item) = v.get("item") else { return };
        let key = item_key(v);
        match item.get("type").and_then(Value::as_str).unwrap_or("") {
            "reasoning" => t.phase(Phase::Thinking),
            "message" => t.waiting(),
            // Every call item's type ends in `_call` (`function_call`, `web_search_call`,
            // `mcp_call`, ...); a tool list or an approval request is no call.
            other if other.ends_with("_call") => {
                let name = item.get("name").and_then(Value::as_str).unwrap_or(other);
                // `call_id` is what a `function_call_output` answers to (`id` names the item).
                let id = item.get("call_id").and_then(Value::as_str);
                t.tool_call(&key, id, name);
            }
            _ => {}
        }
    }

    fn summary_delta(&mut self, t: &mut Tally, delta: &str) {
        if self.part_labelled {
            return;
        }
        self.part.push_str(delta);
        let head = self.part.trim_start().as_bytes();
        if !head.is_empty() && !b"**".starts_with(&head[..head.len().min(2)]) {
            self.part_labelled = true; // no heading in this part
        } else if let Some(heading) = label::bold_heading(&self.part) {
            t.label(&heading);
            self.part_labelled = true;
        } else if self.part.len() > MAX_HEADING_SCAN {
            self.part_labelled = true;
        }
        if self.part_labelled {
            self.part = String::new();
        }
    }

    fn usage(&mut self, t: &mut Tally, v: &Value) {
        if let Some(u) = v.at("/response/usage").filter(|u| u.is_object()) {
            t.usage(Usage {
                input: num(u.get("input_tokens")),
                output: num(u.get("output_tokens")),
                reasoning: num(u.at("/output_tokens_details/reasoning_tokens")),
            });
        }
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Deltas name their item by `item_id` and `output_index`; added items carry both. An item id
/// is bounded like a call id (the upstream chooses its length).
fn item_key(v: &Value) -> String {
    match num(v.get("output_index")) {
        Some(i) => i.to_string(),
        None => super::tally::tool_id(
            v.get("item_id")
                .or_else(|| v.at("/item/id"))
                .and_then(Value::as_str),
        ),
    }
}

fn is_tool_progress(kind: &str) -> bool {
    [
        "web_search_call.",
        "file_search_call.",
        "code_interpreter_call",
        "mcp_call",
        "image_generation_call.",
    ]
    .iter()
    .any(|p| kind.starts_with(p))
        && !kind.ends_with(".completed")
}

#[cfg(test)]
mod tests {
    use crate::apis::Api;
    use crate::apis::stream::{Phase, Signal, StreamInterpreter};

    #[test]
    fn summary_headings_tools_and_usage() {
        let mut i = StreamInterpreter::new(
            Api::OpenAi,
            "/v1/responses",
            "text/event-stream; charset=utf-8",
        );
        let bytes = include_bytes!("../../../tests/fixtures/streams/openai_responses.sse");
        let mut signals = Vec::new();
        for chunk in bytes.chunks(7) {
            signals.extend(i.feed(chunk).signals);
        }
        signals.extend(i.finish());
        let s = i.summary();
        assert_eq!(
            s.output.labels,
            ["Weighing the options", "Checking the weather"]
        );
        assert!(signals.contains(&Signal::Phase(Phase::Queued)));
        assert!(signals.contains(&Signal::ToolCall {
            name: "get_weather".into()
        }));
        assert!(signals.contains(&Signal::ToolCall {
            name: "web_search_call".into()
        }));
        assert_eq!(s.output.tool_calls[0].arguments, "{\"city\":\"Paris\"}");
        assert_eq!(
            s.output.tool_calls[0].id, "call_1",
            "the call_id an output answers"
        );
        assert_eq!(s.output.answer, "It is sunny.");
        assert_eq!(s.output.finish_reason.as_deref(), Some("completed"));
        assert_eq!(s.phase, Some(Phase::Done));
        assert_eq!(s.output.usage.and_then(|u| u.reasoning), Some(64));
    }

    #[test]
    fn failed_and_error_events() {
        let mut i = StreamInterpreter::new(Api::OpenAi, "/v1/responses", "text/event-stream");
        let sig = i.feed(b"event: error\ndata: {\"type\":\"error\",\"code\":\"rate_limit_exceeded\",\"message\":\"slow down\",\"sequence_number\":1}\n\n").signals;
        assert!(sig.contains(&Signal::UpstreamError {
            message: "rate_limit_exceeded: slow down".into()
        }));
        assert_eq!(i.summary().phase, Some(Phase::Error));
    }

    #[test]
    fn a_call_id_named_only_when_the_item_is_done_is_kept() {
        let body = concat!(
            "data: {\"type\":\"response.output_item.added\",\"output_index\":0,",
            "\"item\":{\"type\":\"function_call\",\"id\":\"fc_1\",\"name\":\"f\"}}\n\n",
            "data: {\"type\":\"response.output_item.done\",\"output_index\":0,",
            "\"item\":{\"type\":\"function_call\",\"id\":\"fc_1\",\"call_id\":\"call_9\",\"name\":\"f\"}}\n\n",
        );
        let mut i = StreamInterpreter::new(Api::OpenAi, "/v1/responses", "text/event-stream");
        i.feed(body.as_bytes());
        i.finish();
        assert_eq!(i.summary().output.tool_calls[0].id, "call_9");
    }

    #[test]
    fn an_error_without_a_type_or_under_an_error_event_is_an_error() {
        // llama.cpp's Responses endpoint: `data: {"error":{...}}`, no type, no event name.
        let mut i = StreamInterpreter::new(Api::OpenAi, "/v1/responses", "text/event-stream");
        let sig = i.feed(b"data: {\"error\":{\"code\":500,\"message\":\"boom\",\"type\":\"server_error\"}}\n\n").signals;
        assert!(sig.contains(&Signal::UpstreamError {
            message: "server_error: boom".into()
        }));
        let mut i = StreamInterpreter::new(Api::OpenAi, "/v1/responses", "text/event-stream");
        i.feed(b"event: error\ndata: {\"type\":\"server_error\",\"message\":\"boom\"}\n\n");
        assert_eq!(i.summary().phase, Some(Phase::Error));
    }

    #[test]
    fn only_call_items_are_calls_and_their_keys_are_bounded() {
        let added = |item: &str| {
            format!("data: {{\"type\":\"response.output_item.added\",\"item\":{item}}}\n\n")
        };
        let long = "i".repeat(100_000);
        let body = [
            added(r#"{"type":"mcp_list_tools","id":"l1","server_label":"s","tools":[]}"#),
            added(r#"{"type":"mcp_approval_request","id":"a1","name":"delete_repo","server_label":"s","arguments":"{}"}"#),
            added(&format!(r#"{{"type":"function_call","id":"{long}","call_id":"call_1","name":"f"}}"#)),
            format!("data: {{\"type\":\"response.function_call_arguments.delta\",\"item_id\":\"{long}\",\"delta\":\"{{}}\"}}\n\n"),
        ]
        .concat();
        let mut i = StreamInterpreter::new(Api::OpenAi, "/v1/responses", "text/event-stream");
        i.feed(body.as_bytes());
        i.finish();
        let s = i.summary();
        assert_eq!(s.counters.tool_calls, 1);
        let call = &s.output.tool_calls[0];
        assert_eq!((call.name.as_str(), call.arguments.as_str()), ("f", "{}"));
        assert_eq!(call.key.len(), 256);
    }
}
