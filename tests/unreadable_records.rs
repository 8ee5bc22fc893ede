//! A stored record that cannot be read (damaged, or written by hand) stops `aloud export` and
//! `aloud stats` with its id and the way past it; `--skip-unreadable` leaves it out, names it
//! on standard error and counts it, and every readable record is still there. A file with no
//! capture tables at all says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aloud::record::CaptureRecord;
use aloud::store::{SqliteStore, Store};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output};

fn record(id: &str, started_at_ms: i64) -> CaptureRecord {
    serde_json::from_value(json!({
        "id": id, "attempt": 1, "started_at_ms": started_at_ms, "route": "r", "api": "openai",
        "model": "m", "method": "POST", "path": "/v1/chat/completions", "client_status": 200,
        "upstream_status": 200, "streamed": false, "tier": "off", "outcome": "ok",
        "partial": false, "capture": "full", "timings": {"done_ms": 12.5},
        "usage": null, "upstream_timings": null,
        "request": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        "response": {"text": "hello", "reasoning": "", "tool_calls": [], "finish_reason": "stop"},
        "deltas": [], "error": null, "truncated": false
    }))
    .unwrap()
}

/// A database with three records, the middle one damaged.
fn database(dir: &Path) -> std::path::PathBuf {
    let db = dir.join("aloud.db");
    let mut store = SqliteStore::open(&db).unwrap();
    let records = [
        record("readable-one-0001", 1_000),
        record("damaged-record-02", 2_000),
        record("readable-two-0003", 3_000),
    ];
    assert_eq!(store.insert_batch(&records).unwrap(), 3);
    drop(store);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let changed = conn
        .execute(
            "UPDATE captures SET record = '{not json' WHERE id = 'damaged-record-02'",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    db
}

fn aloud(args: &[&str], db: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aloud"))
        .args(args)
        .arg("--database")
        .arg(db)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn export_stops_at_an_unreadable_record_unless_told_to_leave_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());

    let stopped = aloud(&["export", "--format", "chat-jsonl"], &db);
    assert!(!stopped.status.success());
    let err = text(&stopped.stderr);
    assert!(err.contains("damaged-record-02"), "{err}");
    assert!(err.contains("--skip-unreadable"), "{err}");

    let out = aloud(
        &["export", "--format", "chat-jsonl", "--skip-unreadable"],
        &db,
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("left out") && err.contains("damaged-record-02"),
        "{err}"
    );
    assert!(err.contains("1 unreadable in the database"), "{err}");
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "both readable records are written");
}

#[test]
fn stats_stops_at_an_unreadable_record_unless_told_to_leave_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());

    let stopped = aloud(&["stats", "--json"], &db);
    assert!(!stopped.status.success());
    let err = text(&stopped.stderr);
    assert!(
        err.contains("damaged-record-02") && err.contains("--skip-unreadable"),
        "{err}"
    );

    let out = aloud(&["stats", "--json", "--skip-unreadable"], &db);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("damaged-record-02"), "{err}");
    assert!(err.contains("1 unreadable record(s) left out"), "{err}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rows"][0]["n"], 2, "{report}");
}

#[test]
fn an_empty_file_is_named_as_having_no_capture_tables() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("empty.db");
    std::fs::write(&db, b"").unwrap();
    for args in [&["stats"][..], &["export", "--format", "csv"]] {
        let out = aloud(args, &db);
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains("has no capture tables yet"), "{args:?}: {err}");
    }
}
