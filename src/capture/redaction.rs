//! Builds the redaction step the writer applies to every entry (a record, a beacon) before it
//! is stored or spilled.

use super::redact::{RedactConfig, Redactor};
use super::writer::Prepare;
use crate::config::Config;
use std::cell::RefCell;
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

    /// Runs `f` with this thread's own copy of the redactor now, made on the thread's first
    /// call and again after a reload. A copy searches with caches of its own, where the shared
    /// redactor's regexes serve every thread but their first through a lock (a tenth of the
    /// overflow thread's time per record, measured under load). The copy keeps the redactor it
    /// was made from until the thread's next call, so an address compared is never reused.
    pub fn with_own<R>(&self, f: impl FnOnce(&Redactor) -> R) -> R {
        let now = self.get();
        OWN.with(|own| {
            let Ok(mut own) = own.try_borrow_mut() else {
                return f(&now);
            };
            if !matches!(&*own, Some((from, _)) if Arc::ptr_eq(from, &now)) {
                *own = None;
            }
            let (_, copy) = own.get_or_insert_with(|| {
                let copy = Redactor::clone(&now);
                (now, copy)
            });
            f(copy)
        })
    }
}

thread_local! {
    /// This thread's copy of the live redactor, beside the one it was made from.
    static OWN: RefCell<Option<(Arc<Redactor>, Redactor)>> = const { RefCell::new(None) };
}

/// The writer's prepare step with a redactor a reload can replace.
pub fn prepare_live(config: &Config) -> Result<(Prepare, Arc<Live>), String> {
    let live = Arc::new(Live(RwLock::new(Arc::new(redactor(config)?))));
    let used = Arc::clone(&live);
    let prepare = Prepare(Some(Arc::new(move |entry| {
        used.with_own(|r| r.redact_entry(entry))
    })));
    Ok((prepare, live))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::redact::RedactConfig;

    fn redactor(secret: &str) -> Redactor {
        Redactor::new(&RedactConfig {
            secrets: vec![secret.to_owned()],
            ..RedactConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn a_thread_s_own_copy_follows_a_reload() {
        let live = Live(RwLock::new(Arc::new(redactor("first-secret-1234"))));
        let text = "first-secret-1234 then second-secret-5678";
        let before = live.with_own(|r| r.redact_str(text).into_owned());
        assert!(!before.contains("first-secret") && before.contains("second-secret-5678"));
        live.set(redactor("second-secret-5678"));
        let after = live.with_own(|r| r.redact_str(text).into_owned());
        assert!(after.contains("first-secret-1234") && !after.contains("second-secret"));
        // Another thread makes its own copy of the redactor now, and redacts the same.
        let elsewhere = std::thread::scope(|s| {
            s.spawn(|| live.with_own(|r| r.redact_str(text).into_owned()))
                .join()
                .unwrap()
        });
        assert_eq!(elsewhere, after);
    }

    #[test]
    fn a_copy_made_inside_a_copy_s_use_falls_back_to_the_shared_one() {
        let live = Live(RwLock::new(Arc::new(redactor("inner-secret-1234"))));
        let nested =
            live.with_own(|_| live.with_own(|r| r.redact_str("inner-secret-1234").into_owned()));
        assert!(!nested.contains("inner-secret"));
    }
}
