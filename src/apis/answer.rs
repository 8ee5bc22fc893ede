//! Reading a whole (non-streaming) answer body: text, reasoning, tool calls, finish reason and
//! usage, per api shape. Pure; the streaming counterpart is `stream`.

use super::stream::{Reassembly, ToolCallRecord, Usage, set_once, tool_id};
use crate::apis::at::At;
use serde_json::Value;

fn text(v: Option<&Value>) -> &str {
    v.and_then(Value::as_str).unwrap_or("")
}

fn num(v: Option<&Value>) -> Option<u64> {
    v.and_then(Value::as_u64)
}

/// Reads `body` by its shape (the keys tell the api apart; gateways serve each other's shapes).
pub fn read(body: &Value) -> Reassembly {
    let mut out = Reassembly::default();
    if let Some(choices) = body.get("choices").and_then(Value::as_array) {
        openai_chat(body, choices, &mut out);
    } else if body.get("object").and_then(Value::as_str) == Some("response")
        || body.get("output").is_some_and(Value::is_array)
    {
        responses(body, &mut out);
    } else if body.get("type").and_then(Value::as_str) == Some("message") {
        anthropic(body, &mut out);
    } else if let Some(candidates) = body.get("candidates").and_then(Value::as_array) {
        gemini(body, candidates, &mut out);
    } else if body.get("message").is_some() || body.get("response").is_some_and(Value::is_string) {
        ollama(body, &mut out);
    }
    set_once(
        &mut out.response_id,
        body.get("id").or_else(|| body.get("responseId")),
    );
    set_once(
        &mut out.response_model,
        body.get("model").or_else(|| body.get("modelVersion")),
    );
    if let Some(e) = body.get("error") {
        out.error = Some(
            e.get("message")
                .and_then(Value::as_str)
                .map_or_else(|| e.to_string(), str::to_owned),
        );
    }
    out
}

/// Whether a whole answer carries reasoning its api returned: text, a summary, or an opaque
/// block (OpenAI chat `reasoning_content`/`reasoning`, a Responses `reasoning` item, an Anthropic
/// `thinking`/`redacted_thinking` block, a Gemini part with `thought: true`, Ollama `thinking`),
/// as a stream's first reasoning signal would say.
pub fn has_reasoning(body: &Value) -> bool {
    fn items(v: Option<&Value>) -> &[Value] {
        v.and_then(Value::as_array).map_or(&[], Vec::as_slice)
    }
    let non_empty = |v: Option<&Value>| v.and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    fn kind(v: &Value) -> &str {
        text(v.get("type"))
    }
    if let Some(m) = body.at("/choices/0/message") {
        return non_empty(m.get("reasoning_content")) || non_empty(m.get("reasoning"));
    }
    if body.get("output").is_some_and(Value::is_array) {
        return items(body.get("output"))
            .iter()
            .any(|i| kind(i) == "reasoning");
    }
    if kind(body) == "message" {
        return items(body.get("content"))
            .iter()
            .any(|b| matches!(kind(b), "thinking" | "redacted_thinking"));
    }
    if let Some(parts) = body.at("/candidates/0/content/parts") {
        return items(Some(parts))
            .iter()
            .any(|p| p.get("thought").and_then(Value::as_bool) == Some(true));
    }
    non_empty(body.at("/message/thinking")) || non_empty(body.get("thinking"))
}

fn openai_chat(body: &Value, choices: &[Value], out: &mut Reassembly) {
    if let Some(c) = choices.first() {
        let m = c.get("message");
        out.answer.push_str(text(m.and_then(|m| m.get("content"))));
        let reasoning = m.and_then(|m| m.get("reasoning_content").or_else(|| m.get("reasoning")));
        out.reasoning.push_str(text(reasoning));
        for (i, call) in m
            .and_then(|m| m.get("tool_calls"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            out.tool_calls.push(ToolCallRecord {
                key: i.to_string(),
                id: tool_id(call.get("id").and_then(Value::as_str)),
                name: text(call.at("/function/name")).to_owned(),
                arguments: text(call.at("/function/arguments")).to_owned(),
            });
        }
        out.finish_reason = c
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_owned);
    }
    if let Some(u) = body.get("usage") {
        out.usage = Some(Usage {
            input: num(u.get("prompt_tokens")),
            output: num(u.get("completion_tokens")),
            reasoning: num(u.at("/completion_tokens_details/reasoning_tokens")),
        });
    }
}

fn responses(body: &Value, out: &mut Reassembly) {
    for item in body
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for part in item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    out.answer.push_str(text(part.get("text")));
                }
            }
            Some("reasoning") => {
                for part in item
                    .get("summary")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    out.reasoning.push_str(text(part.get("text")));
                }
                for part in item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    out.reasoning.push_str(text(part.get("text")));
                }
            }
            Some("function_call") => out.tool_calls.push(ToolCallRecord {
                key: text(item.get("call_id")).to_owned(),
                id: tool_id(item.get("call_id").and_then(Value::as_str)),
                name: text(item.get("name")).to_owned(),
                arguments: text(item.get("arguments")).to_owned(),
            }),
            _ => {}
        }
    }
    out.finish_reason = body
        .get("status")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(u) = body.get("usage") {
        out.usage = Some(Usage {
            input: num(u.get("input_tokens")),
            output: num(u.get("output_tokens")),
            reasoning: num(u.at("/output_tokens_details/reasoning_tokens")),
        });
    }
}

fn anthropic(body: &Value, out: &mut Reassembly) {
    for block in body
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => out.answer.push_str(text(block.get("text"))),
            Some("thinking") => out.reasoning.push_str(text(block.get("thinking"))),
            Some("tool_use") => out.tool_calls.push(ToolCallRecord {
                key: text(block.get("id")).to_owned(),
                id: tool_id(block.get("id").and_then(Value::as_str)),
                name: text(block.get("name")).to_owned(),
                arguments: block.get("input").map(Value::to_string).unwrap_or_default(),
            }),
            _ => {}
        }
    }
    out.finish_reason = body
        .get("stop_reason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(u) = body.get("usage") {
        out.usage = Some(Usage {
            input: num(u.get("input_tokens")),
            output: num(u.get("output_tokens")),
            reasoning: None,
        });
    }
}

fn gemini(body: &Value, candidates: &[Value], out: &mut Reassembly) {
    if let Some(c) = candidates.first() {
        for part in c
            .at("/content/parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(call) = part.get("functionCall") {
                out.tool_calls.push(ToolCallRecord {
                    key: out.tool_calls.len().to_string(),
                    id: tool_id(call.get("id").and_then(Value::as_str)),
                    name: text(call.get("name")).to_owned(),
                    arguments: call.get("args").map(Value::to_string).unwrap_or_default(),
                });
            } else if part.get("thought").and_then(Value::as_bool) == Some(true) {
                out.reasoning.push_str(text(part.get("text")));
            } else {
                out.answer.push_str(text(part.get("text")));
            }
        }
        out.finish_reason = c
            .get("finishReason")
            .and_then(Value::as_str)
            .map(str::to_owned);
    }
    if let Some(u) = body.get("usageMetadata") {
        out.usage = Some(Usage {
            input: num(u.get("promptTokenCount")),
            output: num(u.get("candidatesTokenCount")),
            reasoning: num(u.get("thoughtsTokenCount")),
        });
    }
}

fn ollama(body: &Value, out: &mut Reassembly) {
    let m = body.get("message");
    out.answer.push_str(text(
        m.and_then(|m| m.get("content"))
            .or_else(|| body.get("response")),
    ));
    out.reasoning.push_str(text(
        m.and_then(|m| m.get("thinking"))
            .or_else(|| body.get("thinking")),
    ));
    for (i, call) in m
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        out.tool_calls.push(ToolCallRecord {
            key: i.to_string(),
            id: tool_id(call.get("id").and_then(Value::as_str)),
            name: text(call.at("/function/name")).to_owned(),
            arguments: call
                .at("/function/arguments")
                .map(Value::to_string)
                .unwrap_or_default(),
        });
    }
    out.finish_reason = body
        .get("done_reason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if body.get("eval_count").is_some() || body.get("prompt_eval_count").is_some() {
        out.usage = Some(Usage {
            input: num(body.get("prompt_eval_count")),
            output: num(body.get("eval_count")),
            reasoning: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reasoning_is_found_in_each_shape_and_only_there() {
        let with = [
            json!({"choices":[{"message":{"content":"a","reasoning_content":"t"}}]}),
            json!({"choices":[{"message":{"content":"a","reasoning":"t"}}]}),
            json!({"object":"response","output":[{"type":"reasoning","summary":[],"encrypted_content":"x"},{"type":"message","content":[]}]}),
            json!({"type":"message","content":[{"type":"thinking","thinking":"t"},{"type":"text","text":"a"}]}),
            json!({"type":"message","content":[{"type":"redacted_thinking","data":"x"}]}),
            json!({"candidates":[{"content":{"parts":[{"text":"t","thought":true},{"text":"a"}]}}]}),
            json!({"message":{"content":"a","thinking":"t"},"done":true}),
            json!({"response":"a","thinking":"t","done":true}),
        ];
        for body in &with {
            assert!(has_reasoning(body), "{body}");
        }
        let without = [
            json!({"choices":[{"message":{"content":"a","reasoning_content":""}}]}),
            json!({"object":"response","output":[{"type":"message","content":[]}]}),
            json!({"type":"message","content":[{"type":"text","text":"a"}]}),
            json!({"candidates":[{"content":{"parts":[{"text":"a"}]}}]}),
            json!({"message":{"content":"a"},"done":true}),
            json!({"error":{"message":"nope"}}),
        ];
        for body in &without {
            assert!(!has_reasoning(body), "{body}");
        }
    }

    #[test]
    fn reads_each_shape() {
        let chat = json!({"choices":[{"message":{"content":"hi","tool_calls":[{"id":"c1","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"completion_tokens_details":{"reasoning_tokens":7}}});
        let r = read(&chat);
        assert_eq!(
            (r.answer.as_str(), r.tool_calls[0].name.as_str()),
            ("hi", "f")
        );
        assert_eq!(r.usage.unwrap().reasoning, Some(7));
        let resp = json!({"object":"response","status":"completed","output":[{"type":"reasoning","summary":[{"text":"**H**"}]},{"type":"message","content":[{"type":"output_text","text":"ok"}]}],"usage":{"input_tokens":1,"output_tokens":2}});
        let r = read(&resp);
        assert_eq!((r.answer.as_str(), r.reasoning.as_str()), ("ok", "**H**"));
        let ant = json!({"type":"message","content":[{"type":"thinking","thinking":"t"},{"type":"text","text":"a"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":2}});
        assert_eq!(read(&ant).answer, "a");
        let gem = json!({"candidates":[{"content":{"parts":[{"text":"t","thought":true},{"text":"a"}]},"finishReason":"STOP"}],"usageMetadata":{"thoughtsTokenCount":4}});
        let r = read(&gem);
        assert_eq!(
            (
                r.answer.as_str(),
                r.reasoning.as_str(),
                r.usage.unwrap().reasoning
            ),
            ("a", "t", Some(4))
        );
        let oll = json!({"message":{"content":"a","thinking":"t"},"done":true,"done_reason":"stop","eval_count":5});
        assert_eq!(read(&oll).usage.unwrap().output, Some(5));
        assert_eq!(
            read(&json!({"error":{"message":"nope"}})).error.as_deref(),
            Some("nope")
        );
    }

    #[test]
    fn tool_calls_keep_the_upstreams_own_ids_and_make_none_up() {
        let ids = |body: serde_json::Value| -> Vec<String> {
            read(&body).tool_calls.into_iter().map(|t| t.id).collect()
        };
        let f = json!({"name":"f","arguments":"{}"});
        assert_eq!(
            ids(
                json!({"choices":[{"message":{"tool_calls":[{"id":"call_A","function":f},{"function":f}]}}]})
            ),
            ["call_A", ""]
        );
        assert_eq!(
            ids(
                json!({"object":"response","output":[{"type":"function_call","id":"fc_1","call_id":"call_B","name":"f","arguments":"{}"}]})
            ),
            ["call_B"]
        );
        assert_eq!(
            ids(
                json!({"type":"message","content":[{"type":"tool_use","id":"toolu_C","name":"f","input":{}}]})
            ),
            ["toolu_C"]
        );
        assert_eq!(
            ids(
                json!({"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{}}},{"functionCall":{"id":"g1","name":"g","args":{}}}]}}]})
            ),
            ["", "g1"]
        );
        assert_eq!(
            ids(
                json!({"message":{"tool_calls":[{"function":{"name":"f","arguments":{}}}]},"done":true})
            ),
            [""]
        );
    }
}
