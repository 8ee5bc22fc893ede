//! Tests of the stats table and CSV.

use super::*;
use crate::capture::record::Outcome;
use crate::capture::stats::{
    Dimension, FeedbackSummary, Group, LatencyOver, Metrics, Outcomes, Window,
};

fn summary(n: u64, v: f64) -> Summary {
    Summary {
        n,
        p50: Some(v),
        p90: Some(v * 2.0),
        p99: Some(v * 3.0),
        mean: Some(v),
    }
}

fn sample() -> Report {
    let mut outcomes = Outcomes::default();
    outcomes.add(Outcome::Ok);
    outcomes.add(Outcome::Ok);
    outcomes.add(Outcome::Timeout);
    Report {
        window: Window {
            since_ms: None,
            until_ms: None,
            bucket: None,
        },
        group_by: vec![Dimension::Route, Dimension::Feedback],
        latency_over: LatencyOver::Outcome(Outcome::Ok),
        rows: vec![Row {
            bucket_start_ms: Some(1_714_953_600_000),
            group: Group(vec![
                (Dimension::Route, "sim".into()),
                (Dimension::Feedback, "so-so, \"meh\"".into()),
            ]),
            n: 3,
            outcomes,
            metrics: Metrics {
                first_feedback_ms: summary(2, 850.0),
                total_ms: summary(2, 2630.0),
                eta_error_pct: summary(2, 12.25),
                ..Metrics::default()
            },
            feedback: FeedbackSummary {
                n: 1,
                mean: Some(0.5),
            },
        }],
    }
}

#[test]
fn table_says_what_latency_is_over() {
    let table = render_table(&sample());
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        "latency over ok exchanges (n=2); other outcomes: timeout 1"
    );
    assert_eq!(
        lines[3],
        "2024-05-06T00:00:00Z  route=sim feedback=so-so, \"meh\"  n=3 (ok 2, timeout 1)  feedback mean 0.50 (n=1)"
    );
    assert!(lines[4].starts_with("  metric "), "{table}");
    let feedback = lines.iter().find(|l| l.contains("first feedback")).unwrap();
    assert!(
        feedback.ends_with("2  850ms  1.70s  2.55s  850ms"),
        "{table}"
    );
    let token = lines
        .iter()
        .find(|l| l.contains("painted first token"))
        .unwrap();
    assert!(token.ends_with("0      -      -      -      -"), "{table}");
    let eta = lines.iter().find(|l| l.contains("ETA error")).unwrap();
    assert!(eta.ends_with("2  12.2%  24.5%  36.8%  12.2%"), "{table}");
    // Aligned: every metric line is as long as the header line.
    let widths: Vec<usize> = lines[4..].iter().map(|l| l.chars().count()).collect();
    assert!(widths.iter().all(|w| *w == widths[0]), "{table}");
}

#[test]
fn csv_quotes_and_leaves_nothing_empty() {
    let csv = render_csv(&sample());
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with(
        "bucket_start,bucket_start_ms,route,feedback,latency_over,n,ok,upstream_error,proxy_error,timeout,client_disconnected,shutdown,first_feedback_n,first_feedback_p50_ms,"
    ), "{csv}");
    assert!(lines[0].ends_with(",eta_error_n,eta_error_p50_pct,eta_error_p90_pct,eta_error_p99_pct,eta_error_mean_pct,feedback_n,feedback_mean"), "{csv}");
    assert!(
        lines[1].ends_with(",2,12.25,24.5,36.75,12.25,1,0.5"),
        "{csv}"
    );
    assert!(
        lines[1].starts_with("2024-05-06T00:00:00Z,1714953600000,sim,\"so-so, \"\"meh\"\"\",ok,3,2,0,0,1,0,0,2,850,1700,2550,850,0,,,,,"),
        "{csv}"
    );
    assert!(lines[1].ends_with(",1,0.5"), "{csv}");
}

/// A group value a client chose (a feedback label, a model) that a spreadsheet would run as a
/// formula stays text, as in `aloud export --format csv`.
#[test]
fn csv_keeps_formula_like_group_values_as_text() {
    let mut report = sample();
    report.rows[0].group.0[1].1 = "=cmd|' /C calc'!A0".to_owned();
    let csv = render_csv(&report);
    let line = csv.lines().nth(1).unwrap();
    assert!(line.contains(",'=cmd|' /C calc'!A0,"), "{csv}");
    assert!(!line.contains(",=cmd"), "{csv}");
}
