//! Choosing how to read a response: the dialect from (api, path, content type).

use crate::apis::{Api, contains};

/// The stream formats aloud can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    OpenAiChat,
    OpenAiResponses,
    Anthropic,
    GeminiSse,
    GeminiJsonArray,
    OllamaNdjson,
}

impl Dialect {
    /// Chooses by path first (gateways serve each other's shapes), then content type, then api.
    /// `None` means the response is not a stream this crate reads (e.g. a plain JSON answer).
    pub fn detect(api: Api, path_and_query: &str, content_type: &str) -> Option<Dialect> {
        let (path, query) = split(path_and_query);
        let ct = crate::apis::media_type(content_type);
        let sse = ct == "text/event-stream" || (ct.is_empty() && contains(query, "alt=sse"));
        let sse_or_unknown = sse || ct.is_empty();
        let jsonish = ct.is_empty() || contains(&ct, "json");
        match endpoint(path) {
            Some(Endpoint::Chat) => return sse_or_unknown.then_some(Dialect::OpenAiChat),
            Some(Endpoint::Responses) => {
                return sse_or_unknown.then_some(Dialect::OpenAiResponses);
            }
            Some(Endpoint::Messages) => return sse_or_unknown.then_some(Dialect::Anthropic),
            Some(Endpoint::Gemini) if sse => return Some(Dialect::GeminiSse),
            Some(Endpoint::Gemini) => return jsonish.then_some(Dialect::GeminiJsonArray),
            Some(Endpoint::Ollama) => return jsonish.then_some(Dialect::OllamaNdjson),
            None => {}
        }
        match (api, sse) {
            (Api::OpenAi, true) => Some(Dialect::OpenAiChat),
            (Api::Anthropic, true) => Some(Dialect::Anthropic),
            (Api::Gemini, true) => Some(Dialect::GeminiSse),
            (Api::Ollama, false) if contains(&ct, "ndjson") => Some(Dialect::OllamaNdjson),
            _ => None,
        }
    }

    /// Whether the path is a model api's generation endpoint, whose streams end with a marker
    /// or a finish reason (docs/streams.md, "End of a stream"). A stream found only by its content
    /// type (any `text/event-stream` on an OpenAI route, Ollama's `/api/pull`) has no such end.
    pub fn marks_end(path_and_query: &str) -> bool {
        endpoint(split(path_and_query).0).is_some()
    }

    pub fn is_sse(self) -> bool {
        !matches!(self, Dialect::GeminiJsonArray | Dialect::OllamaNdjson)
    }

    /// Whether clients of this dialect tolerate an injected `: comment` line between events
    /// (docs/streams.md, "Injected bytes"). Gemini and Ollama clients do not.
    pub fn tolerates_comments(self) -> bool {
        matches!(
            self,
            Dialect::OpenAiChat | Dialect::OpenAiResponses | Dialect::Anthropic
        )
    }
}

/// The generation endpoints a path names: gateways serve each other's shapes, so the path
/// decides before the route's api.
enum Endpoint {
    Chat,
    Responses,
    Messages,
    Gemini,
    Ollama,
}

fn endpoint(path: &str) -> Option<Endpoint> {
    let has = |needle| contains(path, needle);
    if path.ends_with("/completions") {
        Some(Endpoint::Chat)
    } else if path.ends_with("/responses") || has("/responses/") {
        Some(Endpoint::Responses)
    } else if path.ends_with("/messages") {
        Some(Endpoint::Messages)
    } else if has(":streamGenerateContent") {
        Some(Endpoint::Gemini)
    } else if path.ends_with("/api/chat") || path.ends_with("/api/generate") {
        Some(Endpoint::Ollama)
    } else {
        None
    }
}

/// The path without its query and trailing slashes, and the query.
fn split(path_and_query: &str) -> (&str, &str) {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    (path.trim_end_matches('/'), query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_table() {
        let sse = "text/event-stream";
        let cases = [
            (
                Api::OpenAi,
                "/v1/chat/completions",
                sse,
                Some(Dialect::OpenAiChat),
            ),
            (
                Api::OpenAi,
                "/v1/chat/completions",
                "application/json",
                None,
            ),
            (
                Api::OpenAi,
                "/v1/responses",
                sse,
                Some(Dialect::OpenAiResponses),
            ),
            (
                Api::OpenAi,
                "/v1/responses/resp_1?stream=true",
                sse,
                Some(Dialect::OpenAiResponses),
            ),
            (
                Api::Anthropic,
                "/v1/messages",
                sse,
                Some(Dialect::Anthropic),
            ),
            (Api::Ollama, "/v1/messages", sse, Some(Dialect::Anthropic)),
            (
                Api::Gemini,
                "/v1beta/models/m:streamGenerateContent?alt=sse",
                sse,
                Some(Dialect::GeminiSse),
            ),
            (
                Api::Gemini,
                "/v1beta/models/m:streamGenerateContent",
                "application/json",
                Some(Dialect::GeminiJsonArray),
            ),
            (
                Api::Gemini,
                "/v1beta/openai/chat/completions",
                sse,
                Some(Dialect::OpenAiChat),
            ),
            (
                Api::Ollama,
                "/v1/chat/completions",
                sse,
                Some(Dialect::OpenAiChat),
            ),
            (
                Api::Ollama,
                "/api/chat",
                "application/x-ndjson",
                Some(Dialect::OllamaNdjson),
            ),
            (
                Api::Ollama,
                "/api/generate",
                "application/x-ndjson",
                Some(Dialect::OllamaNdjson),
            ),
            (Api::Ollama, "/api/tags", "application/json", None),
            (
                Api::OpenAi,
                "/custom/stream",
                sse,
                Some(Dialect::OpenAiChat),
            ),
        ];
        for (api, path, ct, want) in cases {
            assert_eq!(Dialect::detect(api, path, ct), want, "{api} {path} {ct}");
        }
    }
}
