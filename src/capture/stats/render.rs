//! A report for people (an aligned table with units) and for spreadsheets (CSV, one line per
//! row). The JSON form is the report's own `Serialize`.
//!
//! **Invariant:** pure: a report in, text out.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::{OUTCOMES, Report, Row, Summary};

/// The table: a line saying what latency is over (with its n and the other outcomes' counts),
/// then per row a heading (bucket, group, n, outcomes, feedback) and one line per metric with
/// its n, p50, p90, p99 and mean, aligned across the whole report.
pub fn render_table(report: &Report) -> String {
    let mut out = String::new();
    let over = report.latency_over;
    let (mut covered, mut others) = (0u64, [0u64; 6]);
    for row in &report.rows {
        for (i, (o, n)) in OUTCOMES.iter().zip(row.outcomes.0).enumerate() {
            if over.covers(*o) {
                covered += n;
            } else {
                others[i] += n;
            }
        }
    }
    let others: Vec<String> = OUTCOMES
        .iter()
        .zip(others)
        .filter(|(_, n)| *n > 0)
        .map(|(o, n)| format!("{} {n}", o.as_str()))
        .collect();
    let _ = writeln!(
        out,
        "latency over {} exchanges (n={covered}); other outcomes: {}",
        over.as_str(),
        if others.is_empty() {
            "none".to_owned()
        } else {
            others.join(", ")
        }
    );
    out.push_str(
        "percentiles are nearest-rank; n = exchanges with the figure; \"client\" = what the \
         client painted, by its own beacon\n",
    );
    if report.rows.is_empty() {
        out.push_str("\nno exchanges in this window\n");
        return out;
    }
    let lines: Vec<Vec<[String; 6]>> = report.rows.iter().map(metric_lines).collect();
    let header = ["metric", "n", "p50", "p90", "p99", "mean"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for line in lines.iter().flatten() {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for (row, metric_lines) in report.rows.iter().zip(&lines) {
        out.push('\n');
        out.push_str(&heading(row));
        out.push('\n');
        for cells in std::iter::once(&header).chain(metric_lines) {
            let mut text = String::from(" ");
            for (c, (cell, width)) in cells.iter().zip(widths).enumerate() {
                // Names read left-aligned, numbers right-aligned.
                let _ = if c == 0 {
                    write!(text, " {cell:<width$}")
                } else {
                    write!(text, "  {cell:>width$}")
                };
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
    }
    out
}

/// `2024-05-06T12:00:00Z  route=sim model=m  n=12 (ok 10, timeout 2)  feedback mean 0.67 (n=3)`.
fn heading(row: &Row) -> String {
    let mut parts = Vec::new();
    if let Some(start) = row.bucket_start_ms {
        parts.push(timestamp(start));
    }
    if row.group.0.is_empty() {
        parts.push("all".to_owned());
    } else {
        let group: Vec<String> = row
            .group
            .0
            .iter()
            .map(|(d, v)| format!("{}={v}", d.as_str()))
            .collect();
        parts.push(group.join(" "));
    }
    let outcomes: Vec<String> = row
        .outcomes
        .nonzero()
        .map(|(o, n)| format!("{} {n}", o.as_str()))
        .collect();
    parts.push(format!("n={} ({})", row.n, outcomes.join(", ")));
    parts.push(match row.feedback.mean {
        Some(mean) => format!("feedback mean {mean:.2} (n={})", row.feedback.n),
        None => "no feedback scores".to_owned(),
    });
    parts.join("  ")
}

fn metric_lines(row: &Row) -> Vec<[String; 6]> {
    row.metrics
        .named()
        .into_iter()
        .map(|(name, words, s)| {
            let shown = if unit(name) == "pct" {
                percent
            } else {
                duration
            };
            [
                words.to_owned(),
                s.n.to_string(),
                shown(s.p50),
                shown(s.p90),
                shown(s.p99),
                shown(s.mean),
            ]
        })
        .collect()
}

/// `850ms`, `12.5ms`, `1.24s`, `2.1min`; `-` for nothing.
fn duration(ms: Option<f64>) -> String {
    match ms {
        None => "-".to_owned(),
        Some(v) if v.abs() < 10.0 => format!("{v:.1}ms"),
        Some(v) if v.abs() < 1000.0 => format!("{v:.0}ms"),
        Some(v) if v.abs() < 60_000.0 => format!("{:.2}s", v / 1000.0),
        Some(v) => format!("{:.1}min", v / 60_000.0),
    }
}

/// `12.5%`; `-` for nothing.
fn percent(pct: Option<f64>) -> String {
    pct.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}%"))
}

/// A metric's unit, the last part of its JSON name: `ms` or `pct`.
fn unit(name: &str) -> &str {
    name.rsplit_once('_').map_or("", |(_, u)| u)
}

/// Unix ms as `2024-05-06T12:00:00Z` (buckets start on whole seconds).
fn timestamp(ms: i64) -> String {
    let at = if ms >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    };
    humantime::format_rfc3339_seconds(at).to_string()
}

/// The CSV header for `report`: bucket, one column per grouped dimension, `latency_over`, `n`,
/// one count per outcome, five columns per metric (`<name>_n`, `<name>_p50_<unit>`, `_p90_`,
/// `_p99_`, `_mean_`, where `<name>` is the JSON name without its unit, `_ms` or `_pct`), then
/// `feedback_n` and `feedback_mean`.
fn csv_header(report: &Report) -> Vec<String> {
    let mut h = vec!["bucket_start".to_owned(), "bucket_start_ms".to_owned()];
    h.extend(report.group_by.iter().map(|d| d.as_str().to_owned()));
    h.push("latency_over".to_owned());
    h.push("n".to_owned());
    h.extend(OUTCOMES.iter().map(|o| o.as_str().to_owned()));
    for (name, _, _) in super::Metrics::default().named() {
        let unit = unit(name);
        let base = name
            .strip_suffix(unit)
            .unwrap_or(name)
            .trim_end_matches('_');
        h.push(format!("{base}_n"));
        for part in ["p50", "p90", "p99", "mean"] {
            h.push(format!("{base}_{part}_{unit}"));
        }
    }
    h.push("feedback_n".to_owned());
    h.push("feedback_mean".to_owned());
    h
}

/// A CSV text cell: with a leading `'` when a spreadsheet would read it as a formula (text a
/// client chose: a model name, a route, a feedback label, a request id). Shared with
/// `export::csv`.
pub fn csv_text(value: &str) -> String {
    match value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        true => format!("'{value}"),
        false => value.to_owned(),
    }
}

/// The report as CSV (RFC 4180): a header, then one line per row; empty cells where nothing
/// was measured; numbers in full precision.
pub fn render_csv(report: &Report) -> String {
    let mut out = String::new();
    push_line(&mut out, &csv_header(report));
    for row in &report.rows {
        let mut cells = vec![
            row.bucket_start_ms.map(timestamp).unwrap_or_default(),
            row.bucket_start_ms
                .map(|b| b.to_string())
                .unwrap_or_default(),
        ];
        cells.extend(row.group.0.iter().map(|(_, v)| csv_text(v)));
        cells.push(report.latency_over.as_str().to_owned());
        cells.push(row.n.to_string());
        cells.extend(row.outcomes.0.iter().map(u64::to_string));
        for (_, _, s) in row.metrics.named() {
            let Summary {
                n,
                p50,
                p90,
                p99,
                mean,
            } = s;
            cells.push(n.to_string());
            cells.extend([p50, p90, p99, mean].map(number));
        }
        cells.push(row.feedback.n.to_string());
        cells.push(number(row.feedback.mean));
        push_line(&mut out, &cells);
    }
    out
}

fn number(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// One CSV line. Quoting is hand-written (five lines of RFC 4180) rather than a dependency:
/// a field with a comma, quote, CR or LF is quoted, and quotes are doubled.
fn push_line(out: &mut String, cells: &[String]) {
    let quoted: Vec<String> = cells
        .iter()
        .map(|c| {
            if c.contains([',', '"', '\r', '\n']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.clone()
            }
        })
        .collect();
    out.push_str(&quoted.join(","));
    out.push_str("\r\n");
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
