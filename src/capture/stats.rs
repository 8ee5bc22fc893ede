//! Latency statistics over capture records: what users felt (first feedback, longest silence)
//! against what the model took (first token, total), with aloud's own overhead beside them.
//!
//! **Invariant:** pure: records in, rows and text out; no clock, no I/O.
//!
//! Percentiles are nearest-rank: of `n` sorted values, pP is the value at rank `ceil(P/100·n)`
//! (1-based), so it is always a value that was observed. Records without a value for a metric
//! (no first token on an error, say) are left out of that metric only; `n` says how many counted.
//! An error is any outcome but `ok` and `client_disconnected` (the client leaving is its choice).

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};

use crate::capture::record::{CaptureRecord, Outcome};

/// How records are grouped into rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GroupBy {
    /// One row, keyed `all`.
    #[default]
    None,
    Route,
    /// By model; records without one are keyed `-`.
    Model,
}

impl GroupBy {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::None => "none",
            GroupBy::Route => "route",
            GroupBy::Model => "model",
        }
    }

    pub fn parse(text: &str) -> Option<GroupBy> {
        [GroupBy::None, GroupBy::Route, GroupBy::Model]
            .into_iter()
            .find(|g| g.as_str() == text)
    }

    fn key(self, record: &CaptureRecord) -> String {
        match self {
            GroupBy::None => "all".to_owned(),
            GroupBy::Route => record.route.clone(),
            GroupBy::Model => record.model.clone().unwrap_or_else(|| "-".to_owned()),
        }
    }
}

/// Nearest-rank percentiles of one metric, in milliseconds; `None` when no record had it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// How many records had a value.
    pub n: u64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

impl Percentiles {
    fn of(mut values: Vec<f64>) -> Percentiles {
        values.sort_by(f64::total_cmp);
        Percentiles {
            n: values.len() as u64,
            p50: nearest_rank(&values, 50),
            p90: nearest_rank(&values, 90),
            p99: nearest_rank(&values, 99),
        }
    }
}

/// `sorted[ceil(p/100 · n) - 1]`, in integers so that no rounding moves a rank.
fn nearest_rank(sorted: &[f64], p: usize) -> Option<f64> {
    let n = sorted.len();
    let rank = (p * n).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// One group's row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub key: String,
    pub count: u64,
    pub errors: u64,
    /// `errors / count`, 0 to 1.
    pub error_rate: f64,
    pub first_feedback_ms: Percentiles,
    pub first_token_ms: Percentiles,
    /// The whole exchange (`done_ms`).
    pub total_ms: Percentiles,
    pub longest_silence_ms: Percentiles,
    pub overhead_ms: Percentiles,
}

#[derive(Default)]
struct Group {
    count: u64,
    errors: u64,
    /// first feedback, first token, total, longest silence, overhead
    metrics: [Vec<f64>; 5],
}

/// Builds the rows; see the module docs for what each number means.
pub struct Stats;

impl Stats {
    /// One row per group, sorted by key. Reads the records once; memory is one `f64` per metric
    /// per record.
    pub fn from_records<I>(records: I, group_by: GroupBy) -> Vec<Row>
    where
        I: IntoIterator,
        I::Item: Borrow<CaptureRecord>,
    {
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        for record in records {
            let record = record.borrow();
            let group = groups.entry(group_by.key(record)).or_default();
            group.count += 1;
            if !matches!(record.outcome, Outcome::Ok | Outcome::ClientDisconnected) {
                group.errors += 1;
            }
            let t = &record.timings;
            let values = [
                t.first_feedback_ms,
                t.first_token_ms,
                t.done_ms,
                t.longest_silence_ms,
                t.overhead_ms,
            ];
            for (metric, value) in group.metrics.iter_mut().zip(values) {
                if let Some(v) = value.filter(|v| v.is_finite()) {
                    metric.push(v);
                }
            }
        }
        groups
            .into_iter()
            .map(|(key, g)| {
                let [feedback, token, total, silence, overhead] = g.metrics;
                Row {
                    key,
                    count: g.count,
                    errors: g.errors,
                    error_rate: if g.count == 0 {
                        0.0
                    } else {
                        g.errors as f64 / g.count as f64
                    },
                    first_feedback_ms: Percentiles::of(feedback),
                    first_token_ms: Percentiles::of(token),
                    total_ms: Percentiles::of(total),
                    longest_silence_ms: Percentiles::of(silence),
                    overhead_ms: Percentiles::of(overhead),
                }
            })
            .collect()
    }
}

/// An aligned plain-text table: one line per row, each metric as `p50 / p90 / p99` with units
/// (`ms` below a second, then `s`, then `min`), `-` where nothing was measured.
pub fn render_table(rows: &[Row]) -> String {
    let header: Vec<String> = [
        "key",
        "count",
        "errors",
        "first feedback p50/p90/p99",
        "first token p50/p90/p99",
        "total p50/p90/p99",
        "longest silence p50/p90/p99",
        "overhead p50/p90/p99",
    ]
    .map(str::to_owned)
    .to_vec();
    let metrics = |row: &Row| {
        [
            row.first_feedback_ms,
            row.first_token_ms,
            row.total_ms,
            row.longest_silence_ms,
            row.overhead_ms,
        ]
        .map(|p| [duration(p.p50), duration(p.p90), duration(p.p99)])
    };
    // Each percentile is padded to its widest, so p50s, p90s and p99s line up down the table.
    let mut part_widths = [[0usize; 3]; 5];
    for row in rows {
        for (widths, parts) in part_widths.iter_mut().zip(metrics(row)) {
            for (w, part) in widths.iter_mut().zip(parts) {
                *w = (*w).max(part.chars().count());
            }
        }
    }
    let mut lines = vec![header];
    for row in rows {
        let mut cells = vec![
            row.key.clone(),
            row.count.to_string(),
            format!("{:.1}%", row.error_rate * 100.0),
        ];
        for (widths, parts) in part_widths.iter().zip(metrics(row)) {
            let [w50, w90, w99] = *widths;
            let [p50, p90, p99] = parts;
            cells.push(format!("{p50:>w50$} / {p90:>w90$} / {p99:>w99$}"));
        }
        lines.push(cells);
    }
    let columns = lines.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            lines
                .iter()
                .filter_map(|l| l.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let mut text = String::new();
        for (c, (cell, width)) in line.iter().zip(&widths).enumerate() {
            if c > 0 {
                text.push_str("  ");
            }
            // The key reads left-aligned, numbers right-aligned.
            let _ = if c == 0 {
                write!(text, "{cell:<width$}")
            } else {
                write!(text, "{cell:>width$}")
            };
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// The rows as a pretty JSON array (milliseconds as numbers, `null` where nothing was measured).
pub fn render_json(rows: &[Row]) -> String {
    let value = serde_json::to_value(rows).unwrap_or_else(|e| json!({"error": e.to_string()}));
    format!("{value:#}")
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

/// For callers that want the rows as a value rather than text.
pub fn to_json(rows: &[Row]) -> Value {
    serde_json::to_value(rows).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::record::{CaptureLevel, Timings};

    fn record(route: &str, model: Option<&str>, outcome: Outcome, t: Timings) -> CaptureRecord {
        CaptureRecord {
            id: "r".into(),
            attempt: 1,
            owner: None,
            started_at_ms: 0,
            route: route.into(),
            api: "openai".into(),
            model: model.map(Into::into),
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            client_status: Some(200),
            upstream_status: Some(200),
            streamed: true,
            tier: "events".into(),
            outcome,
            partial: false,
            capture: CaptureLevel::Metadata,
            timings: t,
            usage: None,
            upstream_timings: None,
            eta: None,
            request: None,
            response: None,
            deltas: Vec::new(),
            error: None,
            truncated: false,
        }
    }

    fn timed(i: u32) -> Timings {
        let v = f64::from(i);
        Timings {
            first_feedback_ms: Some(v),
            first_token_ms: Some(v * 10.0),
            done_ms: Some(v * 100.0),
            longest_silence_ms: Some(v * 5.0),
            overhead_ms: Some(0.5),
            ..Timings::default()
        }
    }

    #[test]
    fn nearest_rank_by_hand() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 50), Some(50.0));
        assert_eq!(nearest_rank(&v, 90), Some(90.0));
        assert_eq!(nearest_rank(&v, 99), Some(99.0));
        let v = [15.0, 20.0, 35.0, 40.0, 50.0];
        assert_eq!(nearest_rank(&v, 50), Some(35.0)); // ceil(2.5) = 3
        assert_eq!(nearest_rank(&v, 90), Some(50.0));
        assert_eq!(nearest_rank(&[7.0], 99), Some(7.0));
        assert_eq!(nearest_rank(&[], 50), None);
    }

    #[test]
    fn one_group_with_known_values() {
        // 1..=10 shuffled: order must not matter.
        let records: Vec<_> = [7, 3, 10, 1, 9, 2, 8, 4, 6, 5]
            .into_iter()
            .map(|i| record("a", Some("m"), Outcome::Ok, timed(i)))
            .collect();
        let rows = Stats::from_records(&records, GroupBy::None);
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!((row.key.as_str(), row.count, row.errors), ("all", 10, 0));
        assert_eq!(
            row.first_feedback_ms,
            Percentiles {
                n: 10,
                p50: Some(5.0),
                p90: Some(9.0),
                p99: Some(10.0)
            }
        );
        assert_eq!(row.first_token_ms.p50, Some(50.0));
        assert_eq!(row.total_ms.p90, Some(900.0));
        assert_eq!(row.longest_silence_ms.p99, Some(50.0));
        assert_eq!(row.overhead_ms.p50, Some(0.5));
    }

    #[test]
    fn groups_errors_and_missing_values() {
        let mut no_token = timed(4);
        no_token.first_token_ms = None;
        no_token.done_ms = Some(f64::NAN);
        let records = vec![
            record("b", Some("m2"), Outcome::Ok, timed(1)),
            record("a", Some("m1"), Outcome::Timeout, no_token),
            record("a", None, Outcome::ClientDisconnected, timed(2)),
            record("a", Some("m1"), Outcome::Ok, timed(3)),
        ];
        let rows = Stats::from_records(records.iter(), GroupBy::Route);
        assert_eq!(
            rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let a = &rows[0];
        assert_eq!((a.count, a.errors), (3, 1), "a disconnect is not an error");
        assert!((a.error_rate - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(a.first_token_ms.n, 2, "missing values are skipped");
        assert_eq!(a.total_ms.n, 2, "NaN is skipped");
        assert_eq!(a.first_token_ms.p50, Some(20.0));

        let rows = Stats::from_records(records, GroupBy::Model);
        assert_eq!(
            rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["-", "m1", "m2"]
        );
        assert!(Stats::from_records(Vec::<CaptureRecord>::new(), GroupBy::None).is_empty());
        assert_eq!(GroupBy::parse("model"), Some(GroupBy::Model));
    }

    #[test]
    fn table_and_json() {
        let records = vec![
            record("chat", Some("m"), Outcome::Ok, timed(850)),
            record(
                "chat",
                Some("m"),
                Outcome::UpstreamError,
                Timings::default(),
            ),
            record("long-route-name", Some("m"), Outcome::Ok, timed(3)),
        ];
        let rows = Stats::from_records(&records, GroupBy::Route);
        let table = render_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("key              count  errors  first feedback p50/p90/p99"));
        assert!(
            lines[1].starts_with("chat                 2   50.0%"),
            "{table}"
        );
        assert!(lines[1].contains("850ms / 850ms / 850ms"), "{table}");
        assert!(lines[1].contains("8.50s / 8.50s / 8.50s"), "{table}");
        assert!(lines[1].contains("1.4min / 1.4min / 1.4min"), "{table}");
        assert!(lines[2].contains("3.0ms / 3.0ms / 3.0ms"), "{table}");
        // Right-aligned to the last column, so every line is as long as the header.
        let widths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{table}");

        let json: Value = serde_json::from_str(&render_json(&rows)).unwrap();
        assert_eq!(json[0]["key"], "chat");
        assert_eq!(json[0]["errors"], 1);
        assert_eq!(
            json[0]["first_feedback_ms"],
            json!({"n": 1, "p50": 850.0, "p90": 850.0, "p99": 850.0})
        );
        assert_eq!(json[1]["first_token_ms"]["p50"], 30.0);
        assert_eq!(to_json(&[]), json!([]));
        assert_eq!(render_table(&[]).lines().count(), 1, "just the header");
    }
}
