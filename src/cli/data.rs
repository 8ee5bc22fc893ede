//! `aloud export` and the capture database both data commands read (`aloud stats` is in
//! `stats.rs`): write datasets. Also finds a record for `aloud simulate --replay ID`.

use crate::capture::CaptureRecord;
use crate::config::units::parse_duration;
use crate::config::{Config, Database, ProcessEnv};
use crate::export::{Exporter, Format};
use crate::store::{Filter, Store, open_reader};
use std::io::{IsTerminal, Write};
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

/// Which records.
#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// Only records from this long ago on, like `24h`, `30m` or `7d`.
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub route: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    /// ok, upstream_error, proxy_error, timeout, client_disconnected or shutdown.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Only records whose feedback score is at least this.
    #[arg(long)]
    pub min_score: Option<f64>,
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

fn filter(args: &FilterArgs) -> Result<Filter, String> {
    let since_ms = match &args.since {
        None => None,
        Some(text) => {
            let d = parse_duration(text).map_err(|e| format!("--since: {e}"))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| e.to_string())?;
            Some(now.saturating_sub(d).as_millis() as i64)
        }
    };
    if let Some(o) = &args.outcome
        && crate::capture::Outcome::parse(o).is_none()
    {
        return Err(format!(
            "--outcome {o:?}: use ok, upstream_error, proxy_error, timeout, client_disconnected or shutdown"
        ));
    }
    Ok(Filter {
        since_ms,
        until_ms: None,
        route: args.route.clone(),
        model: args.model.clone(),
        outcome: args.outcome.clone(),
        min_score: args.min_score,
        limit: args.limit,
    })
}

pub fn export(db: &DbArgs, which: &FilterArgs, format: &str, out: Option<&Path>) -> ExitCode {
    let Some(format) = Format::parse(format) else {
        return fail(format!(
            "--format {format:?}: use chat-jsonl, openai-evals, inspect or csv"
        ));
    };
    let (store, filter) = match database(db)
        .and_then(|p| open(&p))
        .and_then(|s| filter(which).map(|f| (s, f)))
    {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let mut sink: Box<dyn Write> = match out {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => return fail(format!("cannot create {}: {e}", path.display())),
        },
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    // A progress line on the terminal, only when the output goes to a file.
    let progress = out.is_some() && std::io::stderr().is_terminal();
    let records = match store.query(&filter) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let mut exporter = Exporter::new(format, &mut *sink);
    if let Err(e) = exporter.write_header() {
        return fail(format!("cannot write: {e}"));
    }
    for (n, record) in records.enumerate() {
        let record = match record {
            Ok(r) => r,
            Err(e) => return fail(format!("reading the database: {e}")),
        };
        if let Err(e) = exporter.write(&record) {
            return fail(format!("cannot write: {e}"));
        }
        if progress && n % 500 == 0 {
            eprint!("\rexporting… {n} records read");
        }
    }
    let counts = match exporter.finish() {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot write: {e}")),
    };
    if let Err(e) = sink.flush() {
        return fail(format!("cannot write: {e}"));
    }
    if progress {
        eprint!("\r");
    }
    eprintln!("export as {format}: {counts}");
    ExitCode::SUCCESS
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
