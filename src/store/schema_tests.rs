//! Migrations 2 and 3 on a version-1 database holding a record whose deltas kept their text, and
//! migration 4 (beacons per owner) on a version-3 one.

use super::{MIGRATIONS, VERSION};
use crate::record::{CaptureLevel, CaptureRecord, Delta, DeltaKind, Reassembled};
use crate::store::{SqliteStore, Store};
use rusqlite::Connection;

fn legacy_record() -> CaptureRecord {
    let old = |at, kind, text: &str| Delta::text(at, kind, text);
    CaptureRecord {
        started_at_ms: 1,
        streamed: true,
        capture: CaptureLevel::Full,
        // Large enough that the deltas sit in overflow pages, which the update frees.
        request: Some(serde_json::Value::String("q".repeat(20_000)).into()),
        response: Some(Reassembled {
            text: "mail [REDACTED:email] now".into(),
            reasoning: "hm".into(),
            ..Reassembled::default()
        }),
        deltas: vec![
            old(0.5, DeltaKind::Reasoning, "hm"),
            old(0.5, DeltaKind::Label, "Heading"),
            old(1.0, DeltaKind::Answer, "mail zelda."),
            old(2.0, DeltaKind::Answer, "quux@wombat"),
            old(3.25, DeltaKind::Answer, "-mail.example now"),
        ],
        ..CaptureRecord::minimal("legacy")
    }
}

/// Stores `json` as the `legacy` record's row, with the columns every version has.
fn insert_legacy(conn: &Connection, json: &str) {
    conn.execute(
        "INSERT INTO captures (id, attempt, started_at_ms, route, api, method, path, streamed,
            tier, outcome, partial, record)
         VALUES ('legacy', 1, 1, 'r', 'openai', 'POST', '/', 1, 'off', 'ok', 0, ?1)",
        [json],
    )
    .unwrap();
}

#[test]
fn old_delta_texts_become_offsets_and_leave_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.db");
    {
        let conn = Connection::open(&path).unwrap();
        let _: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        let json = serde_json::to_string(&legacy_record()).unwrap();
        assert!(json.contains("quux@wombat"));
        insert_legacy(&conn, &json);
    }
    let store = SqliteStore::open(&path).unwrap();
    let version: i64 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, VERSION);
    let record = store.get("legacy").unwrap().remove(0);
    let deltas: Vec<(f64, DeltaKind, Option<usize>, &str)> = record
        .deltas
        .iter()
        .map(|d| (d.at_ms, d.kind, d.end, d.text.as_str()))
        .collect();
    assert_eq!(
        deltas,
        [
            (0.5, DeltaKind::Reasoning, Some(2), ""),
            (0.5, DeltaKind::Label, None, "Heading"),
            (1.0, DeltaKind::Answer, Some(11), ""),
            (2.0, DeltaKind::Answer, Some(22), ""),
            (3.25, DeltaKind::Answer, Some(39), ""),
        ]
    );
    let answer: String = record
        .delta_texts()
        .iter()
        .filter(|d| d.kind == DeltaKind::Answer)
        .map(|d| d.text)
        .collect();
    assert_eq!(answer, "mail [REDACTED:email] now");
    // While the store is open (its -wal in use), and after it closed.
    assert_clean(dir.path());
    drop(store);
    assert_clean(dir.path());
}

fn assert_clean(dir: &std::path::Path) {
    for file in ["capture.db", "capture.db-wal"] {
        let bytes = std::fs::read(dir.join(file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for piece in ["zelda.", "quux@wombat", "-mail.example"] {
            assert!(!text.contains(piece), "{file} still holds {piece:?}");
        }
    }
}

/// Migration 4 on a version-3 database: each beacon keeps its owner (`''` for none), and a
/// second owner's beacon on the same id then gets a row of its own.
#[test]
fn beacons_move_to_rows_per_owner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.db");
    let a = crate::config::Owner::parse("00112233445566778899aabbccddeeff");
    {
        let conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute_batch(
            "INSERT INTO feedback (id, score, label, comment, owner)
                 VALUES ('mine', 1.0, 'good', 'c', '00112233445566778899aabbccddeeff'),
                        ('anon', 0.0, 'bad', NULL, NULL);
             INSERT INTO client_timings (id, timings, owner)
                 VALUES ('mine', '{\"done_ms\":5}', '00112233445566778899aabbccddeeff'),
                        ('anon', '{\"done_ms\":6}', NULL);",
        )
        .unwrap();
    }
    let mut store = SqliteStore::open(&path).unwrap();
    let label = |s: &SqliteStore, id, o| s.feedback(id, o).unwrap().and_then(|f| f.label);
    assert_eq!(label(&store, "mine", a).as_deref(), Some("good"));
    assert_eq!(label(&store, "anon", None).as_deref(), Some("bad"));
    assert_eq!(label(&store, "mine", None), None);
    assert_eq!(
        store.client_timings("anon", None).unwrap(),
        Some(serde_json::json!({"done_ms": 6}))
    );
    assert!(store.client_timings("mine", a).unwrap().is_some());
    store
        .insert_feedback("mine", Some(0.0), Some("other".into()), None)
        .unwrap();
    assert_eq!(label(&store, "mine", a).as_deref(), Some("good"));
    assert_eq!(label(&store, "mine", None).as_deref(), Some("other"));
}

/// A reader (exports, stats) of a version-3 file another process has not migrated yet: beacons
/// without a token (owner NULL there, `''` after migration 4) are found all the same.
#[test]
fn a_reader_of_a_version_3_file_finds_beacons_without_an_owner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.db");
    {
        let conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        insert_legacy(&conn, &serde_json::to_string(&legacy_record()).unwrap());
        conn.execute_batch(
            "INSERT INTO feedback (id, score, label, owner) VALUES ('legacy', 1.0, 'good', NULL);
             INSERT INTO client_timings (id, timings, owner) VALUES ('legacy', '{}', NULL);",
        )
        .unwrap();
    }
    let options = crate::store::SqliteOptions {
        read_only: true,
        ..crate::store::SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&path, &options).unwrap();
    let f = store.feedback("legacy", None).unwrap().unwrap();
    assert_eq!(f.label.as_deref(), Some("good"));
    assert!(store.client_timings("legacy", None).unwrap().is_some());
    assert_eq!(store.last_attempt("legacy", None).unwrap(), Some(1));
    let filter = crate::store::Filter {
        label: Some("good".into()),
        ..crate::store::Filter::default()
    };
    assert_eq!(store.query(&filter).unwrap().count(), 1);
    let annotations = store.annotations(&crate::store::Filter::default()).unwrap();
    assert_eq!(annotations.len(), 1);
    assert_eq!(annotations[0].feedback_score, Some(1.0));
}
