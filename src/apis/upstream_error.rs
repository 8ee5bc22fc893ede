//! Reading an upstream's error body: its own message and error type, from each api's envelope
//! (the inverse of `envelope`). Pure; what cannot be read is `None`, never an error.

use super::Api;
use serde_json::Value;

/// What an upstream said about its error, in its own words.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpstreamError {
    /// The upstream's own message (`"Rate limit reached for ..."`).
    pub message: Option<String>,
    /// Its error type: OpenAI's and Anthropic's `type` (`rate_limit_error`), Gemini's `status`
    /// (`RESOURCE_EXHAUSTED`). Ollama names none.
    pub kind: Option<String>,
}

/// Reads `body` as `api`'s error envelope:
///
/// - OpenAI `{"error":{"message","type","param","code"}}`;
/// - Anthropic `{"type":"error","error":{"type","message"}}`;
/// - Gemini `{"error":{"code","message","status"}}`, also inside a one-element array (its
///   streaming endpoint without `alt=sse` answers a JSON array);
/// - Ollama `{"error":"message"}`.
///
/// Gateways answer in each other's shapes, so every shape is tried, `api`'s own first; OpenAI-
/// compatible servers that put `message`/`type` at the top level (vLLM) or answer FastAPI's
/// `{"detail":"..."}` are read too. A body that is not JSON gives nothing.
pub fn read(api: Api, body: &[u8]) -> UpstreamError {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return UpstreamError::default();
    };
    let v = match v {
        Value::Array(mut items) if items.len() == 1 => items.swap_remove(0),
        v => v,
    };
    match v.get("error") {
        Some(Value::String(message)) => UpstreamError {
            message: non_empty(message),
            kind: None,
        },
        Some(error @ Value::Object(_)) => from_object(api, error),
        // `{"object":"error","message":...,"type":...}` and `{"detail":"..."}`.
        _ if v.get("message").is_some() => from_object(api, &v),
        _ => UpstreamError {
            message: v.get("detail").and_then(Value::as_str).and_then(non_empty),
            kind: None,
        },
    }
}

/// `{"message", "type" | "status"}`: Gemini names its kind `status`, the others `type`.
fn from_object(api: Api, error: &Value) -> UpstreamError {
    let field = |k: &str| error.get(k).and_then(Value::as_str).and_then(non_empty);
    let kind = match api {
        Api::Gemini => field("status").or_else(|| field("type")),
        _ => field("type").or_else(|| field("status")),
    };
    UpstreamError {
        message: field("message"),
        kind: kind.filter(|k| k != "error"),
    }
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_str(api: Api, body: &str) -> (Option<String>, Option<String>) {
        let e = read(api, body.as_bytes());
        (e.message, e.kind)
    }

    fn some(m: &str, k: &str) -> (Option<String>, Option<String>) {
        (Some(m.to_owned()), Some(k.to_owned()))
    }

    #[test]
    fn openai() {
        let body = r#"{"error":{"message":"Rate limit reached for gpt-x","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        assert_eq!(
            read_str(Api::OpenAi, body),
            some("Rate limit reached for gpt-x", "requests")
        );
        // vLLM and other compatible servers: the fields at the top level.
        let vllm =
            r#"{"object":"error","message":"model not found","type":"NotFoundError","code":404}"#;
        assert_eq!(
            read_str(Api::OpenAi, vllm),
            some("model not found", "NotFoundError")
        );
        assert_eq!(
            read_str(Api::OpenAi, r#"{"detail":"Not Found"}"#),
            (Some("Not Found".into()), None)
        );
    }

    #[test]
    fn anthropic() {
        let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            read_str(Api::Anthropic, body),
            some("Overloaded", "overloaded_error")
        );
    }

    #[test]
    fn gemini() {
        let body = r#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#;
        assert_eq!(
            read_str(Api::Gemini, body),
            some("Resource has been exhausted", "RESOURCE_EXHAUSTED")
        );
        assert_eq!(
            read_str(Api::Gemini, &format!("[{body}]")),
            some("Resource has been exhausted", "RESOURCE_EXHAUSTED")
        );
    }

    #[test]
    fn ollama() {
        assert_eq!(
            read_str(
                Api::Ollama,
                r#"{"error":"model \"x\" not found, try pulling it first"}"#
            ),
            (
                Some("model \"x\" not found, try pulling it first".into()),
                None
            )
        );
    }

    #[test]
    fn what_cannot_be_read_is_none() {
        for body in [
            "<html>502 Bad Gateway</html>",
            "",
            "{}",
            r#"{"error":""}"#,
            r#"{"error":{"type":"error"}}"#,
            "[1,2]",
        ] {
            assert_eq!(
                read(Api::OpenAi, body.as_bytes()),
                UpstreamError::default(),
                "{body}"
            );
        }
    }

    #[test]
    fn every_envelope_aloud_writes_reads_back() {
        let status = http::StatusCode::TOO_MANY_REQUESTS;
        for api in Api::ALL {
            let body = super::super::envelope::error_body(api, status, "slow down").to_string();
            let e = read(api, body.as_bytes());
            assert_eq!(e.message.as_deref(), Some("slow down"), "{api:?}");
            let kind = match api {
                Api::OpenAi | Api::Anthropic => Some("rate_limit_error"),
                Api::Gemini => Some("RESOURCE_EXHAUSTED"),
                Api::Ollama => None,
            };
            assert_eq!(e.kind.as_deref(), kind, "{api:?}");
        }
    }
}
