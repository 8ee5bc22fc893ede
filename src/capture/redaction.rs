//! Builds the redaction step the writer applies to every entry (a record, a beacon) before it
//! is stored or spilled.

use super::redact::{RedactConfig, Redactor};
use super::writer::Prepare;
use crate::config::Config;
use std::sync::{Arc, RwLock};

/// The redactor for `config`: the configured paths and patterns, plus every secret aloud knows
/// (route API keys, client tokens), which are never stored whatever the config says.
pub fn redactor(config: &Config) -> Result<Redactor, String> {
    redactor_with(config, secrets(config))
}

/// The secrets `config` holds: route API keys and client tokens.
pub fn secrets(config: &Config) -> Vec<String> {
    config
        .routes
        .iter()
        .filter_map(|r| r.api_key.clone())
        .chain(config.server.client_tokens.iter().cloned())
        .chain(
            config
                .cluster
                .database
                .as_ref()
                .and_then(|u| u.password().map(str::to_owned)),
        )
        .chain(match &config.capture.database {
            crate::config::Database::Postgres(u) => u.password().map(str::to_owned),
            crate::config::Database::Sqlite(_) => None,
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// The redactor for `config`'s redaction settings and these secrets.
pub fn redactor_with(config: &Config, secrets: Vec<String>) -> Result<Redactor, String> {
    let r = &config.capture.redact;
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
    Ok(Prepare(Some(Arc::new(move |entry| {
        redactor.redact_entry(entry)
    }))))
}

/// The redactor the writer applies, replaced when a reload brings new secrets (read once per
/// record, on the writer's thread).
pub struct Live(RwLock<Arc<Redactor>>);

impl Live {
    /// A replaceable redactor for `config`'s secrets.
    pub fn new(config: &Config) -> Result<Arc<Live>, String> {
        Ok(Arc::new(Live(RwLock::new(Arc::new(redactor(config)?)))))
    }

    pub fn set(&self, redactor: Redactor) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(redactor);
    }

    /// The redactor now (a reload may replace it).
    pub fn get(&self) -> Arc<Redactor> {
        Arc::clone(&self.0.read().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The writer's prepare step with a redactor a reload can replace.
pub fn prepare_live(config: &Config) -> Result<(Prepare, Arc<Live>), String> {
    let live = Arc::new(Live(RwLock::new(Arc::new(redactor(config)?))));
    let used = Arc::clone(&live);
    let prepare = Prepare(Some(Arc::new(move |entry| used.get().redact_entry(entry))));
    Ok((prepare, live))
}
