//! Feedback and beacons are given once per request id, however many attempts it took: `aloud
//! stats` (and `/dashboard/api/stats`) count them once, with the id's last attempt.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

#[path = "support/csv_export.rs"]
mod csv_export;
#[path = "support/records.rs"]
mod records;

use aloud::capture::Outcome;
use aloud::capture::stats::{Dimension, StatsQuery, report_from_store};
use aloud::store::{SqliteStore, Store};
use serde_json::{Value, json};

/// A request the SDK retried (429, then ok) and the user rated once: one score, on the ok row;
/// the 429 attempt neither adds a second score nor carries the painted timings of the answer.
#[test]
fn a_retried_request_counts_its_feedback_once_with_its_last_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path().join("aloud.db")).unwrap();
    let mut first = records::record("retried", 1, 1_000, 1000);
    first.outcome = Outcome::UpstreamError;
    let second = records::record("retried", 2, 2_000, 1000);
    let other = records::record("once", 1, 3_000, 1000);
    store.insert_batch(&[first, second, other]).unwrap();
    store
        .insert_feedback("retried", Some(0.0), Some("bad".into()), None)
        .unwrap();
    store
        .insert_feedback("once", Some(1.0), Some("good".into()), None)
        .unwrap();
    store
        .insert_client_timings("retried", &json!({"first_token_painted_ms": 700.0}))
        .unwrap();

    let query = |group_by| StatsQuery {
        since_ms: None,
        until_ms: None,
        bucket: None,
        group_by,
        route: None,
        model: None,
        outcome: None,
        all_outcomes: true,
    };
    let report = serde_json::to_value(report_from_store(&store, &query(vec![])).unwrap()).unwrap();
    let row = &report["rows"][0];
    assert_eq!(row["n"], 3, "{row}");
    assert_eq!(
        row["feedback"],
        json!({"n": 2, "mean": 0.5}),
        "two ratings were given, one per request"
    );
    assert_eq!(row["metrics"]["client_first_token_ms"]["n"], 1, "{row}");

    let by_outcome = serde_json::to_value(
        report_from_store(
            &store,
            &query(vec![Dimension::Outcome, Dimension::Feedback]),
        )
        .unwrap(),
    )
    .unwrap();
    let rows = by_outcome["rows"].as_array().unwrap();
    let failed: Vec<&Value> = rows
        .iter()
        .filter(|r| r["group"]["outcome"] == "upstream_error")
        .collect();
    assert_eq!(failed.len(), 1, "{by_outcome}");
    assert_eq!(
        failed[0]["group"]["feedback"], "none",
        "the rating belongs to the answer the user saw, not the 429 before it"
    );
}

/// The export agrees with stats: a retried id's feedback is joined to its last attempt only,
/// and `--label`/`--min-score` select that attempt, not the failures before it.
#[test]
fn exports_join_a_retried_ids_feedback_to_its_last_attempt_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("aloud.db");
    let mut store = SqliteStore::open(&db).unwrap();
    let mut first = records::record("retried", 1, 1_000, 1000);
    first.outcome = Outcome::UpstreamError;
    let second = records::record("retried", 2, 2_000, 1000);
    store.insert_batch(&[first, second]).unwrap();
    store
        .insert_feedback("retried", Some(1.0), Some("good".into()), None)
        .unwrap();
    drop(store);
    // (attempt, feedback_score, feedback_label) of each csv row.
    let export = |extra: &[&str]| -> Vec<(String, String, String)> {
        csv_export::csv_rows(&db, extra)
            .into_iter()
            .map(|f| {
                let n = f.len();
                (f[1].clone(), f[n - 2].clone(), f[n - 1].clone())
            })
            .collect()
    };
    let row = |a: &str, s: &str, l: &str| (a.to_owned(), s.to_owned(), l.to_owned());
    assert_eq!(export(&[]), [row("1", "", ""), row("2", "1", "good")]);
    assert_eq!(export(&["--label", "good"]), [row("2", "1", "good")]);
    assert_eq!(export(&["--min-score", "0.5"]), [row("2", "1", "good")]);
}
