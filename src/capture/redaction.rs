//! Builds the redaction step the writer applies to every record before it is stored or spilled.

use super::redact::{RedactConfig, Redactor};
use super::writer::Prepare;
use crate::config::Config;
use std::sync::Arc;

/// The redactor for `config`: the configured paths and patterns, plus every secret aloud knows
/// (route API keys, client tokens), which are never stored whatever the config says.
pub fn redactor(config: &Config) -> Result<Redactor, String> {
    let r = &config.capture.redact;
    let secrets = config
        .routes
        .iter()
        .filter_map(|r| r.api_key.clone())
        .chain(config.server.client_tokens.iter().cloned())
        .filter(|s| !s.is_empty())
        .collect();
    Redactor::new(&RedactConfig {
        json_paths: r.json_paths.clone(),
        patterns: r.patterns.clone(),
        emails: r.emails,
        card_numbers: r.card_numbers,
        api_keys: r.api_keys,
        secrets,
    })
    .map_err(|e| format!("capture.redact: {e}"))
}

/// The writer's prepare step: redact each record.
pub fn prepare(config: &Config) -> Result<Prepare, String> {
    let redactor = redactor(config)?;
    Ok(Prepare(Some(Arc::new(move |record| {
        redactor.redact_record(record)
    }))))
}
