//! Deciding from the request alone whether its response will stream.

use serde_json::Value;

use crate::apis::Api;

/// True when the response to this request will be a stream:
/// - `POST` with `"stream": true` in the body (OpenAI chat/completions, Responses, Anthropic, and
///   the OpenAI-compatible paths of Gemini and Ollama);
/// - Gemini `...:streamGenerateContent` (SSE with `alt=sse`, a JSON array without);
/// - Ollama `/api/chat` and `/api/generate` unless the body says `"stream": false`;
/// - Responses resumption: `GET .../responses/{id}?stream=true`.
///
/// The path decides, not the route's api: gateways serve each other's shapes. `_api` is kept so
/// callers pass what they know if a future dialect needs it.
pub fn request_streams(
    _api: Api,
    method: &str,
    path: &str,
    query: Option<&str>,
    body: Option<&Value>,
) -> bool {
    let path = path.trim_end_matches('/');
    let stream_flag = body.and_then(|b| b.get("stream")).and_then(Value::as_bool);
    if method.eq_ignore_ascii_case("GET") {
        return path.contains("/responses/") && query_flag(query, "stream");
    }
    if !method.eq_ignore_ascii_case("POST") {
        return false;
    }
    if path.contains(":streamGenerateContent") {
        return true;
    }
    if path.contains(":generateContent") {
        return false;
    }
    if path.ends_with("/api/chat") || path.ends_with("/api/generate") {
        return stream_flag != Some(false);
    }
    stream_flag.unwrap_or(false)
}

fn query_flag(query: Option<&str>, name: &str) -> bool {
    query.unwrap_or("").split('&').any(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        k == name && (v == "true" || v == "1")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decision_table() {
        let on = json!({"stream": true});
        let off = json!({"stream": false});
        let none = json!({"model": "m"});
        type Case<'a> = (
            Api,
            &'a str,
            &'a str,
            Option<&'a str>,
            Option<&'a Value>,
            bool,
        );
        let cases: [Case; 16] = [
            (
                Api::OpenAi,
                "POST",
                "/v1/chat/completions",
                None,
                Some(&on),
                true,
            ),
            (
                Api::OpenAi,
                "POST",
                "/v1/chat/completions",
                None,
                Some(&none),
                false,
            ),
            (Api::OpenAi, "POST", "/v1/responses", None, Some(&on), true),
            (
                Api::OpenAi,
                "POST",
                "/v1/responses",
                None,
                Some(&off),
                false,
            ),
            (
                Api::OpenAi,
                "GET",
                "/v1/responses/resp_1",
                Some("stream=true&starting_after=4"),
                None,
                true,
            ),
            (
                Api::OpenAi,
                "GET",
                "/v1/responses/resp_1",
                None,
                None,
                false,
            ),
            (
                Api::Anthropic,
                "POST",
                "/v1/messages",
                None,
                Some(&on),
                true,
            ),
            (Api::Anthropic, "POST", "/v1/messages", None, None, false),
            (
                Api::Gemini,
                "POST",
                "/v1beta/models/m:streamGenerateContent",
                Some("alt=sse"),
                None,
                true,
            ),
            (
                Api::Gemini,
                "POST",
                "/v1beta/models/m:generateContent",
                None,
                Some(&on),
                false,
            ),
            (
                Api::Gemini,
                "POST",
                "/v1beta/openai/chat/completions",
                None,
                Some(&on),
                true,
            ),
            (Api::Ollama, "POST", "/api/chat", None, Some(&none), true),
            (
                Api::Ollama,
                "POST",
                "/api/generate",
                None,
                Some(&off),
                false,
            ),
            (Api::Ollama, "POST", "/api/chat", None, None, true),
            (
                Api::Ollama,
                "POST",
                "/v1/chat/completions",
                None,
                Some(&none),
                false,
            ),
            (Api::Ollama, "POST", "/api/embed", None, Some(&none), false),
        ];
        for (api, method, path, query, body, want) in cases {
            assert_eq!(
                request_streams(api, method, path, query, body),
                want,
                "{method} {path}"
            );
        }
    }
}
