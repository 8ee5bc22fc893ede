//! What differs per provider api: names, error envelopes (written, and read back from an
//! upstream), how credentials are sent, and how their streams read (`stream/`).

pub mod answer;
pub mod envelope;
pub mod stream;
pub mod traits;
pub mod upstream_error;
pub mod usage;

use serde::Deserialize;

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
    let after = path.split("/models/").nth(1)?;
    let model = after.split(':').next()?;
    (!model.is_empty()).then_some(model)
}
