//! The model and token counts of a whole (non-streamed) answer, read without building a JSON
//! tree: what metrics need when no stream interpreter saw the answer. Pure.
//!
//! serde skips every field it is not asked for, so this reads a few keys out of a body at the
//! speed of a scan; `answer::read` (the capture's full reading) stays off the request thread.

use super::stream::Usage;
use serde::Deserialize;
use std::borrow::Cow;

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    /// Gemini's name for the model that answered.
    #[serde(borrow, default, rename = "modelVersion")]
    model_version: Option<Cow<'a, str>>,
    /// OpenAI chat (`prompt_tokens`...), Responses and Anthropic (`input_tokens`...).
    #[serde(default)]
    usage: Option<Counts>,
    #[serde(default, rename = "usageMetadata")]
    usage_metadata: Option<GeminiCounts>,
    /// Ollama.
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
}

#[derive(Deserialize)]
struct Counts {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens_details: Option<Details>,
    #[serde(default)]
    output_tokens_details: Option<Details>,
}

#[derive(Deserialize)]
struct Details {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct GeminiCounts {
    #[serde(default, rename = "promptTokenCount")]
    prompt: Option<u64>,
    #[serde(default, rename = "candidatesTokenCount")]
    candidates: Option<u64>,
    #[serde(default, rename = "thoughtsTokenCount")]
    thoughts: Option<u64>,
}

/// The model the answer names and the tokens it reports, for any of the five shapes; `None`s
/// when the body is not JSON of such a shape.
pub fn read(body: &[u8]) -> (Option<String>, Option<Usage>) {
    let Ok(a) = serde_json::from_slice::<Answer<'_>>(body) else {
        return (None, None);
    };
    let model = a
        .model
        .or(a.model_version)
        .map(Cow::into_owned)
        .filter(|m| !m.is_empty());
    let usage = if let Some(u) = a.usage {
        let reasoning = |d: Option<Details>| d.and_then(|d| d.reasoning_tokens);
        Some(Usage {
            input: u.prompt_tokens.or(u.input_tokens),
            output: u.completion_tokens.or(u.output_tokens),
            reasoning: reasoning(u.completion_tokens_details)
                .or_else(|| reasoning(u.output_tokens_details)),
        })
    } else if let Some(g) = a.usage_metadata {
        Some(Usage {
            input: g.prompt,
            output: g.candidates,
            reasoning: g.thoughts,
        })
    } else if a.prompt_eval_count.is_some() || a.eval_count.is_some() {
        Some(Usage {
            input: a.prompt_eval_count,
            output: a.eval_count,
            reasoning: None,
        })
    } else {
        None
    };
    (model, usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(i: u64, o: u64, r: Option<u64>) -> Option<Usage> {
        Some(Usage {
            input: Some(i),
            output: Some(o),
            reasoning: r,
        })
    }

    #[test]
    fn every_shape_gives_its_model_and_tokens() {
        let cases: [(&str, &str, Option<Usage>); 5] = [
            (
                r#"{"id":"c","model":"gpt-x","choices":[{"message":{"content":"{\"model\":\"no\"}"}}],"usage":{"prompt_tokens":3,"completion_tokens":2,"completion_tokens_details":{"reasoning_tokens":7}}}"#,
                "gpt-x",
                usage(3, 2, Some(7)),
            ),
            (
                r#"{"object":"response","model":"o-x","output":[],"usage":{"input_tokens":4,"output_tokens":5,"output_tokens_details":{"reasoning_tokens":1}}}"#,
                "o-x",
                usage(4, 5, Some(1)),
            ),
            (
                r#"{"type":"message","content":[{"type":"text","text":"a"}],"model":"claude-x","usage":{"input_tokens":6,"output_tokens":1}}"#,
                "claude-x",
                usage(6, 1, None),
            ),
            (
                r#"{"candidates":[],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":9,"thoughtsTokenCount":2},"modelVersion":"gem-x"}"#,
                "gem-x",
                usage(8, 9, Some(2)),
            ),
            (
                r#"{"model":"llama-x","message":{"content":"hi"},"prompt_eval_count":10,"eval_count":11}"#,
                "llama-x",
                usage(10, 11, None),
            ),
        ];
        for (body, model, want) in cases {
            let (m, u) = read(body.as_bytes());
            assert_eq!(m.as_deref(), Some(model), "{body}");
            assert_eq!(u, want, "{body}");
        }
    }

    #[test]
    fn anything_else_gives_nothing() {
        for body in [
            "",
            "not json",
            "[1,2]",
            r#"{"model":3}"#,
            r#"{"error":{}}"#,
            "{\"model\":\"a\"",
        ] {
            let (m, u) = read(body.as_bytes());
            assert!(u.is_none(), "{body}");
            assert!(m.is_none() || body.contains("error"), "{body}");
        }
    }
}
