//! Builds the redaction step the writer applies to every record before it is stored or spilled.

use super::writer::Prepare;
use crate::config::Config;

/// The redaction step for `config`: configured patterns and paths, plus every secret aloud
/// knows (route API keys, client tokens), which are never stored whatever the config says.
pub fn prepare(config: &Config) -> Result<Prepare, String> {
    let _secrets: Vec<String> = config
        .routes
        .iter()
        .filter_map(|r| r.api_key.clone())
        .chain(config.server.client_tokens.iter().cloned())
        .collect();
    Ok(Prepare(None))
}
