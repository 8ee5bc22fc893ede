//! `capture_content`: the redacted prompt and answer, in the GenAI conventions' message shape
//! (`[{"role": ..., "parts": [{"type": "text", "content": ...}]}]`). Runs on the exporter's
//! thread, never the request's.

use crate::apis::at::At;
use crate::capture::redact::Redactor;
use serde_json::{Value, json};

/// The request's messages (every api's shape), redacted; `None` when none are found.
pub fn input_messages(mut request: Value, redactor: &Redactor) -> Option<String> {
    redactor.redact_json(&mut request);
    let mut out = Vec::new();
    // Anthropic's `system`, Gemini's `systemInstruction`, the Responses api's `instructions`.
    for key in ["system", "instructions"] {
        if let Some(parts) = request.get(key).map(text_parts).filter(|p| !p.is_empty()) {
            out.push(json!({"role": "system", "parts": parts}));
        }
    }
    if let Some(parts) = request
        .at("/systemInstruction/parts")
        .map(text_parts)
        .filter(|p| !p.is_empty())
    {
        out.push(json!({"role": "system", "parts": parts}));
    }
    let listed = ["messages", "contents", "input"]
        .iter()
        .find_map(|k| request.get(*k));
    match listed {
        Some(Value::Array(items)) => {
            for m in items {
                let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
                let content = m.get("content").or_else(|| m.get("parts"));
                let parts = content.map(text_parts).unwrap_or_default();
                out.push(json!({"role": role, "parts": parts}));
            }
        }
        Some(v @ Value::String(_)) => out.push(json!({"role": "user", "parts": text_parts(v)})),
        _ => {
            // Completions and Ollama's generate: one `prompt`.
            if let Some(p) = request.get("prompt").filter(|p| p.is_string()) {
                out.push(json!({"role": "user", "parts": text_parts(p)}));
            }
        }
    }
    (!out.is_empty()).then(|| Value::Array(out).to_string())
}

/// The answer as one assistant message, redacted.
pub fn output_messages(answer: &str, finish_reason: Option<&str>, redactor: &Redactor) -> String {
    let text = redactor.redact_str(answer);
    json!([{
        "role": "assistant",
        "parts": [{"type": "text", "content": text}],
        "finish_reason": finish_reason.unwrap_or(""),
    }])
    .to_string()
}

/// Text parts of a content value: a string, or a list of `{text}` / `{type: "text", text}`.
fn text_parts(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) => vec![json!({"type": "text", "content": s})],
        Value::Array(items) => items
            .iter()
            .filter_map(|i| match i {
                Value::String(s) => Some(s.as_str()),
                _ => i.get("text").and_then(Value::as_str),
            })
            .map(|t| json!({"type": "text", "content": t}))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::redact::RedactConfig;

    #[test]
    fn every_shape_becomes_role_and_text_parts_redacted() {
        let r = Redactor::new(&RedactConfig::default()).unwrap();
        let chat = json!({"model": "m", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "mail me at a@b.example"}]}
        ]});
        let got: Value = serde_json::from_str(&input_messages(chat, &r).unwrap()).unwrap();
        assert_eq!(got[0]["role"], "system");
        assert_eq!(got[1]["parts"][0]["content"], "mail me at [REDACTED:email]");
        let gemini = json!({"systemInstruction": {"parts": [{"text": "s"}]},
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
        let got: Value = serde_json::from_str(&input_messages(gemini, &r).unwrap()).unwrap();
        assert_eq!(got[0]["role"], "system");
        assert_eq!(got[1]["parts"][0]["content"], "hi");
        assert_eq!(input_messages(json!({"x": 1}), &r), None);
        let out: Value = serde_json::from_str(&output_messages(
            "key sk-abcdefghijklmnopqrstuvwxyz0123",
            Some("stop"),
            &r,
        ))
        .unwrap();
        assert_eq!(out[0]["finish_reason"], "stop");
        assert!(
            !out[0]["parts"][0]["content"]
                .as_str()
                .unwrap()
                .contains("sk-abc")
        );
    }
}
