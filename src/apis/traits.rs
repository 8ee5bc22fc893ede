//! What a request says about how long it will take, per api: its model, whether it streams, and
//! the reasoning effort or thinking budget it names. Pure: bytes in, traits out.
//!
//! Only the few fields needed are read; serde skips the rest (unknown fields are ignored
//! without being built), so a long prompt is scanned once and nothing of it is copied.

use super::Api;
use super::stream::request_streams;
use serde::Deserialize;

/// What a request names that the ETA estimator conditions on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestTraits {
    pub model: Option<String>,
    /// The response will stream (by the request alone; see [`request_streams`]).
    pub streams: bool,
    /// The reasoning effort (`low`, `medium`, `high`, …) or the thinking budget as a bucket
    /// (`budget<=4096`: the next power of two at or above the tokens asked for); `None` when
    /// the request names neither.
    pub effort: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Body<'a> {
    #[serde(borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
    stream: Option<bool>,
    /// OpenAI chat completions.
    reasoning_effort: Option<std::borrow::Cow<'a, str>>,
    /// OpenAI Responses: `{"effort": "high"}`.
    reasoning: Option<Reasoning<'a>>,
    /// Anthropic `{"type": "enabled", "budget_tokens": N}`; Ollama `true` or a level.
    thinking: Option<serde_json::Value>,
    think: Option<serde_json::Value>,
    #[serde(rename = "generationConfig", alias = "generation_config")]
    generation_config: Option<GenerationConfig>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Reasoning<'a> {
    #[serde(borrow)]
    effort: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GenerationConfig {
    #[serde(rename = "thinkingConfig", alias = "thinking_config")]
    thinking_config: Option<ThinkingConfig>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ThinkingConfig {
    #[serde(rename = "thinkingBudget", alias = "thinking_budget")]
    thinking_budget: Option<i64>,
    #[serde(rename = "thinkingLevel", alias = "thinking_level")]
    thinking_level: Option<String>,
}

/// A thinking budget as a bucket: the next power of two (at least 1024), so 3000 and 4000
/// tokens share a history. 0 is `none`; -1 (Gemini's dynamic thinking) is `dynamic`.
fn budget(tokens: i64) -> String {
    match tokens {
        0 => "none".to_owned(),
        n if n < 0 => "dynamic".to_owned(),
        n => format!("budget<={}", (n as u64).next_power_of_two().max(1024)),
    }
}

fn level(text: &str) -> Option<String> {
    let t = text.trim().to_ascii_lowercase();
    (!t.is_empty() && t.len() <= 16).then_some(t)
}

/// The traits of a request to `path` (below the route, without the query) with body `body`
/// (the whole body; `None` when it was not kept whole).
pub fn read(
    api: Api,
    method: &str,
    path: &str,
    query: Option<&str>,
    body: Option<&[u8]>,
) -> RequestTraits {
    let parsed: Option<Body<'_>> = body
        .filter(|b| b.first_non_ws() == Some(b'{'))
        .and_then(|b| serde_json::from_slice(b).ok());
    let stream_flag = parsed
        .as_ref()
        .and_then(|b| b.stream)
        .map(|s| serde_json::json!({ "stream": s }));
    let streams = request_streams(api, method, path, query, stream_flag.as_ref());
    let mut traits = RequestTraits {
        model: super::model_in_path(path).map(str::to_owned),
        streams,
        effort: None,
    };
    let Some(b) = parsed else {
        return traits;
    };
    if let Some(m) = b.model.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
        traits.model = Some(m.to_owned());
    }
    traits.effort = b
        .reasoning_effort
        .as_deref()
        .and_then(level)
        .or_else(|| {
            b.reasoning
                .and_then(|r| r.effort.as_deref().and_then(level))
        })
        .or_else(|| b.thinking.as_ref().and_then(thinking))
        .or_else(|| b.think.as_ref().and_then(think))
        .or_else(|| {
            let t = b.generation_config?.thinking_config?;
            t.thinking_level
                .as_deref()
                .and_then(level)
                .or_else(|| t.thinking_budget.map(budget))
        });
    traits
}

/// Anthropic's `thinking`: `{"type": "enabled", "budget_tokens": N}` or `{"type": "disabled"}`.
fn thinking(v: &serde_json::Value) -> Option<String> {
    match v.get("type").and_then(|t| t.as_str()) {
        Some("disabled") => Some("none".to_owned()),
        Some("adaptive") => Some("adaptive".to_owned()),
        _ => v
            .get("budget_tokens")
            .and_then(serde_json::Value::as_i64)
            .map(budget),
    }
}

/// Ollama's `think`: `true`, `false` or a level (`"high"`).
fn think(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Bool(true) => Some("on".to_owned()),
        serde_json::Value::Bool(false) => Some("none".to_owned()),
        serde_json::Value::String(s) => level(s),
        _ => None,
    }
}

trait FirstNonWs {
    fn first_non_ws(&self) -> Option<u8>;
}

impl FirstNonWs for [u8] {
    fn first_non_ws(&self) -> Option<u8> {
        self.iter().copied().find(|b| !b.is_ascii_whitespace())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traits(api: Api, path: &str, body: &str) -> RequestTraits {
        read(api, "POST", path, None, Some(body.as_bytes()))
    }

    #[test]
    fn each_api_names_its_effort_its_own_way() {
        let cases = [
            (
                Api::OpenAi,
                "/v1/chat/completions",
                r#"{"model":"o3","reasoning_effort":"High","stream":true,"messages":[{"role":"user","content":"model: x"}]}"#,
                Some("o3"),
                true,
                Some("high"),
            ),
            (
                Api::OpenAi,
                "/v1/responses",
                r#"{"model":"gpt-5","reasoning":{"effort":"low","summary":"auto"},"input":"hi"}"#,
                Some("gpt-5"),
                false,
                Some("low"),
            ),
            (
                Api::Anthropic,
                "/v1/messages",
                r#"{"model":"claude","stream":true,"thinking":{"type":"enabled","budget_tokens":3000}}"#,
                Some("claude"),
                true,
                Some("budget<=4096"),
            ),
            (
                Api::Gemini,
                "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
                r#"{"contents":[],"generationConfig":{"thinkingConfig":{"thinkingBudget":-1}}}"#,
                Some("gemini-2.5-pro"),
                true,
                Some("dynamic"),
            ),
            (
                Api::Ollama,
                "/api/chat",
                r#"{"model":"qwen3","think":true,"messages":[]}"#,
                Some("qwen3"),
                true,
                Some("on"),
            ),
            (
                Api::OpenAi,
                "/v1/chat/completions",
                r#"{"model":"gpt-4o","messages":[]}"#,
                Some("gpt-4o"),
                false,
                None,
            ),
        ];
        for (api, path, body, model, streams, effort) in cases {
            let t = traits(api, path, body);
            assert_eq!(t.model.as_deref(), model, "{body}");
            assert_eq!(t.streams, streams, "{body}");
            assert_eq!(t.effort.as_deref(), effort, "{body}");
        }
    }

    #[test]
    fn a_body_that_is_not_json_or_not_whole_still_gives_path_traits() {
        let t = read(
            Api::Gemini,
            "POST",
            "/v1beta/models/flash:generateContent",
            None,
            Some(b"{\"contents\":[" as &[u8]),
        );
        assert_eq!(t.model.as_deref(), Some("flash"));
        assert!(!t.streams);
        assert_eq!(t.effort, None);
        let none = read(Api::OpenAi, "POST", "/v1/chat/completions", None, None);
        assert_eq!(none, RequestTraits::default());
    }
}
