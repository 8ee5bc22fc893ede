//! `aloud stats` against a hand-computed fixture store: 20 records (and their beacons) written
//! through the store API into a real SQLite file, the real binary run with several flag
//! combinations, and every figure compared with a value worked out by hand below.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

#[path = "support/stats_fixture.rs"]
mod stats_fixture;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use stats_fixture::{HOUR, T0, WINDOW, seed};

fn stats(db: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_aloud"))
        .arg("stats")
        .args(args)
        .arg("--database")
        .arg(db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn metric(n: u64, p50: f64, p90: f64, p99: f64, mean: f64) -> Value {
    json!({"n": n, "p50": p50, "p90": p90, "p99": p99, "mean": mean})
}

/// Compares floats to 1e-9 (means like 8050/15 are not exact in binary).
fn assert_close(got: &Value, want: &Value, at: &str) {
    match (got, want) {
        (Value::Number(g), Value::Number(w)) => {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!((g - w).abs() < 1e-9, "{at}: {g} != {w}");
        }
        (Value::Object(g), Value::Object(w)) => {
            assert_eq!(
                g.keys().collect::<Vec<_>>(),
                w.keys().collect::<Vec<_>>(),
                "{at}"
            );
            for (k, v) in w {
                assert_close(&g[k], v, &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(got, want, "{at}"),
    }
}

#[test]
fn one_row_over_ok_exchanges_as_json_and_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("aloud.db");
    seed(&db);

    let report: Value =
        serde_json::from_str(&stats(&db, &[&WINDOW[..], &["--json"]].concat())).unwrap();
    assert_eq!(
        report["window"],
        json!({"since_ms": T0, "until_ms": T0 + 2 * HOUR, "bucket": null})
    );
    assert_eq!(report["group_by"], json!([]));
    assert_eq!(report["latency_over"], "ok");
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report:#}");
    let row = &rows[0];
    assert_eq!(row["bucket_start_ms"], Value::Null);
    assert_eq!(row["group"], json!({}));
    // 20 − early − late = 18: 15 ok (s1..s10, a1..a5) and one each of three other outcomes.
    assert_eq!(row["n"], 18);
    assert_eq!(
        row["outcomes"],
        json!({"ok": 15, "upstream_error": 1, "timeout": 1, "client_disconnected": 1})
    );
    let want = json!({
        // 10,20,…,100, 500,1000,1500,2000,2500 (15 values): p50 rank ceil(7.5)=8 → 80,
        // p90 rank ceil(13.5)=14 → 2000, p99 rank ceil(14.85)=15 → 2500;
        // mean (550 + 7500) / 15 = 8050/15.
        "first_feedback_ms": metric(15, 80.0, 2000.0, 2500.0, 8050.0 / 15.0),
        // 100..1000 and 500..2500 sorted: 100,200,300,400,500,500,600,700,…: rank 8 → 700;
        // rank 14 → 2000; rank 15 → 2500; mean (5500 + 7500) / 15.
        "first_token_ms": metric(15, 700.0, 2000.0, 2500.0, 13_000.0 / 15.0),
        // 1000..10000 and 2000..10000 step 2000: 1000,2000,2000,3000,4000,4000,5000,6000,…:
        // rank 8 → 6000; ranks 14, 15 → 10000; mean (55000 + 30000) / 15.
        "total_ms": metric(15, 6000.0, 10_000.0, 10_000.0, 85_000.0 / 15.0),
        // ten 200s then 500..2500: rank 8 → 200; rank 14 → 2000; 15 → 2500;
        // mean (2000 + 7500) / 15.
        "longest_silence_ms": metric(15, 200.0, 2000.0, 2500.0, 9500.0 / 15.0),
        // ten 1.0s, five 2.0s: rank 8 → 1; ranks 14, 15 → 2; mean 20 / 15.
        "overhead_ms": metric(15, 1.0, 2.0, 2.0, 20.0 / 15.0),
        // ok exchanges with a beacon: 15, 25, 35, 520 (s-err's 12 is not ok):
        // rank ceil(2)=2 → 25; ranks ceil(3.6)=4, 4 → 520; mean 595 / 4.
        "client_first_progress_ms": metric(4, 25.0, 520.0, 520.0, 148.75),
        // 110, 210, 310, 530: rank 2 → 210; rank 4 → 530; mean 1160 / 4.
        "client_first_token_ms": metric(4, 210.0, 530.0, 530.0, 290.0),
        // No record here has an `eta` (tests/dashboard.rs seeds some).
        "eta_error_pct": {"n": 0, "p50": null, "p90": null, "p99": null, "mean": null},
    });
    assert_close(&row["metrics"], &want, "metrics");
    // Feedback counts every outcome: 1 + 0 + 1 + 0.5 + 0 (the timeout) = 2.5 over 5.
    assert_close(&row["feedback"], &json!({"n": 5, "mean": 0.5}), "feedback");

    let table = stats(&db, &WINDOW);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        "latency over ok exchanges (n=15); other outcomes: upstream_error 1, timeout 1, client_disconnected 1"
    );
    assert_eq!(
        lines[3],
        "all  n=18 (ok 15, upstream_error 1, timeout 1, client_disconnected 1)  feedback mean 0.50 (n=5)"
    );
    let cells = |name: &str| -> Vec<String> {
        let line = lines
            .iter()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap();
        let rest = line.trim_start().strip_prefix(name).unwrap();
        rest.split_whitespace().map(str::to_owned).collect()
    };
    assert_eq!(cells("metric"), ["n", "p50", "p90", "p99", "mean"]);
    // 8050/15 = 536.67 → 537ms; 2000 → 2.00s.
    assert_eq!(
        cells("first feedback"),
        ["15", "80ms", "2.00s", "2.50s", "537ms"]
    );
    assert_eq!(
        cells("painted first progress (client)"),
        ["4", "25ms", "520ms", "520ms", "149ms"]
    );
    assert_eq!(
        cells("painted first token (client)"),
        ["4", "210ms", "530ms", "530ms", "290ms"]
    );
    // 85000/15 = 5666.67 → 5.67s.
    assert_eq!(cells("total"), ["15", "6.00s", "10.00s", "10.00s", "5.67s"]);
    assert_eq!(
        cells("aloud overhead"),
        ["15", "1.0ms", "2.0ms", "2.0ms", "1.3ms"]
    );
    // Aligned: the metric lines are all as long as their header line.
    let widths: Vec<usize> = lines[4..].iter().map(|l| l.chars().count()).collect();
    assert!(widths.iter().all(|w| *w == widths[0]), "{table}");
}

/// CSV as records: header → value per line (the fixture has no field that needs quotes).
fn parse_csv(text: &str) -> Vec<HashMap<String, String>> {
    assert!(!text.contains('"'), "{text}");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            assert_eq!(cells.len(), header.len(), "{l}");
            header
                .iter()
                .map(|h| (*h).to_owned())
                .zip(cells.into_iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

#[test]
fn grouped_hourly_series_as_csv_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("aloud.db");
    seed(&db);
    let args = [&WINDOW[..], &["--group-by", "route,tier", "--bucket", "1h"]].concat();
    let rows = parse_csv(&stats(&db, &[&args[..], &["--csv"]].concat()));
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let (sim, ant) = (&rows[0], &rows[1]);
    let get = |row: &HashMap<String, String>, k: &str| {
        row.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("no column {k}"))
    };
    assert_eq!(get(sim, "bucket_start"), "2024-05-06T00:00:00Z");
    assert_eq!(get(sim, "bucket_start_ms"), T0.to_string());
    assert_eq!(
        (get(sim, "route"), get(sim, "tier")),
        ("sim".into(), "events".into())
    );
    assert_eq!(get(sim, "latency_over"), "ok");
    assert_eq!(
        [
            "n",
            "ok",
            "upstream_error",
            "timeout",
            "client_disconnected",
            "proxy_error",
            "shutdown"
        ]
        .map(|k| get(sim, k)),
        ["12", "10", "1", "1", "0", "0", "0"]
    );
    // sim's ok first feedback 10..100: rank 5 → 50, rank 9 → 90, rank 10 → 100, mean 55.
    assert_eq!(
        [
            "first_feedback_n",
            "first_feedback_p50_ms",
            "first_feedback_p90_ms",
            "first_feedback_p99_ms",
            "first_feedback_mean_ms"
        ]
        .map(|k| get(sim, k)),
        ["10", "50", "90", "100", "55"]
    );
    // Painted progress 15, 25, 35: rank ceil(1.5)=2 → 25, rank ceil(2.7)=3 → 35, mean 25.
    assert_eq!(
        [
            "client_first_progress_n",
            "client_first_progress_p50_ms",
            "client_first_progress_p90_ms",
            "client_first_progress_mean_ms"
        ]
        .map(|k| get(sim, k)),
        ["3", "25", "35", "25"]
    );
    // Feedback 1, 0, 1 and the timeout's 0: mean 2 / 4.
    assert_eq!(
        [get(sim, "feedback_n"), get(sim, "feedback_mean")],
        ["4", "0.5"]
    );
    assert_eq!(get(ant, "bucket_start"), "2024-05-06T01:00:00Z");
    assert_eq!(
        (get(ant, "route"), get(ant, "tier")),
        ("ant".into(), "off".into())
    );
    assert_eq!(
        [
            get(ant, "n"),
            get(ant, "ok"),
            get(ant, "client_disconnected")
        ],
        ["6", "5", "1"]
    );
    // 500..2500: rank ceil(2.5)=3 → 1500, rank ceil(4.5)=5 → 2500, mean 1500.
    assert_eq!(
        [
            "first_feedback_p50_ms",
            "first_feedback_p90_ms",
            "first_feedback_mean_ms"
        ]
        .map(|k| get(ant, k)),
        ["1500", "2500", "1500"]
    );
    // No beacon for a first token outside a1: n 1; no painted token for a2..a5.
    assert_eq!(get(ant, "client_first_token_n"), "1");
    assert_eq!(
        [get(ant, "feedback_n"), get(ant, "feedback_mean")],
        ["1", "0.5"]
    );

    let json: Value =
        serde_json::from_str(&stats(&db, &[&args[..], &["--json"]].concat())).unwrap();
    assert_eq!(json["window"]["bucket"], "1h");
    assert_eq!(json["group_by"], json!(["route", "tier"]));
    assert_eq!(json["rows"][0]["bucket_start_ms"], T0);
    assert_eq!(
        json["rows"][0]["group"],
        json!({"route": "sim", "tier": "events"})
    );
    assert_eq!(json["rows"][1]["bucket_start_ms"], T0 + HOUR);
    assert_close(
        &json["rows"][1]["metrics"]["total_ms"],
        &metric(5, 6000.0, 10_000.0, 10_000.0, 6000.0),
        "ant total",
    );

    // Daily buckets put both hours in one row per group.
    let daily: Value = serde_json::from_str(&stats(
        &db,
        &[
            &WINDOW[..],
            &["--bucket", "1d", "--group-by", "api", "--json"],
        ]
        .concat(),
    ))
    .unwrap();
    let keys: Vec<(i64, &str)> = daily["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["bucket_start_ms"].as_i64().unwrap(),
                r["group"]["api"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(keys, [(T0, "anthropic"), (T0, "openai")]);
}

#[test]
fn by_feedback_over_all_outcomes_and_over_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("aloud.db");
    seed(&db);
    let json: Value = serde_json::from_str(&stats(
        &db,
        &[
            &WINDOW[..],
            &["--group-by", "feedback", "--all-outcomes", "--json"],
        ]
        .concat(),
    ))
    .unwrap();
    assert_eq!(json["latency_over"], "all");
    let rows: Vec<(&str, u64, &Value)> = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["group"]["feedback"].as_str().unwrap(),
                r["n"].as_u64().unwrap(),
                &r["metrics"]["first_feedback_ms"],
            )
        })
        .collect();
    // bad: s2, s-slow; good: s1, a1; none: s4..s10, s-err, a2..a5, a-gone (13); score=1: s3.
    assert_eq!(
        rows.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
        [("bad", 2), ("good", 2), ("none", 13), ("score=1", 1)]
    );
    // bad over all outcomes: 20 (s2) and 1000 (the timeout): rank 1 → 20, rank 2 → 1000, mean 510.
    assert_close(rows[0].2, &metric(2, 20.0, 1000.0, 1000.0, 510.0), "bad");
    // good: 10 (s1), 500 (a1).
    assert_close(rows[1].2, &metric(2, 10.0, 500.0, 500.0, 255.0), "good");

    let table = stats(
        &db,
        &[&WINDOW[..], &["--group-by", "feedback", "--all-outcomes"]].concat(),
    );
    assert!(
        table.starts_with("latency over all exchanges (n=18); other outcomes: none\n"),
        "{table}"
    );

    let timeouts: Value = serde_json::from_str(&stats(
        &db,
        &[&WINDOW[..], &["--outcome", "timeout", "--json"]].concat(),
    ))
    .unwrap();
    assert_eq!(timeouts["latency_over"], "timeout");
    assert_eq!(timeouts["rows"][0]["n"], 1);
    assert_close(
        &timeouts["rows"][0]["metrics"]["total_ms"],
        &metric(1, 30_000.0, 30_000.0, 30_000.0, 30_000.0),
        "timeout total",
    );
}

#[test]
fn relative_windows_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("aloud.db");
    seed(&db);
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let before = now();
    let json: Value = serde_json::from_str(&stats(&db, &["--since", "7d", "--json"])).unwrap();
    let after = now();
    let since = json["window"]["since_ms"].as_i64().unwrap();
    let week = 7 * 24 * HOUR;
    assert!((before - week..=after - week).contains(&since), "{json:#}");
    assert_eq!(json["window"]["until_ms"], Value::Null);
    assert_eq!(json["rows"], json!([]), "the fixture is from 2024");
    assert!(stats(&db, &["--since", "7d"]).contains("no exchanges in this window"));

    // Unbounded: all 20 records, 17 of them ok.
    let all: Value = serde_json::from_str(&stats(&db, &["--json"])).unwrap();
    assert_eq!(
        (
            all["rows"][0]["n"].as_u64(),
            all["rows"][0]["outcomes"]["ok"].as_u64()
        ),
        (Some(20), Some(17))
    );

    for (args, says) in [
        (&["--group-by", "colour"][..], "--group-by"),
        (&["--bucket", "1w"][..], "--bucket"),
        (&["--since", "yesterday"][..], "--since"),
        (
            &["--since", "1d", "--until", "2d"][..],
            "--until must be later",
        ),
        (&["--outcome", "fine"][..], "--outcome"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_aloud"))
            .arg("stats")
            .args(args)
            .arg("--database")
            .arg(&db)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// A reader that stops early (`aloud stats --json | head`) ends the run quietly: no panic, no
/// error, whatever the format.
#[test]
fn a_reader_that_stops_early_is_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("aloud.db");
    seed(&db);
    for format in [&["--json"][..], &["--csv"], &[]] {
        // The pipe's reader is gone before the run starts: its first write fails.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_aloud"))
            .arg("stats")
            .args(format)
            .arg("--database")
            .arg(&db)
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{format:?}: {err}");
        assert!(!err.contains("panicked"), "{format:?}: {err}");
    }
}
