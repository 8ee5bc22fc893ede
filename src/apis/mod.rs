//! What differs per provider api: names, error envelopes (written, and read back from an
//! upstream), how credentials are sent, and how their streams read (`stream/`).

pub mod answer;
pub mod at;
pub mod envelope;
pub mod stream;
pub mod traits;
pub mod upstream_error;
pub mod usage;

use serde::Deserialize;
use std::borrow::Cow;

/// Whether `needle` occurs in `haystack`. `str::contains` with a `&str` sets up a Two-Way
/// searcher per call, and memchr's one-shot `memmem::find` a searcher of its own (about 200
/// instructions), which on a path or a content type costs more than the search: a haystack
/// under [`SHORT`] bytes is compared window by window, first byte first.
pub fn contains(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    match n.first() {
        None => true,
        Some(&first) if h.len() < SHORT => h.windows(n.len()).any(|w| w[0] == first && w == n),
        Some(_) => memchr::memmem::find(h, n).is_some(),
    }
}

/// Below this length [`contains`] scans without building a searcher.
const SHORT: usize = 128;

/// A `Content-Type`'s media type (before any `;` parameter), trimmed and lowercased; borrowed
/// when it is already lowercase (every upstream we know sends it so), since this is read for
/// every response.
pub fn media_type(content_type: &str) -> Cow<'_, str> {
    let end = memchr::memchr(b';', content_type.as_bytes()).unwrap_or(content_type.len());
    // HTTP's whitespace is ASCII (RFC 9110, 5.6.3).
    let essence = content_type[..end].trim_ascii();
    if essence.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(essence.to_ascii_lowercase())
    } else {
        Cow::Borrowed(essence)
    }
}

/// The wire dialect of a route: decides error envelopes, credentials and (later) stream reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    OpenAi,
    Anthropic,
    Gemini,
    Ollama,
}

impl Api {
    pub const ALL: [Api; 4] = [Api::OpenAi, Api::Anthropic, Api::Gemini, Api::Ollama];

    pub fn as_str(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Anthropic => "anthropic",
            Api::Gemini => "gemini",
            Api::Ollama => "ollama",
        }
    }

    /// The header (name, value) that carries an injected API key for this api.
    pub fn credential_header(self, key: &str) -> (&'static str, String) {
        match self {
            Api::OpenAi | Api::Ollama => ("authorization", format!("Bearer {key}")),
            Api::Anthropic => ("x-api-key", key.to_owned()),
            Api::Gemini => ("x-goog-api-key", key.to_owned()),
        }
    }
}

impl std::fmt::Display for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The model a Gemini-style path names:
/// `/v1beta/models/gemini-2.5-pro:streamGenerateContent` -> `gemini-2.5-pro`.
pub fn model_in_path(path: &str) -> Option<&str> {
    // memchr's searcher: `str::split` with a `&str` pattern sets up a Two-Way searcher per call,
    // which cost more than the rest of this on every request.
    const MODELS: &str = "/models/";
    let at = memchr::memmem::find(path.as_bytes(), MODELS.as_bytes())? + MODELS.len();
    let after = &path[at..];
    // Up to the next `/models/`, then up to the first `:` (the method), as `split` gave.
    let after =
        &after[..memchr::memmem::find(after.as_bytes(), MODELS.as_bytes()).unwrap_or(after.len())];
    let model = &after[..memchr::memchr(b':', after.as_bytes()).unwrap_or(after.len())];
    (!model.is_empty()).then_some(model)
}

#[cfg(test)]
mod tests {
    use super::{contains, media_type};
    use std::borrow::Cow;

    #[test]
    fn the_model_in_a_path_is_the_segment_after_models_up_to_the_method() {
        use super::model_in_path;
        assert_eq!(
            model_in_path("/v1beta/models/gemini-2.5-pro:streamGenerateContent"),
            Some("gemini-2.5-pro")
        );
        assert_eq!(model_in_path("/v1/models/m"), Some("m"));
        assert_eq!(model_in_path("/v1/models/a/models/b:x"), Some("a"));
        assert_eq!(model_in_path("/models//models/x"), None);
        assert_eq!(model_in_path("/v1/models/:x"), None);
        assert_eq!(model_in_path("/v1/chat/completions"), None);
    }

    #[test]
    fn contains_agrees_with_str_contains() {
        let long = "x".repeat(200) + "json";
        let cases = [
            ("", ""),
            ("", "a"),
            ("a", ""),
            ("json", "json"),
            ("jso", "json"),
            ("application/json", "json"),
            ("application/jsonl", "json"),
            ("jjson", "json"),
            ("application/x-ndjson", "ndjson"),
            ("/v1/responses/resp_1", "/responses/"),
            ("/v1/responses", "/responses/"),
            ("a:streamGenerateContent", ":streamGenerateContent"),
            ("alt=ss", "alt=sse"),
            (long.as_str(), "json"),
            (long.as_str(), "jsonx"),
            (&long[..127], "xj"),
            (&long[..128], "xj"),
        ];
        for (h, n) in cases {
            assert_eq!(contains(h, n), h.contains(n), "{h:?} {n:?}");
        }
    }

    #[test]
    fn media_type_drops_parameters_and_lowercases_only_when_needed() {
        assert!(matches!(
            media_type(" text/event-stream; charset=utf-8"),
            Cow::Borrowed("text/event-stream")
        ));
        assert_eq!(
            media_type("Application/X-NDJSON ;q=1"),
            "application/x-ndjson"
        );
        assert_eq!(media_type(""), "");
    }
}
