//! Gemini `generateContent` / `streamGenerateContent`: whole responses, SSE, or a streamed array.

use super::chat::aborted;
use super::plan::{Frames, JSON, Plan, SSE};
use super::script::{Script, Style};
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

/// How the response is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `generateContent`: one JSON object.
    Whole,
    /// `streamGenerateContent?alt=sse`: `data: {json}\r\n\r\n` per chunk.
    Sse,
    /// `streamGenerateContent` without `alt=sse`: one JSON array, streamed element by element.
    Array,
}

/// Splits the path tail `gemini-2.5-pro:streamGenerateContent` into model and method.
pub fn parse_target(tail: &str) -> Option<(&str, &str)> {
    let (model, method) = tail.rsplit_once(':')?;
    let model = model.rsplit('/').next().unwrap_or(model);
    (!model.is_empty()).then_some((model, method))
}

/// Whether the request asked to see thought summaries. Google's JSON mapping accepts both
/// lowerCamelCase and the proto's snake_case names, and google-genai (Python) sends the latter.
pub fn include_thoughts(req: &Value) -> bool {
    let config = either(req, "generationConfig", "generation_config");
    let thinking = either(config, "thinkingConfig", "thinking_config");
    either(thinking, "includeThoughts", "include_thoughts")
        .as_bool()
        .unwrap_or(false)
}

fn either<'a>(v: &'a Value, camel: &str, snake: &str) -> &'a Value {
    match v.get(camel) {
        Some(found) => found,
        None => &v[snake],
    }
}

pub fn plan(s: &Script, framing: Framing, thoughts: bool) -> Plan {
    match framing {
        Framing::Whole => whole(s, thoughts),
        Framing::Sse | Framing::Array => stream(s, framing, thoughts),
    }
}

fn usage(s: &Script, answered: Option<u64>) -> Value {
    let mut u = json!({
        "promptTokenCount": s.prompt_tokens,
        "totalTokenCount": s.prompt_tokens,
        "promptTokensDetails": [{ "modality": "TEXT", "tokenCount": s.prompt_tokens }],
    });
    if let Some(answered) = answered {
        let thoughts = s.thought_tokens();
        u["candidatesTokenCount"] = json!(answered);
        u["thoughtsTokenCount"] = json!(thoughts);
        u["totalTokenCount"] = json!(s.prompt_tokens + answered + thoughts);
    }
    u
}

/// One response object carrying `parts`; the last one also carries `finishReason` and usage.
fn response(s: &Script, parts: Value, last: bool) -> Value {
    let mut candidate = json!({ "content": { "parts": parts, "role": "model" }, "index": 0 });
    if last {
        candidate["finishReason"] = json!("STOP");
    }
    json!({
        "candidates": [candidate],
        "usageMetadata": usage(s, last.then(|| s.answer_tokens())),
        "modelVersion": s.model,
        "responseId": s.id(31, 22),
    })
}

fn whole(s: &Script, thoughts: bool) -> Plan {
    let headers_ms = s.knobs.headers_ms.saturating_add(s.total_ms());
    if s.fail_after().is_some() {
        return aborted(headers_ms);
    }
    let mut parts = Vec::new();
    if thoughts {
        let text = (0..s.steps.len())
            .map(|i| s.bold_step(i))
            .collect::<Vec<_>>()
            .join("\n\n");
        parts.push(json!({ "text": text, "thought": true }));
    }
    parts.push(json!({ "text": s.answer_text() }));
    let body = response(s, json!(parts), true);
    Plan::whole(
        StatusCode::OK,
        JSON,
        headers_ms,
        Bytes::from(body.to_string()),
    )
}

/// Writes elements either as SSE events or as the items of a streamed JSON array.
struct Out {
    frames: Frames,
    framing: Framing,
    first: bool,
    /// With `x-sim-sse-ids` the LF framing of `Frames::sse` is used, so `id:` lines fit in.
    ids: bool,
}

impl Out {
    fn push(&mut self, at: u64, value: &Value) {
        match self.framing {
            Framing::Array => {
                let sep = if self.first { "[" } else { ",\r\n" };
                self.frames.raw(at, format!("{sep}{value}"));
            }
            _ => {
                if self.ids {
                    self.frames.sse(at, None, &value.to_string());
                } else {
                    self.frames.raw(at, format!("data: {value}\r\n\r\n"));
                }
            }
        }
        self.first = false;
    }
}

fn stream(s: &Script, framing: Framing, thoughts: bool) -> Plan {
    let mut out = Out {
        frames: Frames::new(s.knobs.sse_ids),
        framing,
        first: true,
        ids: s.knobs.sse_ids,
    };
    if thoughts {
        for (at, piece) in s.think_pieces() {
            let text = piece.text(Style::Bold);
            if text.is_empty() {
                continue;
            }
            out.push(
                at,
                &response(s, json!([{ "text": text, "thought": true }]), false),
            );
        }
    }
    let n = s.answer.len();
    for (i, token) in s.answer.iter().enumerate() {
        if s.fail_after() == Some(i) {
            out.frames.abort(s.answer_at(i));
        }
        out.push(
            s.answer_at(i),
            &response(s, json!([{ "text": token }]), i + 1 == n),
        );
    }
    if n == 0 {
        out.push(s.total_ms(), &response(s, json!([{ "text": "" }]), true));
    }
    if framing == Framing::Array {
        out.frames.raw(s.total_ms(), "]");
    }
    let content_type = if framing == Framing::Array { JSON } else { SSE };
    out.frames.finish(content_type, s.knobs.headers_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn include_thoughts_in_both_spellings() {
        let camel = json!({"generationConfig": {"thinkingConfig": {"includeThoughts": true}}});
        let snake = json!({"generationConfig": {"thinkingConfig": {"include_thoughts": true}}});
        let off = json!({"generation_config": {"thinking_config": {"include_thoughts": false}}});
        assert!(include_thoughts(&camel) && include_thoughts(&snake));
        assert!(!include_thoughts(&off) && !include_thoughts(&json!({"x": 1})));
    }

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("g-2.5:generateContent"),
            Some(("g-2.5", "generateContent"))
        );
        assert_eq!(
            parse_target("tunedModels/x:generateContent"),
            Some(("x", "generateContent"))
        );
        assert_eq!(parse_target(":generateContent"), None);
        assert_eq!(parse_target("nocolon"), None);
    }
}
