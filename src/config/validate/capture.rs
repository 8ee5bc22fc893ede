//! `[capture]`: where records go (a SQLite path, a Postgres URL, or the URL in `database_env`),
//! the spill, the writer's bounds and redaction.

use super::{Ctx, regex_syntax_ok};
use crate::config::raw::RawCapture;
use crate::config::{
    CaptureConfig, ConfigError, Database, Env, PostgresUrl, RedactConfig, defaults,
};
use std::path::PathBuf;

pub(super) fn capture(
    raw: RawCapture,
    ctx: &Ctx<'_>,
    env: &dyn Env,
) -> Result<CaptureConfig, ConfigError> {
    let database = database(&raw, ctx, env)?;
    let spill_dir = match (&raw.spill_dir, &database) {
        (Some(d), _) => d.get_ref().clone(),
        (None, Database::Sqlite(path)) => format!("{}.spill", path.display()),
        (None, Database::Postgres(_)) => defaults::POSTGRES_SPILL_DIR.to_owned(),
    };
    for p in &raw.redact.patterns {
        if let Err(e) = regex_syntax_ok(p.get_ref()) {
            return Err(ctx.err(
                Some(p.span()),
                "capture.redact.patterns",
                format!("invalid regular expression: {e}"),
            ));
        }
    }
    let batch_max = match &raw.batch_max {
        Some(n) if *n.get_ref() == 0 => {
            return Err(ctx.err(Some(n.span()), "capture.batch_max", "must be at least 1"));
        }
        Some(n) => *n.get_ref() as usize,
        None => defaults::BATCH_MAX as usize,
    };
    Ok(CaptureConfig {
        enabled: raw.enabled.unwrap_or(true),
        database,
        spill_dir: PathBuf::from(spill_dir),
        spill_max: raw.spill_max.map_or(defaults::SPILL_MAX, |s| s.0),
        queue_max: raw.queue_max.map_or(defaults::QUEUE_MAX, |s| s.0),
        flush_interval: raw.flush_interval.map_or(defaults::FLUSH_INTERVAL, |d| d.0),
        batch_max,
        redact: RedactConfig {
            json_paths: raw.redact.json_paths,
            patterns: raw
                .redact
                .patterns
                .into_iter()
                .map(|p| p.into_inner())
                .collect(),
            emails: raw.redact.emails.unwrap_or(true),
            card_numbers: raw.redact.card_numbers.unwrap_or(true),
            api_keys: raw.redact.api_keys.unwrap_or(true),
        },
    })
}

/// `database` (a path or a URL) or `database_env` (a variable holding either), not both.
/// Messages never repeat a URL: it may hold a password.
fn database(raw: &RawCapture, ctx: &Ctx<'_>, env: &dyn Env) -> Result<Database, ConfigError> {
    let (text, key, span) = match (&raw.database, &raw.database_env) {
        (Some(d), Some(e)) => {
            return Err(ctx.err(
                Some(e.span().start.min(d.span().start)..e.span().end.max(d.span().end)),
                "capture.database_env",
                "set capture.database or capture.database_env, not both",
            ));
        }
        (None, Some(var)) => match env.var(var.get_ref()) {
            Some(value) => (value, "capture.database_env", Some(var.span())),
            None => {
                return Err(ctx.err(
                    Some(var.span()),
                    "capture.database_env",
                    format!(
                        "environment variable {} is not set (it should hold the capture \
                         database's URL, like postgres://user:password@host/db)",
                        var.get_ref()
                    ),
                ));
            }
        },
        (Some(d), None) => (d.get_ref().clone(), "capture.database", Some(d.span())),
        (None, None) => (defaults::DATABASE.to_owned(), "capture.database", None),
    };
    if text.is_empty() {
        return Err(ctx.err(
            span,
            key,
            "must name a file or a postgres:// URL (turn capture off with capture.enabled = false)",
        ));
    }
    let database = Database::parse(&text).map_err(|e| ctx.err(span.clone(), key, e))?;
    if let Database::Postgres(url) = &database {
        check_url(url).map_err(|e| ctx.err(span, key, e))?;
    }
    Ok(database)
}

/// The driver's own parser on the rest of the URL (host, port, user, options...).
fn check_url(url: &PostgresUrl) -> Result<(), String> {
    url.connection_url()
        .parse::<postgres::Config>()
        .map(|_| ())
        .map_err(|e| format!("not a valid Postgres URL ({url}): {e}"))
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Database, MapEnv, SslMode};
    use std::path::Path;

    const ROUTE: &str = "[[routes]]\nname = \"a\"\nprefix = \"/a\"\nupstream = \"http://127.0.0.1:9\"\napi = \"openai\"\n";

    fn parse(capture: &str, env: &MapEnv) -> Result<Config, String> {
        Config::parse(
            &format!("[capture]\n{capture}\n{ROUTE}"),
            Path::new("t.toml"),
            env,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn database_env_holds_the_url_and_the_password_stays_out_of_errors() {
        let env = MapEnv::default().with(
            "DB",
            "postgresql://aloud:hunter2@db.internal/capture?sslmode=verify-full",
        );
        let c = parse("database_env = \"DB\"", &env).unwrap();
        let Database::Postgres(url) = &c.capture.database else {
            panic!("not postgres: {:?}", c.capture.database)
        };
        assert_eq!(url.ssl_mode, SslMode::VerifyFull);
        assert_eq!(c.capture.spill_dir, Path::new("aloud-capture.spill"));
        assert!(!format!("{:?}", c.capture).contains("hunter2"));

        let unset = parse("database_env = \"NOPE\"", &MapEnv::default()).unwrap_err();
        assert!(
            unset.contains("capture.database_env") && unset.contains("NOPE is not set"),
            "{unset}"
        );
        let both = parse("database = \"a.db\"\ndatabase_env = \"DB\"", &env).unwrap_err();
        assert!(both.contains("not both"), "{both}");
        let bad = MapEnv::default().with("DB", "postgres://aloud:hunter2@db:notaport/x");
        let bad = parse("database_env = \"DB\"", &bad).unwrap_err();
        assert!(
            bad.contains("not a valid Postgres URL") && !bad.contains("hunter2"),
            "{bad}"
        );
        let mode = parse("database = \"postgres://h/db?sslmode=maybe\"", &env).unwrap_err();
        assert!(mode.contains("sslmode"), "{mode}");
    }

    #[test]
    fn a_path_stays_sqlite_with_its_spill_beside_it() {
        let c = parse("database = \"/var/lib/aloud/c.db\"", &MapEnv::default()).unwrap();
        assert_eq!(
            c.capture.database,
            Database::Sqlite("/var/lib/aloud/c.db".into())
        );
        assert_eq!(c.capture.spill_dir, Path::new("/var/lib/aloud/c.db.spill"));
    }
}
