//! `aloud stats`: its flags, the clock read for relative windows, and the output format; the
//! report itself is `crate::capture::stats` (the dashboard calls the same).

use std::process::ExitCode;
use std::time::SystemTime;

use super::data::{DbArgs, UNREADABLE_NAMED, WindowArgs, database, fail, open, reading_failed};
use crate::capture::stats::{
    QueryText, StatsQuery, render_csv, render_table, report_from_store, report_skipping_unreadable,
    unix_ms,
};

/// What to report on, and how to print it.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Group rows by any of route, model, api, tier, streamed, outcome, feedback, separated by
    /// commas (default: one row for everything).
    #[arg(long, alias = "by", default_value = "none", value_name = "DIMENSIONS")]
    pub group_by: String,
    #[command(flatten)]
    pub window: WindowArgs,
    /// A time series: one row per group per hour (1h) or day (1d), aligned to UTC.
    #[arg(long, value_name = "1h|1d")]
    pub bucket: Option<String>,
    /// Latency over every outcome, not only ok exchanges.
    #[arg(long, conflicts_with = "outcome")]
    pub all_outcomes: bool,
    /// Print the report as JSON (docs/stats.md has the fields).
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print the report as CSV, one line per row.
    #[arg(long)]
    pub csv: bool,
    /// Leave out stored records that cannot be read (damaged, or written by hand), naming the
    /// first few on standard error and counting them, instead of stopping at the first.
    #[arg(long)]
    pub skip_unreadable: bool,
}

/// The query `args` ask for, with relative times taken from `now_ms`.
pub fn query(args: &StatsArgs, now_ms: i64) -> Result<StatsQuery, String> {
    QueryText {
        group_by: Some(&args.group_by),
        since: args.window.since.as_deref(),
        until: args.window.until.as_deref(),
        bucket: args.bucket.as_deref(),
        route: args.window.route.as_deref(),
        model: args.window.model.as_deref(),
        outcome: args.window.outcome.as_deref(),
        all_outcomes: args.all_outcomes,
    }
    .parse(now_ms, |name| format!("--{name}"))
}

pub fn run(db: &DbArgs, args: &StatsArgs) -> ExitCode {
    let query = match query(args, unix_ms(SystemTime::now())) {
        Ok(q) => q,
        Err(e) => return fail(e),
    };
    let store = match database(db).and_then(|d| open(&d)) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let mut left_out = 0u64;
    let read = if args.skip_unreadable {
        report_skipping_unreadable(&*store, &query, &mut |e| {
            if left_out < UNREADABLE_NAMED {
                eprintln!("warning: left out: {e}");
            }
            left_out += 1;
        })
    } else {
        report_from_store(&*store, &query)
    };
    let report = match read {
        Ok(r) => r,
        Err(e) => return fail(reading_failed(&e)),
    };
    if left_out > 0 {
        eprintln!("warning: {left_out} unreadable record(s) left out of the report");
    }
    let text = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => text + "\n",
            Err(e) => return fail(format!("cannot write JSON: {e}")),
        }
    } else if args.csv {
        render_csv(&report)
    } else {
        render_table(&report)
    };
    write_out(&text)
}

/// Writes the report to stdout. A reader that stopped early (`| head`) ends the run quietly, as
/// it would for any Unix filter; any other write error is reported.
fn write_out(text: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(format!("cannot write the report: {e}")),
    }
}
