//! The report itself: records in, grouped and bucketed rows out.
//!
//! **Invariant:** pure: no clock, no I/O; the same records and query give the same report.

use std::collections::BTreeMap;

use super::{
    Dimension, FeedbackSummary, Group, Metrics, Outcomes, Report, Row, StatsQuery, Summary, Window,
};
use crate::capture::record::CaptureRecord;
use crate::store::Annotation;

/// A record with what its beacons said: the client's painted timings and the user's feedback.
#[derive(Clone, Debug, PartialEq)]
pub struct Annotated {
    pub record: CaptureRecord,
    pub client_first_progress_ms: Option<f64>,
    pub client_first_token_ms: Option<f64>,
    pub feedback_score: Option<f64>,
    pub feedback_label: Option<String>,
    /// Whether any feedback was given (a comment alone counts, for the `feedback` group).
    pub has_feedback: bool,
}

impl Annotated {
    /// `record` with its id's annotation from the store, if it has one and `record` is the
    /// id's last attempt (the beacons speak of the answer the client got, once).
    pub fn new(record: CaptureRecord, annotation: Option<&Annotation>) -> Annotated {
        let annotation = annotation.filter(|a| a.covers(record.attempt));
        let timing = |name: &str| {
            annotation
                .and_then(|a| a.client_timings.as_ref())
                .and_then(|t| t.get(name))
                .and_then(serde_json::Value::as_f64)
        };
        Annotated {
            client_first_progress_ms: timing("first_progress_painted_ms"),
            client_first_token_ms: timing("first_token_painted_ms"),
            feedback_score: annotation.and_then(|a| a.feedback_score),
            feedback_label: annotation.and_then(|a| a.feedback_label.clone()),
            has_feedback: annotation
                .is_some_and(|a| a.feedback_score.is_some() || a.feedback_label.is_some()),
            record,
        }
    }

    fn value(&self, d: Dimension) -> String {
        let r = &self.record;
        match d {
            Dimension::Route => r.route.clone(),
            Dimension::Model => r.model.clone().unwrap_or_else(|| "-".to_owned()),
            Dimension::Api => r.api.clone(),
            Dimension::Tier => r.tier.clone(),
            Dimension::Streamed => r.streamed.to_string(),
            Dimension::Outcome => r.outcome.as_str().to_owned(),
            Dimension::Feedback => match (&self.feedback_label, self.feedback_score) {
                (Some(label), _) => label.clone(),
                (None, Some(score)) => format!("score={score}"),
                (None, None) => "none".to_owned(),
            },
        }
    }
}

impl From<CaptureRecord> for Annotated {
    fn from(record: CaptureRecord) -> Annotated {
        Annotated::new(record, None)
    }
}

/// A row being summed up.
#[derive(Default)]
struct Acc {
    n: u64,
    outcomes: Outcomes,
    /// In [`Metrics`] field order.
    values: [Vec<f64>; 8],
    scores: Vec<f64>,
}

/// The report for `query` over `records`; records outside the query's window, route, model or
/// outcome are left out (so any source of records gives the store's answer). Memory is one
/// `f64` per metric per record in the window.
pub fn report<I>(records: I, query: &StatsQuery) -> Report
where
    I: IntoIterator,
    I::Item: Into<Annotated>,
{
    let over = query.latency_over();
    let mut rows: BTreeMap<(Option<i64>, Group), Acc> = BTreeMap::new();
    for item in records {
        let item: Annotated = item.into();
        if !query.admits(&item.record) {
            continue;
        }
        let bucket = query.bucket.map(|b| b.start(item.record.started_at_ms));
        let group = Group(
            query
                .group_by
                .iter()
                .map(|d| (*d, item.value(*d)))
                .collect(),
        );
        let acc = rows.entry((bucket, group)).or_default();
        acc.n += 1;
        acc.outcomes.add(item.record.outcome);
        if let Some(score) = item.feedback_score.filter(|s| s.is_finite()) {
            acc.scores.push(score);
        }
        if !over.covers(item.record.outcome) {
            continue;
        }
        let t = &item.record.timings;
        let values = [
            t.first_feedback_ms,
            t.first_token_ms,
            t.done_ms,
            t.longest_silence_ms,
            t.overhead_ms,
            item.client_first_progress_ms,
            item.client_first_token_ms,
            item.record
                .eta
                .and_then(|e| e.error_at_25)
                .map(|e| e * 100.0),
        ];
        for (metric, value) in acc.values.iter_mut().zip(values) {
            if let Some(v) = value.filter(|v| v.is_finite()) {
                metric.push(v);
            }
        }
    }
    Report {
        window: Window {
            since_ms: query.since_ms,
            until_ms: query.until_ms,
            bucket: query.bucket,
        },
        group_by: query.group_by.clone(),
        latency_over: over,
        rows: rows
            .into_iter()
            .map(|((bucket_start_ms, group), acc)| row(bucket_start_ms, group, acc))
            .collect(),
    }
}

fn row(bucket_start_ms: Option<i64>, group: Group, acc: Acc) -> Row {
    let [
        feedback,
        token,
        total,
        silence,
        overhead,
        painted_progress,
        painted_token,
        eta_error,
    ] = acc.values.map(summary);
    Row {
        bucket_start_ms,
        group,
        n: acc.n,
        outcomes: acc.outcomes,
        metrics: Metrics {
            first_feedback_ms: feedback,
            first_token_ms: token,
            total_ms: total,
            longest_silence_ms: silence,
            overhead_ms: overhead,
            client_first_progress_ms: painted_progress,
            client_first_token_ms: painted_token,
            eta_error_pct: eta_error,
        },
        feedback: FeedbackSummary {
            n: acc.scores.len() as u64,
            mean: mean(&acc.scores),
        },
    }
}

fn summary(mut values: Vec<f64>) -> Summary {
    values.sort_by(f64::total_cmp);
    Summary {
        n: values.len() as u64,
        p50: nearest_rank(&values, 50),
        p90: nearest_rank(&values, 90),
        p99: nearest_rank(&values, 99),
        mean: mean(&values),
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// `sorted[ceil(p/100 · n) - 1]`, in integers so that no rounding moves a rank.
pub(super) fn nearest_rank(sorted: &[f64], p: usize) -> Option<f64> {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
