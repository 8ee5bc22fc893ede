//! The capture database and the record filter both data commands read (`aloud export` is in
//! `export.rs`, `aloud stats` in `stats.rs`). Also finds a record for `aloud simulate --replay ID`.

use crate::capture::CaptureRecord;
use crate::config::{Config, Database, ProcessEnv};
use crate::store::{Filter, Store, StoreError, StoreErrorKind, open_reader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where the database is: `--database`, else the config's `[capture] database`.
#[derive(Debug, clap::Args)]
pub struct DbArgs {
    /// Config file whose `[capture] database` to read (found as for `serve`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The capture database, overriding the config: a SQLite file or a postgres:// URL.
    #[arg(long)]
    pub database: Option<String>,
}

/// Which exchanges, as `export` and `stats` both choose them.
#[derive(Debug, clap::Args)]
pub struct WindowArgs {
    /// Exchanges from this time on: a time ago (7d, 24h, 30m) or an RFC 3339 time or date
    /// (2024-05-06T00:00:00Z, 2024-05-06).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Exchanges before this time (same forms as --since).
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    #[arg(long)]
    pub route: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    /// Only this outcome: ok, upstream_error, proxy_error, timeout, client_disconnected or
    /// shutdown (for `stats`, latency is then over it).
    #[arg(long)]
    pub outcome: Option<String>,
}

/// Which records `export` reads.
#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    #[command(flatten)]
    pub window: WindowArgs,
    /// Only records whose feedback score is at least this.
    #[arg(long)]
    pub min_score: Option<f64>,
    /// Only records whose feedback has this label.
    #[arg(long)]
    pub label: Option<String>,
    #[arg(long)]
    pub limit: Option<usize>,
}

pub(super) fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

pub(super) fn database(args: &DbArgs) -> Result<Database, String> {
    if let Some(db) = &args.database {
        return Database::parse(db).map_err(|e| format!("--database: {e}"));
    }
    Config::discover(args.config.as_deref(), &ProcessEnv)
        .map(|c| c.capture.database)
        .map_err(|e| e.to_string())
}

pub(super) fn open(database: &Database) -> Result<Box<dyn Store>, String> {
    if let Some(path) = database.sqlite_path()
        && !path.exists()
    {
        return Err(format!(
            "no capture database at {} (run `aloud serve` first, or pass --database)",
            path.display()
        ));
    }
    open_reader(database).map_err(|e| e.to_string())
}

pub(super) fn filter(args: &FilterArgs) -> Result<Filter, String> {
    let (since_ms, until_ms) = crate::capture::stats::parse_window(
        args.window.since.as_deref(),
        args.window.until.as_deref(),
        crate::capture::stats::unix_ms(std::time::SystemTime::now()),
    )?;
    if let Some(o) = &args.window.outcome
        && crate::capture::Outcome::parse(o).is_none()
    {
        return Err(format!(
            "--outcome {o:?}: use ok, upstream_error, proxy_error, timeout, client_disconnected or shutdown"
        ));
    }
    Ok(Filter {
        since_ms,
        until_ms,
        route: args.window.route.clone(),
        model: args.window.model.clone(),
        outcome: args.window.outcome.clone(),
        min_score: args.min_score,
        label: args.label.clone(),
        limit: args.limit,
        newest_first: false,
    })
}

/// The record to replay: a JSON file, or the last attempt of an id in the capture database.
pub fn replay_record(what: &str, db: &DbArgs) -> Result<CaptureRecord, String> {
    let path = Path::new(what);
    if path.is_file() {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {what}: {e}"))?;
        return serde_json::from_str(&text)
            .map_err(|e| format!("{what} is not a capture record: {e}"));
    }
    let store = open(&database(db)?)?;
    let mut attempts = store.get(what).map_err(|e| e.to_string())?;
    attempts
        .pop()
        .ok_or_else(|| format!("no capture record with id {what:?} (and no such file)"))
}

/// How many unreadable records `--skip-unreadable` names on standard error (all are counted).
pub(super) const UNREADABLE_NAMED: u64 = 5;

/// An error reading records, as `export` and `stats` report it: a record that cannot be read
/// also names the flag that leaves such records out.
pub(super) fn reading_failed(e: &StoreError) -> String {
    match e.kind() {
        StoreErrorKind::Json => {
            format!("reading the database: {e} (--skip-unreadable leaves such records out)")
        }
        _ => format!("reading the database: {e}"),
    }
}
