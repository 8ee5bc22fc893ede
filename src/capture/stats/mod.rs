//! `aloud stats` and the dashboard's numbers: one report over capture records, grouped and
//! bucketed, with latency percentiles over `ok` exchanges unless asked otherwise.
//!
//! The query and the report's shape live here; `aggregate.rs` computes a [`Report`] (pure),
//! `render.rs` prints it as a table or CSV (pure), `window.rs` reads `--since`/`--until`
//! (pure: "now" is handed in), and `read.rs` reads a [`Store`](crate::store::Store) with the
//! query's window pushed down as the store's [`Filter`]. The JSON form of [`Report`] is the
//! contract `aloud stats --json` and `/dashboard/api/stats` share; docs/stats.md describes it.
//!
//! Percentiles are nearest-rank: of `n` sorted values, pP is the value at rank `ceil(P/100·n)`
//! (1-based), so it is always a value that was observed; `null` when `n` is 0.

mod aggregate;
mod read;
mod render;
mod text;
mod window;

pub use aggregate::{Annotated, report};
pub use read::{report_from_store, report_skipping_unreadable};
pub use render::{csv_text, render_csv, render_table};
pub use text::QueryText;
pub use window::{parse_instant, parse_window, unix_ms};

use serde::{Serialize, Serializer, ser::SerializeMap};

use crate::capture::record::{CaptureRecord, Outcome};
use crate::store::Filter;

/// What a row can be grouped by (`--group-by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Route,
    /// The model named in the request; `-` when none was.
    Model,
    Api,
    /// The progress tier: off, comments or events.
    Tier,
    /// `true` or `false`.
    Streamed,
    /// ok, upstream_error, …
    Outcome,
    /// `none` without feedback; else its label; else `score=<score>` (see docs/stats.md).
    Feedback,
}

impl Dimension {
    pub const ALL: [Dimension; 7] = [
        Dimension::Route,
        Dimension::Model,
        Dimension::Api,
        Dimension::Tier,
        Dimension::Streamed,
        Dimension::Outcome,
        Dimension::Feedback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Route => "route",
            Dimension::Model => "model",
            Dimension::Api => "api",
            Dimension::Tier => "tier",
            Dimension::Streamed => "streamed",
            Dimension::Outcome => "outcome",
            Dimension::Feedback => "feedback",
        }
    }

    pub fn parse(text: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.as_str() == text)
    }

    /// A comma-separated list like `route,model`; `none` or empty is no grouping. A dimension
    /// named twice counts once.
    pub fn parse_list(text: &str) -> Result<Vec<Dimension>, String> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "none" {
                continue;
            }
            let d = Dimension::parse(part).ok_or_else(|| {
                format!(
                    "cannot group by {part:?}: use any of route, model, api, tier, streamed, \
                     outcome, feedback, separated by commas"
                )
            })?;
            if !out.contains(&d) {
                out.push(d);
            }
        }
        Ok(out)
    }
}

/// Time buckets (`--bucket`), aligned to UTC: hours on the hour, days at midnight UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Bucket {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "1d")]
    Day,
}

impl Bucket {
    pub fn parse(text: &str) -> Option<Bucket> {
        match text {
            "1h" => Some(Bucket::Hour),
            "1d" => Some(Bucket::Day),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Hour => "1h",
            Bucket::Day => "1d",
        }
    }

    pub fn millis(self) -> i64 {
        match self {
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }

    /// The start of the bucket holding `at_ms` (Unix time counts no leap seconds, so every
    /// UTC day is 86 400 000 ms and multiples of it are midnights).
    pub fn start(self, at_ms: i64) -> i64 {
        at_ms.div_euclid(self.millis()) * self.millis()
    }
}

/// Which exchanges the latency metrics are computed over (`latency_over` in the JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatencyOver {
    /// Every exchange in the row (`--all-outcomes`): `"all"`.
    All,
    /// Only exchanges with this outcome: `"ok"` by default, or `--outcome`'s.
    Outcome(Outcome),
}

impl LatencyOver {
    pub fn as_str(self) -> &'static str {
        match self {
            LatencyOver::All => "all",
            LatencyOver::Outcome(o) => o.as_str(),
        }
    }

    pub fn covers(self, outcome: Outcome) -> bool {
        match self {
            LatencyOver::All => true,
            LatencyOver::Outcome(o) => o == outcome,
        }
    }
}

impl Serialize for LatencyOver {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What to report on. `Default` is everything, ungrouped, latency over `ok` exchanges.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsQuery {
    /// Records that started at or after this Unix time in ms.
    pub since_ms: Option<i64>,
    /// Records that started before this Unix time in ms (exclusive).
    pub until_ms: Option<i64>,
    pub bucket: Option<Bucket>,
    pub group_by: Vec<Dimension>,
    /// Only this route.
    pub route: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only this outcome; latency is then over it.
    pub outcome: Option<Outcome>,
    /// Latency over every outcome, not only `ok` (ignored when `outcome` is set).
    pub all_outcomes: bool,
}

impl StatsQuery {
    pub fn latency_over(&self) -> LatencyOver {
        match (self.outcome, self.all_outcomes) {
            (Some(o), _) => LatencyOver::Outcome(o),
            (None, true) => LatencyOver::All,
            (None, false) => LatencyOver::Outcome(Outcome::Ok),
        }
    }

    /// The store filter for this query: the window, route, model and outcome, pushed down to
    /// the store's SQL so only the window is read.
    pub fn filter(&self) -> Filter {
        Filter {
            since_ms: self.since_ms,
            until_ms: self.until_ms,
            route: self.route.clone(),
            model: self.model.clone(),
            outcome: self.outcome.map(|o| o.as_str().to_owned()),
            ..Filter::default()
        }
    }

    /// Whether `record` is in this query (the same test the store's filter makes, so records
    /// from anywhere give the same report).
    pub fn admits(&self, record: &CaptureRecord) -> bool {
        self.since_ms.is_none_or(|s| record.started_at_ms >= s)
            && self.until_ms.is_none_or(|u| record.started_at_ms < u)
            && self.route.as_ref().is_none_or(|r| *r == record.route)
            && self
                .model
                .as_ref()
                .is_none_or(|m| record.model.as_ref() == Some(m))
            && self.outcome.is_none_or(|o| o == record.outcome)
    }
}

/// The whole report; its JSON is the stats contract (docs/stats.md).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub window: Window,
    pub group_by: Vec<Dimension>,
    pub latency_over: LatencyOver,
    /// Sorted by bucket, then by group values in `group_by` order.
    pub rows: Vec<Row>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Window {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub bucket: Option<Bucket>,
}

/// One group in one bucket.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// The bucket's start (Unix ms, UTC-aligned); `None` without buckets.
    pub bucket_start_ms: Option<i64>,
    pub group: Group,
    /// Exchanges in the row, of every outcome.
    pub n: u64,
    pub outcomes: Outcomes,
    pub metrics: Metrics,
    pub feedback: FeedbackSummary,
}

/// A row's value per grouped dimension, serialized as an object in `group_by` order.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Group(pub Vec<(Dimension, String)>);

impl Group {
    pub fn get(&self, d: Dimension) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == d)
            .map(|(_, v)| v.as_str())
    }
}

impl Serialize for Group {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k.as_str(), v)?;
        }
        map.end()
    }
}

/// Every outcome, in the order counts are printed.
pub const OUTCOMES: [Outcome; 6] = [
    Outcome::Ok,
    Outcome::UpstreamError,
    Outcome::ProxyError,
    Outcome::Timeout,
    Outcome::ClientDisconnected,
    Outcome::Shutdown,
];

/// Exchanges per outcome; serialized as an object of the outcomes that occurred.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcomes(pub [u64; 6]);

impl Outcomes {
    pub fn get(&self, o: Outcome) -> u64 {
        OUTCOMES
            .iter()
            .position(|x| *x == o)
            .map_or(0, |i| self.0[i])
    }

    pub(crate) fn add(&mut self, o: Outcome) {
        if let Some(i) = OUTCOMES.iter().position(|x| *x == o) {
            self.0[i] += 1;
        }
    }

    /// `(outcome, count)` for the outcomes that occurred, in [`OUTCOMES`] order.
    pub fn nonzero(&self) -> impl Iterator<Item = (Outcome, u64)> + '_ {
        OUTCOMES.into_iter().zip(self.0).filter(|(_, n)| *n > 0)
    }
}

impl Serialize for Outcomes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (o, n) in self.nonzero() {
            map.serialize_entry(o.as_str(), &n)?;
        }
        map.end()
    }
}

/// The latency metrics of a row, each over the exchanges `latency_over` names that had it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub first_feedback_ms: Summary,
    pub first_token_ms: Summary,
    /// The whole exchange (the record's `done_ms`).
    pub total_ms: Summary,
    pub longest_silence_ms: Summary,
    pub overhead_ms: Summary,
    /// The client's beacon: first progress painted (the client's clock, from its send).
    pub client_first_progress_ms: Summary,
    /// The client's beacon: first answer token painted.
    pub client_first_token_ms: Summary,
    /// The ETA estimator's absolute percentage error at 25% of each exchange (the record's
    /// `eta.error_at_25` × 100): a percentage, not milliseconds.
    pub eta_error_pct: Summary,
}

impl Metrics {
    /// `(JSON name, words for people, summary)` in print order. The name's last part is the
    /// unit: `_ms` or `_pct`.
    pub fn named(&self) -> [(&'static str, &'static str, Summary); 8] {
        [
            (
                "first_feedback_ms",
                "first feedback",
                self.first_feedback_ms,
            ),
            (
                "client_first_progress_ms",
                "painted first progress (client)",
                self.client_first_progress_ms,
            ),
            ("first_token_ms", "first token", self.first_token_ms),
            (
                "client_first_token_ms",
                "painted first token (client)",
                self.client_first_token_ms,
            ),
            ("total_ms", "total", self.total_ms),
            (
                "longest_silence_ms",
                "longest silence",
                self.longest_silence_ms,
            ),
            ("overhead_ms", "aloud overhead", self.overhead_ms),
            ("eta_error_pct", "ETA error at 25%", self.eta_error_pct),
        ]
    }
}

/// One metric: how many values, nearest-rank percentiles and the mean, in its unit
/// (milliseconds, or percent for `eta_error_pct`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub n: u64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub mean: Option<f64>,
}

/// Feedback scores in a row (every outcome): how many had a score, and their mean.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct FeedbackSummary {
    pub n: u64,
    pub mean: Option<f64>,
}
