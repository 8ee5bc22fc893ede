//! The hand-computed fixture `aloud stats` is tested against (tests/stats_report.rs): 20
//! records and their beacons, written through the store API into a SQLite file.
#![allow(dead_code)]

#[path = "records.rs"]
mod records;

use std::path::Path;

use aloud::capture::{CaptureRecord, Outcome, Timings};
use aloud::store::{ClientTimings, Entry, Feedback, SqliteStore, Store};
use serde_json::json;

/// 2024-05-06T00:00:00Z.
pub const T0: i64 = 1_714_953_600_000;
pub const MIN: i64 = 60_000;
pub const HOUR: i64 = 3_600_000;
pub const WINDOW: [&str; 4] = [
    "--since",
    "2024-05-06T00:00:00Z",
    "--until",
    "2024-05-06T02:00:00Z",
];

pub fn rec(id: &str, at: i64, route: &str, outcome: Outcome, t: [Option<f64>; 5]) -> CaptureRecord {
    let mut r = records::record(id, 1, at, 1000);
    let [ff, token, done, silence, overhead] = t;
    r.route = route.into();
    r.outcome = outcome;
    if route == "ant" {
        (r.api, r.model, r.tier) = ("anthropic".into(), Some("m2".into()), "off".into());
    } else {
        (r.api, r.model, r.tier) = ("openai".into(), Some("m1".into()), "events".into());
    }
    r.timings = Timings {
        first_feedback_ms: ff,
        first_token_ms: token,
        done_ms: done,
        longest_silence_ms: silence,
        overhead_ms: overhead,
        ..Timings::default()
    };
    r
}

/// The fixture:
/// - `s1`..`s10`: route sim (openai, m1, events), ok, at T0 + i min; first feedback 10·i,
///   first token 100·i, total 1000·i, longest silence 200, overhead 1.
/// - `s-err`: sim, upstream_error at T0 + 20 min (feedback 5, total 50);
///   `s-slow`: sim, timeout at T0 + 30 min (feedback 1000, total 30 000).
/// - `a1`..`a5`: route ant (anthropic, m2, off), ok, at T0 + 1 h + j min; first feedback,
///   first token 500·j, total 2000·j, silence 500·j, overhead 2.
/// - `a-gone`: ant, client_disconnected at T0 + 1 h + 30 min (feedback 100, total 700).
/// - `early` at T0 − 1 ms and `late` at T0 + 2 h: outside the window (until is exclusive).
///
/// Beacons: painted progress/token s1 15/110, s2 25/210, s3 35/310, a1 520/530, s-err 12/-.
/// Feedback: s1 1 "good", s2 0 "bad", s3 1 (no label), a1 0.5 "good", s-slow 0 "bad".
pub fn seed(db: &Path) {
    let mut entries = Vec::new();
    for i in 1..=10 {
        let v = f64::from(i);
        entries.push(rec(
            &format!("s{i}"),
            T0 + i64::from(i) * MIN,
            "sim",
            Outcome::Ok,
            [
                Some(10.0 * v),
                Some(100.0 * v),
                Some(1000.0 * v),
                Some(200.0),
                Some(1.0),
            ],
        ));
    }
    let mut err = rec(
        "s-err",
        T0 + 20 * MIN,
        "sim",
        Outcome::UpstreamError,
        [Some(5.0), None, Some(50.0), Some(5.0), Some(1.0)],
    );
    err.model = Some("m1".into());
    entries.push(err);
    entries.push(rec(
        "s-slow",
        T0 + 30 * MIN,
        "sim",
        Outcome::Timeout,
        [
            Some(1000.0),
            None,
            Some(30_000.0),
            Some(29_000.0),
            Some(1.0),
        ],
    ));
    for j in 1..=5 {
        let v = f64::from(j);
        entries.push(rec(
            &format!("a{j}"),
            T0 + HOUR + i64::from(j) * MIN,
            "ant",
            Outcome::Ok,
            [
                Some(500.0 * v),
                Some(500.0 * v),
                Some(2000.0 * v),
                Some(500.0 * v),
                Some(2.0),
            ],
        ));
    }
    entries.push(rec(
        "a-gone",
        T0 + HOUR + 30 * MIN,
        "ant",
        Outcome::ClientDisconnected,
        [Some(100.0), None, Some(700.0), Some(100.0), Some(2.0)],
    ));
    entries.push(rec(
        "early",
        T0 - 1,
        "sim",
        Outcome::Ok,
        [Some(99_999.0); 5],
    ));
    entries.push(rec(
        "late",
        T0 + 2 * HOUR,
        "sim",
        Outcome::Ok,
        [Some(88_888.0); 5],
    ));
    assert_eq!(entries.len(), 20);
    let mut entries: Vec<Entry> = entries
        .into_iter()
        .map(|r| Entry::Record(Box::new(r)))
        .collect();
    for (id, timings) in [
        (
            "s1",
            json!({"first_progress_painted_ms": 15, "first_token_painted_ms": 110}),
        ),
        (
            "s2",
            json!({"first_progress_painted_ms": 25, "first_token_painted_ms": 210}),
        ),
        (
            "s3",
            json!({"first_progress_painted_ms": 35, "first_token_painted_ms": 310, "done_ms": 999}),
        ),
        (
            "a1",
            json!({"first_progress_painted_ms": 520, "first_token_painted_ms": 530}),
        ),
        ("s-err", json!({"first_progress_painted_ms": 12})),
    ] {
        entries.push(Entry::ClientTimings(ClientTimings {
            id: id.into(),
            timings,
            owner: None,
        }));
    }
    for (id, score, label) in [
        ("s1", 1.0, Some("good")),
        ("s2", 0.0, Some("bad")),
        ("s3", 1.0, None),
        ("a1", 0.5, Some("good")),
        ("s-slow", 0.0, Some("bad")),
    ] {
        entries.push(Entry::Feedback(Feedback {
            id: id.into(),
            score: Some(score),
            label: label.map(Into::into),
            ..Feedback::default()
        }));
    }
    let mut store = SqliteStore::open(db).unwrap();
    store.write_batch(&entries).unwrap();
}
