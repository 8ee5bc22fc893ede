//! Tests of `report`: groups, buckets, windows, outcomes, beacons, feedback, ETA error.

use super::*;
use crate::capture::record::{Outcome, Timings};
use crate::capture::stats::{Bucket, LatencyOver};
use crate::record::EtaRecord;
use serde_json::json;

fn record(route: &str, at: i64, outcome: Outcome, t: Timings) -> CaptureRecord {
    CaptureRecord {
        started_at_ms: at,
        route: route.into(),
        model: Some("m".into()),
        streamed: true,
        tier: "events".into(),
        outcome,
        timings: t,
        ..CaptureRecord::minimal(&format!("{route}-{at}"))
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
    assert_eq!(nearest_rank(&v, 99), Some(99.0));
    let v = [15.0, 20.0, 35.0, 40.0, 50.0];
    assert_eq!(nearest_rank(&v, 50), Some(35.0)); // ceil(2.5) = 3
    assert_eq!(nearest_rank(&v, 90), Some(50.0)); // ceil(4.5) = 5
    assert_eq!(nearest_rank(&[7.0], 99), Some(7.0));
    assert_eq!(nearest_rank(&[], 50), None);
}

#[test]
fn latency_over_ok_by_default_with_every_outcome_counted() {
    // 1..=10 shuffled, all ok, plus a timeout whose 10 s would move every percentile.
    let mut records: Vec<_> = [7, 3, 10, 1, 9, 2, 8, 4, 6, 5]
        .into_iter()
        .map(|i| record("a", i64::from(i), Outcome::Ok, timed(i)))
        .collect();
    records.push(record("a", 11, Outcome::Timeout, timed(100)));
    let r = report(records.clone(), &StatsQuery::default());
    assert_eq!(r.latency_over, LatencyOver::Outcome(Outcome::Ok));
    let row = &r.rows[0];
    assert_eq!(row.n, 11);
    assert_eq!(
        (
            row.outcomes.get(Outcome::Ok),
            row.outcomes.get(Outcome::Timeout)
        ),
        (10, 1)
    );
    let m = row.metrics.first_feedback_ms;
    // mean of 1..=10 = 55 / 10.
    assert_eq!(
        m,
        Summary {
            n: 10,
            p50: Some(5.0),
            p90: Some(9.0),
            p99: Some(10.0),
            mean: Some(5.5)
        }
    );
    assert_eq!(row.metrics.client_first_token_ms.n, 0);
    assert_eq!(row.metrics.client_first_token_ms.p50, None);

    let all = report(
        records,
        &StatsQuery {
            all_outcomes: true,
            ..StatsQuery::default()
        },
    );
    assert_eq!(all.latency_over.as_str(), "all");
    // 11 values: rank ceil(0.5 · 11) = 6 → 6; p99 → rank 11 → the timeout's 100.
    let m = all.rows[0].metrics.first_feedback_ms;
    assert_eq!((m.n, m.p50, m.p99), (11, Some(6.0), Some(100.0)));
}

#[test]
fn groups_buckets_window_and_beacons() {
    let hour = 3_600_000;
    let mut a = Annotated::new(record("a", 10, Outcome::Ok, timed(1)), None);
    a.client_first_token_ms = Some(42.0);
    a.feedback_score = Some(1.0);
    a.feedback_label = Some("good".into());
    let records = vec![
        a,
        record("b", hour + 5, Outcome::Ok, timed(2)).into(),
        record("a", hour + 6, Outcome::UpstreamError, timed(3)).into(),
        record("a", 3 * hour, Outcome::Ok, timed(4)).into(),
    ];
    let q = StatsQuery {
        until_ms: Some(3 * hour),
        bucket: Some(Bucket::Hour),
        group_by: vec![Dimension::Feedback, Dimension::Route],
        ..StatsQuery::default()
    };
    let r = report(records, &q);
    let keys: Vec<_> = r
        .rows
        .iter()
        .map(|row| {
            (
                row.bucket_start_ms,
                row.group.get(Dimension::Route),
                row.group.get(Dimension::Feedback),
            )
        })
        .collect();
    // The record at 3 h is outside [.., 3 h).
    assert_eq!(
        keys,
        [
            (Some(0), Some("a"), Some("good")),
            (Some(hour), Some("a"), Some("none")),
            (Some(hour), Some("b"), Some("none")),
        ]
    );
    assert_eq!(r.rows[0].metrics.client_first_token_ms.p50, Some(42.0));
    assert_eq!(
        r.rows[0].feedback,
        FeedbackSummary {
            n: 1,
            mean: Some(1.0)
        }
    );
    assert_eq!(
        r.rows[1].metrics.total_ms.n, 0,
        "an error is counted, not timed"
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        json["window"],
        json!({"since_ms": null, "until_ms": 3 * hour, "bucket": "1h"})
    );
    assert_eq!(json["group_by"], json!(["feedback", "route"]));
    assert_eq!(
        json["rows"][1]["group"],
        json!({"feedback": "none", "route": "a"})
    );
    assert_eq!(json["rows"][1]["outcomes"], json!({"upstream_error": 1}));
    assert_eq!(
        json["rows"][1]["metrics"]["first_token_ms"],
        json!({"n": 0, "p50": null, "p90": null, "p99": null, "mean": null})
    );
}

#[test]
fn eta_error_is_a_percentage_over_the_exchanges_that_had_an_estimate() {
    let with_eta = |at: i64, outcome: Outcome, error: Option<f64>| {
        let mut r = record("a", at, outcome, timed(1));
        r.eta = Some(EtaRecord {
            basis: 12,
            error_at_25: error,
            ..EtaRecord::default()
        });
        r
    };
    let records = vec![
        with_eta(1, Outcome::Ok, Some(0.30)),
        with_eta(2, Outcome::Ok, Some(0.10)),
        with_eta(3, Outcome::Ok, Some(0.20)),
        // No estimate at 25% (too little history), no `eta` at all, an error: not counted.
        with_eta(4, Outcome::Ok, None),
        record("a", 5, Outcome::Ok, timed(1)),
        with_eta(6, Outcome::Timeout, Some(9.0)),
    ];
    let r = report(records, &StatsQuery::default());
    let m = r.rows[0].metrics.eta_error_pct;
    assert_eq!((m.n, m.p50, m.p90), (3, Some(20.0), Some(30.0)));
    assert!((m.mean.unwrap() - 20.0).abs() < 1e-9, "{m:?}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["rows"][0]["metrics"]["eta_error_pct"]["n"], 3);
}

#[test]
fn dimension_lists() {
    assert_eq!(
        Dimension::parse_list("route, model,route"),
        Ok(vec![Dimension::Route, Dimension::Model])
    );
    assert_eq!(Dimension::parse_list("none"), Ok(vec![]));
    assert!(
        Dimension::parse_list("route,colour")
            .unwrap_err()
            .contains("\"colour\"")
    );
}
