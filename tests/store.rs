//! The SQLite store on real files: round trips, filters, idempotence, corrupt files, migrations.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

#[path = "support/records.rs"]
mod records;

use aloud::capture::Outcome;
use aloud::store::{Entry, Feedback, Filter, SqliteStore, Store, StoreError, StoreErrorKind};
use records::{record, tagged};
use serde_json::json;

fn ids(store: &SqliteStore, filter: &Filter) -> Vec<String> {
    store
        .query(filter)
        .unwrap()
        .map(|r| r.unwrap().id)
        .collect()
}

#[test]
fn insert_get_round_trip_and_idempotent_reinsert() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path().join("capture.db")).unwrap();
    let first = record("a", 1, 1000, 2048);
    let retry = record("a", 2, 1001, 2048);
    assert_eq!(
        store.insert_batch(&[first.clone(), retry.clone()]).unwrap(),
        2
    );
    assert_eq!(
        store.insert_batch(&[first.clone(), retry.clone()]).unwrap(),
        0
    );
    let mut changed = first.clone();
    changed.route = "other".to_string();
    assert_eq!(
        store.insert_batch(&[changed]).unwrap(),
        0,
        "first write wins"
    );
    assert_eq!(store.get("a").unwrap(), vec![first, retry]);
    assert!(store.get("missing").unwrap().is_empty());
    assert!(store.exists("a").unwrap());
    assert!(!store.exists("b").unwrap());
}

#[test]
fn query_filters() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path().join("capture.db")).unwrap();
    store
        .insert_batch(&[
            tagged("r1", 100, "openai", "m1", Outcome::Ok),
            tagged("r2", 200, "anthropic", "m2", Outcome::Ok),
            tagged("r3", 300, "openai", "m2", Outcome::Timeout),
            tagged("r4", 300, "openai", "m1", Outcome::Ok),
        ])
        .unwrap();
    store.insert_feedback("r1", Some(0.9), None, None).unwrap();
    store
        .insert_feedback("r3", Some(0.2), Some("bad".into()), Some("slow".into()))
        .unwrap();

    assert_eq!(ids(&store, &Filter::default()), ["r1", "r2", "r3", "r4"]);
    let since = Filter {
        since_ms: Some(200),
        ..Filter::default()
    };
    assert_eq!(ids(&store, &since), ["r2", "r3", "r4"]);
    let route = Filter {
        route: Some("openai".into()),
        ..Filter::default()
    };
    assert_eq!(ids(&store, &route), ["r1", "r3", "r4"]);
    let model = Filter {
        model: Some("m2".into()),
        ..Filter::default()
    };
    assert_eq!(ids(&store, &model), ["r2", "r3"]);
    let outcome = Filter {
        outcome: Some("timeout".into()),
        ..Filter::default()
    };
    assert_eq!(ids(&store, &outcome), ["r3"]);
    let score = Filter {
        min_score: Some(0.5),
        ..Filter::default()
    };
    assert_eq!(ids(&store, &score), ["r1"]);
    let label = Filter {
        label: Some("bad".into()),
        ..Filter::default()
    };
    assert_eq!(ids(&store, &label), ["r3"]);
    let limit = Filter {
        limit: Some(2),
        ..Filter::default()
    };
    assert_eq!(ids(&store, &limit), ["r1", "r2"]);
    let both = Filter {
        route: Some("openai".into()),
        model: Some("m1".into()),
        since_ms: Some(150),
        ..Filter::default()
    };
    assert_eq!(ids(&store, &both), ["r4"]);
    // `until` is exclusive: [200, 300) holds r2 only.
    let window = Filter {
        since_ms: Some(200),
        until_ms: Some(300),
        ..Filter::default()
    };
    assert_eq!(ids(&store, &window), ["r2"]);
    // Annotations: the beacons of the records the filter selects, in one query.
    store
        .insert_client_timings("r2", &json!({"first_token_painted_ms": 42}))
        .unwrap();
    let mut notes = store.annotations(&Filter::default()).unwrap();
    notes.sort_by(|a, b| a.id.cmp(&b.id));
    let brief: Vec<_> = notes
        .iter()
        .map(|a| {
            (
                a.id.as_str(),
                a.client_timings.is_some(),
                a.feedback_score,
                a.feedback_label.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        brief,
        [
            ("r1", false, Some(0.9), None),
            ("r2", true, None, None),
            ("r3", false, Some(0.2), Some("bad")),
        ]
    );
    let in_window: Vec<_> = store
        .annotations(&window)
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(in_window, ["r2"]);
    let none = Filter {
        limit: Some(0),
        ..Filter::default()
    };
    assert!(ids(&store, &none).is_empty());
}

#[test]
fn query_streams_across_pages() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path().join("capture.db")).unwrap();
    // Many records share a start time, so paging must break ties by insertion order.
    let batch: Vec<_> = (0..1000)
        .map(|i| record(&format!("id{i:04}"), 1, i64::from(i / 7), 600))
        .collect();
    assert_eq!(store.insert_batch(&batch).unwrap(), 1000);
    let got = ids(&store, &Filter::default());
    let want: Vec<_> = batch.iter().map(|r| r.id.clone()).collect();
    assert_eq!(got, want);
    let limited = Filter {
        limit: Some(300),
        since_ms: Some(10),
        ..Filter::default()
    };
    assert_eq!(ids(&store, &limited).len(), 300);
    // Newest first: the same records in reverse, across pages and ties; a limit keeps the newest.
    let newest = Filter {
        newest_first: true,
        ..Filter::default()
    };
    let reversed: Vec<_> = want.iter().rev().cloned().collect();
    assert_eq!(ids(&store, &newest), reversed);
    let newest_300 = Filter {
        limit: Some(300),
        ..newest
    };
    assert_eq!(ids(&store, &newest_300), reversed[..300]);
}

#[test]
fn timings_and_feedback_replace_per_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path().join("capture.db")).unwrap();
    store
        .insert_client_timings("a", &json!({"first_paint_ms": 12}))
        .unwrap();
    store
        .insert_client_timings("a", &json!({"first_paint_ms": 13}))
        .unwrap();
    assert_eq!(
        store.client_timings("a", None).unwrap(),
        Some(json!({"first_paint_ms": 13}))
    );
    assert_eq!(store.client_timings("b", None).unwrap(), None);
    store
        .insert_feedback("a", Some(1.0), Some("good".into()), None)
        .unwrap();
    let entries = [
        Entry::Record(Box::new(record("a", 1, 5, 800))),
        Entry::Feedback(Feedback {
            id: "a".into(),
            score: Some(0.5),
            label: None,
            comment: Some("meh".into()),
            owner: None,
        }),
    ];
    store.write_batch(&entries).unwrap();
    store.write_batch(&entries).unwrap();
    assert_eq!(
        store.feedback("a", None).unwrap(),
        Some(Feedback {
            id: "a".into(),
            score: Some(0.5),
            label: None,
            comment: Some("meh".into()),
            owner: None,
        })
    );
    assert_eq!(store.get("a").unwrap().len(), 1);
}

#[test]
fn reopen_keeps_data_and_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.db");
    SqliteStore::open(&path)
        .unwrap()
        .insert_batch(&[record("a", 1, 1, 800)])
        .unwrap();
    let store = SqliteStore::open(&path).unwrap();
    assert!(store.exists("a").unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::SchemaTooNew);
    assert!(err.to_string().contains("99"), "{err}");
}

#[test]
fn garbage_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.db");
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, garbage).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("capture.db") && text.contains("corrupt"),
        "{text}"
    );
}

#[test]
fn damaged_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.db");
    {
        let mut store = SqliteStore::open(&path).unwrap();
        let batch: Vec<_> = (0..200)
            .map(|i| record(&format!("id{i}"), 1, i, 1500))
            .collect();
        store.insert_batch(&batch).unwrap();
    }
    // Keep the header, overwrite the pages after it.
    let mut bytes = std::fs::read(&path).unwrap();
    for b in bytes.iter_mut().skip(100) {
        *b = 0xA5;
    }
    std::fs::write(&path, bytes).unwrap();
    let outcome = SqliteStore::open(&path).and_then(|s| {
        s.query(&Filter::default())?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(())
    });
    let err = outcome.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err:?}");
}

#[test]
fn missing_directory_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStore::open(dir.path().join("no/such/dir/capture.db")).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Io, "{err:?}");
    assert!(err.to_string().contains("no/such/dir"), "{err}");
}

#[test]
fn read_only_reader_sees_commits_while_the_writer_is_open() {
    use aloud::store::SqliteOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.db");
    let mut writer = SqliteStore::open(&path).unwrap();
    let options = SqliteOptions {
        read_only: true,
        ..SqliteOptions::default()
    };
    let reader = SqliteStore::open_with(&path, &options).unwrap();
    assert!(!reader.exists("a").unwrap());
    writer.insert_batch(&[record("a", 1, 1, 800)]).unwrap();
    assert!(reader.exists("a").unwrap());
    let mut reader = reader;
    let err = reader.insert_batch(&[record("b", 1, 1, 800)]).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Io, "{err:?}");
}

#[test]
fn feedback_and_timings_are_kept_per_owner_and_replaced_only_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path().join("capture.db")).unwrap();
    let owner = |t: &str| aloud::config::tokens::find(t, &[t.to_owned()]);
    let (a, b) = (owner("token-a-123456"), owner("token-b-123456"));
    let fb = |score: f64, owner| {
        Entry::Feedback(Feedback {
            id: "x".into(),
            score: Some(score),
            owner,
            ..Feedback::default()
        })
    };
    let timings = |v: i64, owner| {
        Entry::ClientTimings(aloud::store::ClientTimings {
            id: "x".into(),
            timings: json!({ "done_ms": v }),
            owner,
        })
    };
    let score =
        |store: &SqliteStore, o| store.feedback("x", o).unwrap().map(|f| (f.score, f.owner));
    let done = |store: &SqliteStore, o| store.client_timings("x", o).unwrap();
    store.write_batch(&[fb(1.0, a), timings(1, a)]).unwrap();
    // Another token (or none) on the same id: rows of their own, A's untouched.
    store
        .write_batch(&[fb(0.0, b), fb(0.25, None), timings(2, b)])
        .unwrap();
    assert_eq!(score(&store, a), Some((Some(1.0), a)));
    assert_eq!(score(&store, b), Some((Some(0.0), b)));
    assert_eq!(score(&store, None), Some((Some(0.25), None)));
    assert_eq!(done(&store, a), Some(json!({ "done_ms": 1 })));
    assert_eq!(done(&store, b), Some(json!({ "done_ms": 2 })));
    assert_eq!(done(&store, None), None);
    // The owner replaces its own.
    store.write_batch(&[fb(0.5, a), timings(3, a)]).unwrap();
    assert_eq!(score(&store, a), Some((Some(0.5), a)));
    assert_eq!(score(&store, b), Some((Some(0.0), b)));
    assert_eq!(done(&store, a), Some(json!({ "done_ms": 3 })));
    let mut r = record("x", 1, 1, 100);
    r.owner = a;
    store.insert_batch(&[r]).unwrap();
    assert!(store.exists_for("x", a).unwrap());
    assert!(!store.exists_for("x", b).unwrap());
    assert!(!store.exists_for("x", None).unwrap());
}
