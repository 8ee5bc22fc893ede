//! OpenAI Chat Completions stream reading (also the OpenAI-compatible paths of Gemini, Ollama,
//! vLLM, DeepSeek, OpenRouter): unnamed events, `[DONE]`, `choices[0].delta`, usage chunks.

use crate::apis::at::At;
use serde_json::Value;

use super::signal::Usage;
use super::tally::{Tally, error_message, num, tool_id};

#[derive(Debug, Default)]
pub struct OpenAiChat;

impl OpenAiChat {
    pub fn on_event(&mut self, t: &mut Tally, data: &str) {
        t.event();
        if data.trim() == "[DONE]" {
            t.shaped();
            t.done();
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            t.ignored();
            return;
        };
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            t.error(&error_message(err));
            return;
        }
        t.waiting();
        t.response_ids(v.get("id"), v.get("model"));
        // With `n > 1` each chunk carries one choice, by its `index`: the first answer is read.
        // A chunk without `choices` (llama.cpp's legacy `/completions`: `content`, `stop`) is
        // not of this dialect's shape.
        let choices = v.get("choices").and_then(Value::as_array);
        if choices.is_some() {
            t.shaped();
        }
        let choice = choices.and_then(|c| {
            c.iter()
                .find(|c| num(c.get("index")).is_none_or(|i| i == 0))
        });
        if let Some(choice) = choice {
            self.choice(t, choice);
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            t.usage(Usage {
                input: num(u.get("prompt_tokens")),
                output: num(u.get("completion_tokens")),
                reasoning: num(u.at("/completion_tokens_details/reasoning_tokens")),
            });
        }
    }

    fn choice(&mut self, t: &mut Tally, choice: &Value) {
        if let Some(delta) = choice.get("delta") {
            // Servers send one of these; some send both with the same text: read the first.
            let reasoning = ["reasoning_content", "reasoning"].iter().find_map(|k| {
                delta
                    .get(*k)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            });
            let details = delta.get("reasoning_details").and_then(Value::as_array);
            if let Some(text) = reasoning {
                t.reasoning(text);
            } else if details.is_some_and(|d| !d.is_empty()) {
                // OpenRouter: encrypted or summary details without plain text still mean thinking.
                t.reasoning("");
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for call in calls {
                    let index = num(call.get("index"));
                    let key = index.unwrap_or(0).to_string();
                    let name = call.at("/function/name").and_then(Value::as_str);
                    let id = call.get("id").and_then(Value::as_str);
                    // A name for a key already taken starts another call when the chunk has no
                    // index (Gemini's compatible endpoint sends each call whole, unindexed) or
                    // names another call id (older Ollama numbers every call 0); later argument
                    // deltas go to the latest call under the key (docs/streams.md).
                    let another = |t: &Tally| match t.tool_id_of(&key) {
                        None => true,
                        // Ids compare as kept (bounded); an empty id names no call.
                        Some(taken) => {
                            index.is_none()
                                || id.is_some_and(|id| {
                                    !id.is_empty()
                                        && !taken.is_empty()
                                        && tool_id(Some(id)) != taken
                                })
                        }
                    };
                    if let Some(name) = name.filter(|_| another(t)) {
                        t.tool_call(&key, id, name);
                    } else if let Some(id) = id.filter(|_| name.is_none()) {
                        // An id on its own (before or after the call's name); a chunk with a
                        // name for a key already taken is another call, not this one's id.
                        t.tool_id(&key, id);
                    }
                    if let Some(args) = call.at("/function/arguments").and_then(Value::as_str) {
                        t.tool_args(&key, args);
                    }
                }
            }
            for key in ["content", "refusal"] {
                if let Some(text) = delta.get(key).and_then(Value::as_str) {
                    t.answer(text);
                }
            }
        }
        // Legacy `/v1/completions` chunks carry `text` instead of a delta.
        if let Some(text) = choice.get("text").and_then(Value::as_str) {
            t.answer(text);
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            t.finish(reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::apis::Api;
    use crate::apis::stream::{Phase, Signal, StreamInterpreter};

    fn run(path: &str, fixture: &[u8]) -> (Vec<Signal>, StreamInterpreter) {
        let mut i = StreamInterpreter::new(Api::OpenAi, path, "text/event-stream");
        let mut s = i.feed(fixture).signals;
        s.extend(i.finish());
        (s, i)
    }

    #[test]
    fn reasoning_content_tools_and_usage() {
        let (signals, i) = run(
            "/v1/chat/completions",
            include_bytes!("../../../tests/fixtures/streams/openai_chat_reasoning.sse"),
        );
        let phases: Vec<_> = signals
            .iter()
            .filter_map(|s| {
                if let Signal::Phase(p) = s {
                    Some(*p)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(
            phases,
            [
                Phase::Waiting,
                Phase::Thinking,
                Phase::Tool,
                Phase::Generating,
                Phase::Done
            ]
        );
        let s = i.summary();
        assert_eq!(s.output.reasoning, "Let me think. Okay.");
        assert_eq!(s.output.answer, "Héllo!");
        assert_eq!(s.output.tool_calls[0].name, "get_weather");
        assert_eq!(s.output.tool_calls[0].arguments, "{\"city\":\"Paris\"}");
        // The call's own id, not the stream's index (its key).
        assert_eq!(
            (
                s.output.tool_calls[0].key.as_str(),
                s.output.tool_calls[0].id.as_str()
            ),
            ("0", "call_1")
        );
        assert_eq!(s.output.finish_reason.as_deref(), Some("stop"));
        let usage = s.output.usage.unwrap_or_default();
        assert_eq!(
            (usage.input, usage.output, usage.reasoning),
            (Some(9), Some(30), Some(12))
        );
        assert!(s.output.labels.is_empty());
    }

    #[test]
    fn in_stream_error() {
        let (signals, i) = run(
            "/v1/chat/completions",
            b"data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n",
        );
        assert!(signals.contains(&Signal::UpstreamError {
            message: "server_error: overloaded".into()
        }));
        assert_eq!(i.summary().phase, Some(Phase::Error));
    }

    #[test]
    fn a_call_id_sent_apart_from_the_name_is_kept_and_no_other_call_takes_it() {
        let chunk = |call: &str| {
            format!(
                "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"tool_calls\":[{call}]}}}}]}}\n\n"
            )
        };
        // The id first, then the name (index 0); then a call without `index` (key 0 too) that
        // is another call: it keeps its own id and does not take the first call's.
        let body = [
            chunk(r#"{"index":0,"id":"call_x","type":"function"}"#),
            chunk(r#"{"index":0,"function":{"name":"f","arguments":"{}"}}"#),
            chunk(r#"{"index":1,"function":{"name":"g"}}"#),
            chunk(r#"{"index":1,"id":"call_y"}"#),
            chunk(r#"{"function":{"name":"h"},"id":"call_z"}"#),
        ]
        .concat();
        let (_, i) = run("/v1/chat/completions", body.as_bytes());
        let ids: Vec<(String, String)> = i
            .summary()
            .output
            .tool_calls
            .iter()
            .map(|t| (t.name.clone(), t.id.clone()))
            .collect();
        let pair = |n: &str, id: &str| (n.to_owned(), id.to_owned());
        assert_eq!(
            ids,
            [
                pair("f", "call_x"),
                pair("g", "call_y"),
                pair("h", "call_z")
            ]
        );
    }

    fn calls(body: &str) -> Vec<(String, String, String)> {
        let (_, i) = run("/v1/chat/completions", body.as_bytes());
        let s = i.summary();
        assert_eq!(s.counters.tool_calls as usize, s.output.tool_calls.len());
        s.output
            .tool_calls
            .iter()
            .map(|t| (t.name.clone(), t.id.clone(), t.arguments.clone()))
            .collect()
    }

    fn call(name: &str, id: &str, args: &str) -> (String, String, String) {
        (name.to_owned(), id.to_owned(), args.to_owned())
    }

    fn tool_chunk(calls: &str) -> String {
        format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"tool_calls\":[{calls}]}}}}]}}\n\n"
        )
    }

    #[test]
    fn parallel_calls_sent_whole_without_an_index_stay_apart() {
        // Gemini's OpenAI-compatible endpoint: each call whole, no `index`.
        let body = [
            tool_chunk(r#"{"id":"a","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Sydney\"}"}}"#),
            tool_chunk(r#"{"id":"b","type":"function","function":{"name":"get_time","arguments":"{\"tz\":\"AEST\"}"}}"#),
            tool_chunk(r#"{"id":"c","type":"function","function":{"name":"ping","arguments":"{}"}}"#),
        ]
        .concat();
        assert_eq!(
            calls(&body),
            [
                call("get_weather", "a", r#"{"location":"Sydney"}"#),
                call("get_time", "b", r#"{"tz":"AEST"}"#),
                call("ping", "c", "{}"),
            ]
        );
    }

    #[test]
    fn calls_all_numbered_zero_with_their_own_ids_stay_apart() {
        // Older Ollama: every call `index: 0`, each with its own id; then one streamed the
        // usual way, whose name is not repeated and whose arguments go to it.
        let body = [
            tool_chunk(
                r#"{"index":0,"id":"call_1","function":{"name":"f","arguments":"{\"x\":1}"}}"#,
            ),
            tool_chunk(
                r#"{"index":0,"id":"call_2","function":{"name":"g","arguments":"{\"y\":"}}"#,
            ),
            tool_chunk(r#"{"index":0,"function":{"arguments":"2}"}}"#),
            tool_chunk(r#"{"index":1,"id":"call_3","function":{"name":"h","arguments":""}}"#),
            tool_chunk(r#"{"index":1,"function":{"arguments":"{}"}}"#),
        ]
        .concat();
        assert_eq!(
            calls(&body),
            [
                call("f", "call_1", r#"{"x":1}"#),
                call("g", "call_2", r#"{"y":2}"#),
                call("h", "call_3", "{}"),
            ]
        );
        // A server that repeats the same call's name and id with each delta has one call.
        let body = [
            tool_chunk(r#"{"index":0,"id":"call_1","function":{"name":"f","arguments":"{\"x\""}}"#),
            tool_chunk(r#"{"index":0,"id":"call_1","function":{"name":"f","arguments":":1}"}}"#),
        ]
        .concat();
        assert_eq!(calls(&body), [call("f", "call_1", r#"{"x":1}"#)]);
        // ... also when that id is longer than the bound ids are kept to, or a later chunk's
        // id is empty.
        let long = "c".repeat(300);
        let body = [
            tool_chunk(&format!(
                r#"{{"index":0,"id":"{long}","function":{{"name":"f","arguments":"{{\"x\""}}}}"#
            )),
            tool_chunk(&format!(
                r#"{{"index":0,"id":"{long}","function":{{"name":"f","arguments":":1"}}}}"#
            )),
            tool_chunk(r#"{"index":0,"id":"","function":{"name":"f","arguments":"}"}}"#),
        ]
        .concat();
        assert_eq!(calls(&body), [call("f", &long[..256], r#"{"x":1}"#)]);
    }

    #[test]
    fn only_the_first_choice_is_read_when_several_are_streamed() {
        let body = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Answer A\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"Answer B\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[{\"index\":1,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
            "data: [DONE]\n\n",
        );
        let (_, i) = run("/v1/chat/completions", body.as_bytes());
        assert_eq!(i.summary().output.answer, "Answer A");
        assert_eq!(i.summary().output.finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn a_stream_that_ends_before_done_or_a_finish_reason_is_unterminated() {
        let content = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n";
        let finish =
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
        let cases = [
            ("/v1/chat/completions", content.to_owned(), true),
            ("/v1/chat/completions", format!("{content}{finish}"), false),
            (
                "/v1/chat/completions",
                format!("{content}data: [DONE]\n\n"),
                false,
            ),
            ("/v1/completions", content.to_owned(), true),
            // `[DONE]` with no line end ends it; a body that stopped inside a chunk is cut.
            ("/v1/chat/completions", format!("{content}data: [DONE]"), false),
            ("/v1/chat/completions", format!("{content}data: {{\"choices\":[{{\"in"), true),
            // Nothing read: not a stream of this dialect (a JSON body without a content type).
            ("/v1/chat/completions", "{\"id\":\"x\"}".to_owned(), false),
            // An SSE endpoint of some other kind on an OpenAI route has no known end.
            ("/custom/stream", content.to_owned(), false),
            // llama.cpp's legacy `/completions` (`content`, `stop`; no `choices`, no `[DONE]`).
            (
                "/completions",
                "data: {\"content\":\"Hi\",\"stop\":false}\n\ndata: {\"content\":\"\",\"stop\":true}\n\n".to_owned(),
                false,
            ),
            // A record too large to read may have held the end: no verdict.
            (
                "/v1/chat/completions",
                format!("{content}data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}\"}},\"finish_reason\":\"stop\"}}]}}\n\n", "x".repeat(1 << 20)),
                false,
            ),
        ];
        for (path, body, want) in cases {
            let (_, i) = run(path, body.as_bytes());
            assert_eq!(i.unterminated(), want, "{path} {body:?}");
        }
        // The cut line is no event.
        let (_, i) = run(
            "/v1/chat/completions",
            format!("{content}data: {{\"ch").as_bytes(),
        );
        assert_eq!(i.summary().counters.events, 1);
    }
}
