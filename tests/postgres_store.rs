//! The Postgres capture store against a real Postgres (tests/support/postgres.rs): the same
//! records as SQLite for the same traffic, migrations by replicas starting together, idempotent
//! batches, and the writer's spill and replay when Postgres stops mid-traffic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

#[path = "support/records.rs"]
mod records;
mod support;

use aloud::capture::beacon::{ClientTimings, Feedback};
use aloud::capture::sink::WriterSink;
use aloud::capture::stats::{Dimension, StatsQuery, report_from_store};
use aloud::capture::{CaptureRecord, CaptureSink, CaptureWriter, WriterConfig};
use aloud::config::{MapEnv, Owner, PostgresUrl};
use aloud::store::postgres::Access;
use aloud::store::{Entry, Filter, PostgresStore, SqliteStore, Store};
use records::record;
use std::sync::{Arc, Barrier};
use std::time::Duration;
use support::postgres;
use support::{Aloud, body_bytes, post};

fn pg_url(url: &str) -> PostgresUrl {
    PostgresUrl::parse(&format!("{url}?sslmode=disable")).unwrap()
}

fn database_name(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

/// The test support itself: a fresh database answers, and a stopped server refuses until it is
/// started again.
#[test]
fn support_starts_stops_and_starts_again() {
    let Some(pg) = postgres::start("support_starts_stops_and_starts_again") else {
        return;
    };
    let url = pg.fresh_database();
    let db = database_name(&url);
    assert_eq!(pg.psql(&db, "SELECT 1 + 1"), "2");
    pg.stop();
    let refused = std::net::TcpStream::connect(("127.0.0.1", pg.port()));
    assert!(refused.is_err(), "Postgres still listening after stop");
    pg.start();
    assert_eq!(pg.psql(&db, "SELECT 2 + 2"), "4");
}

/// Every record and beacon goes to a SQLite writer and a Postgres writer alike; "known" asks
/// Postgres alone, so beacons are accepted only for what the Postgres store holds.
struct Tee {
    sqlite: WriterSink,
    postgres: WriterSink,
}

impl CaptureSink for Tee {
    fn submit(&self, record: CaptureRecord) {
        self.sqlite.submit(record.clone());
        self.postgres.submit(record);
    }
    fn known(&self, id: &str, owner: Option<Owner>) -> bool {
        self.postgres.known(id, owner)
    }
    fn timings(&self, id: &str, owner: Option<Owner>, timings: ClientTimings) {
        self.sqlite.timings(id, owner, timings.clone());
        self.postgres.timings(id, owner, timings);
    }
    fn feedback(&self, id: &str, owner: Option<Owner>, feedback: Feedback) {
        self.sqlite.feedback(id, owner, feedback.clone());
        self.postgres.feedback(id, owner, feedback);
    }
}

const TOKEN_A: &str = "pg-test-token-aaaaaaaaaaaaaaaa";
const TOKEN_B: &str = "pg-test-token-bbbbbbbbbbbbbbbb";

fn config() -> String {
    "[server]\nclient_tokens_env = \"T\"\n\
     [[routes]]\nname = \"oai\"\nprefix = \"/oai\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\n\
     [[routes]]\nname = \"ant\"\nprefix = \"/ant\"\nupstream = \"builtin:simulator\"\napi = \"anthropic\"\n\
     [[routes]]\nname = \"down\"\nprefix = \"/down\"\nupstream = \"http://127.0.0.1:1\"\napi = \"openai\"\nconnect_timeout = \"1s\"\n"
        .to_owned()
}

async fn call(aloud: &Aloud, id: &str, path: &str, body: &str) -> u16 {
    let auth = format!("Bearer {TOKEN_A}");
    let h = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
        ("aloud-request-id", id),
        ("x-sim-seed", "7"),
        ("x-sim-think-ms", "50"),
        ("x-sim-tokens", "4"),
        ("x-sim-token-ms", "2"),
    ];
    let r = post(&aloud.url(path), &h, body.to_owned()).await;
    let status = r.status().as_u16();
    body_bytes(r).await;
    status
}

async fn beacon(aloud: &Aloud, id: &str, kind: &str, token: &str, body: &str) -> u16 {
    let auth = format!("Bearer {token}");
    let url = aloud.url(&format!("/aloud/v1/requests/{id}/{kind}"));
    let r = post(&url, &[("authorization", auth.as_str())], body.to_owned()).await;
    r.status().as_u16()
}

#[tokio::test]
async fn the_same_traffic_stores_the_same_records_as_sqlite() {
    let Some(pg) = postgres::shared("the_same_traffic_stores_the_same_records_as_sqlite") else {
        return;
    };
    let url = pg_url(&pg.fresh_database());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("capture.db");
    let writer = |name: &str| WriterConfig {
        flush_interval: Duration::from_millis(20),
        ..WriterConfig::with_spill_dir(dir.path().join(name))
    };
    let open_db = db.clone();
    let sqlite = CaptureWriter::start(writer("s"), move || SqliteStore::open(&open_db)).unwrap();
    let open_url = url.clone();
    let pgw = CaptureWriter::start(writer("p"), move || {
        PostgresStore::open(&open_url, Access::ReadWrite)
    })
    .unwrap();
    let tee = Arc::new(Tee {
        sqlite: WriterSink::new(sqlite.clone(), db.clone()),
        postgres: WriterSink::new(pgw.clone(), aloud::config::Database::Postgres(url.clone())),
    });
    let env = MapEnv::default().with("T", &format!("{TOKEN_A},{TOKEN_B}"));
    let aloud = Aloud::start_with_sink(&config(), env, Some(tee as Arc<dyn CaptureSink>)).await;

    let chat = |stream: bool| {
        format!(
            r#"{{"model":"gpt-sim","stream":{stream},"messages":[{{"role":"user","content":"hi \u0000 there"}}]}}"#
        )
    };
    let ant = r#"{"model":"claude-sim","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(
        call(
            &aloud,
            "pg-same-streamed-0001",
            "/oai/v1/chat/completions",
            &chat(true)
        )
        .await,
        200
    );
    assert_eq!(
        call(
            &aloud,
            "pg-same-whole-000001",
            "/oai/v1/chat/completions",
            &chat(false)
        )
        .await,
        200
    );
    assert_eq!(
        call(&aloud, "pg-same-anthropic-01", "/ant/v1/messages", ant).await,
        200
    );
    assert_eq!(
        call(
            &aloud,
            "pg-same-refused-0001",
            "/down/v1/chat/completions",
            &chat(true)
        )
        .await,
        502
    );
    // A retry with the same id is attempt 2.
    assert_eq!(
        call(
            &aloud,
            "pg-same-whole-000001",
            "/oai/v1/chat/completions",
            &chat(false)
        )
        .await,
        200
    );

    // Committed to Postgres: beacons are now checked against the Postgres store itself.
    sqlite.flush().await;
    pgw.flush().await;
    let id = "pg-same-streamed-0001";
    assert_eq!(
        beacon(
            &aloud,
            id,
            "timings",
            TOKEN_A,
            r#"{"first_token_painted_ms": 12.5, "done_ms": 40}"#
        )
        .await,
        204
    );
    assert_eq!(
        beacon(
            &aloud,
            id,
            "feedback",
            TOKEN_A,
            r#"{"score": 0, "label": "first"}"#
        )
        .await,
        204
    );
    assert_eq!(
        beacon(
            &aloud,
            id,
            "feedback",
            TOKEN_A,
            r#"{"score": 1, "label": "bad\u0000label", "comment": "better"}"#
        )
        .await,
        204
    );
    assert_eq!(
        beacon(&aloud, id, "feedback", TOKEN_B, r#"{"score": 5}"#).await,
        404,
        "another owner's id is unknown"
    );
    assert_eq!(
        beacon(&aloud, "pg-never-seen-000001", "timings", TOKEN_A, "{}").await,
        404
    );
    aloud.stop().await;
    sqlite.clone().close().await;
    pgw.clone().close().await;

    // The `postgres` client blocks: read where blocking is allowed.
    tokio::task::spawn_blocking(move || {
        let lite = SqliteStore::open(&db).unwrap();
        let pgs = PostgresStore::open(&url, Access::ReadOnly).unwrap();
        let all = |s: &dyn Store, f: &Filter| -> Vec<CaptureRecord> {
            s.query(f).unwrap().map(|r| r.unwrap()).collect()
        };
        let expected = all(&lite, &Filter::default());
        assert_eq!(expected.len(), 5, "{expected:#?}");
        let newest = Filter {
            newest_first: true,
            ..Filter::default()
        };
        let reversed: Vec<_> = expected.iter().rev().cloned().collect();
        assert_eq!(all(&lite, &newest), reversed);
        assert_eq!(all(&pgs, &Filter::default()), expected);
        for filter in [
            Filter {
                route: Some("oai".into()),
                ..Filter::default()
            },
            Filter {
                outcome: Some("proxy_error".into()),
                ..Filter::default()
            },
            Filter {
                min_score: Some(1.0),
                ..Filter::default()
            },
            Filter {
                limit: Some(2),
                ..Filter::default()
            },
            Filter {
                newest_first: true,
                ..Filter::default()
            },
            Filter {
                limit: Some(3),
                newest_first: true,
                ..Filter::default()
            },
            Filter {
                since_ms: Some(expected[2].started_at_ms),
                model: Some("gpt-sim".into()),
                ..Filter::default()
            },
            Filter {
                since_ms: Some(expected[1].started_at_ms),
                until_ms: Some(expected[3].started_at_ms + 1),
                ..Filter::default()
            },
        ] {
            let want = all(&lite, &filter);
            assert!(!want.is_empty(), "{filter:?} selects nothing");
            assert_eq!(all(&pgs, &filter), want, "{filter:?}");
        }
        // A stats report (window pushed down, beacons joined by `annotations`) is the same
        // from either store, and it saw the feedback and the client timings.
        let query = StatsQuery {
            since_ms: Some(expected[0].started_at_ms),
            until_ms: Some(expected[4].started_at_ms + 1),
            group_by: vec![Dimension::Route, Dimension::Outcome],
            all_outcomes: true,
            ..StatsQuery::default()
        };
        let report = report_from_store(&lite, &query).unwrap();
        assert!(report.rows.iter().any(|r| r.feedback.n > 0), "{report:#?}");
        assert!(
            report
                .rows
                .iter()
                .any(|r| r.metrics.client_first_token_ms.p50 == Some(12.5)),
            "{report:#?}"
        );
        assert_eq!(report_from_store(&pgs, &query).unwrap(), report);
        for r in &expected {
            assert_eq!(pgs.get(&r.id).unwrap(), lite.get(&r.id).unwrap());
            assert!(pgs.exists_for(&r.id, r.owner).unwrap());
            assert!(!pgs.exists_for(&r.id, None).unwrap());
            assert_eq!(
                pgs.client_timings(&r.id, r.owner).unwrap(),
                lite.client_timings(&r.id, r.owner).unwrap()
            );
            let (mut got, want) = (
                pgs.feedback(&r.id, r.owner).unwrap(),
                lite.feedback(&r.id, r.owner).unwrap(),
            );
            // Postgres text cannot hold NUL: it is stored as U+FFFD.
            if let Some(f) = got.as_mut() {
                f.label = f.label.take().map(|l| l.replace('\u{FFFD}', "\0"));
            }
            assert_eq!(got, want);
        }
        let a = aloud::config::tokens::find(TOKEN_A, &[TOKEN_A.to_owned()]);
        let feedback = pgs.feedback(id, a).unwrap().unwrap();
        assert_eq!(
            (feedback.score, feedback.comment.as_deref()),
            (Some(1.0), Some("better"))
        );
        assert!(pgs.client_timings(id, a).unwrap().is_some());
        assert!(pgs.feedback(id, None).unwrap().is_none());
        assert!(!pgs.exists("pg-never-seen-000001").unwrap());
    })
    .await
    .unwrap();
}

/// Replicas starting together: every one migrates (or finds it done) without an error, and
/// there is one schema.
#[test]
fn writers_migrating_together_make_one_schema() {
    let Some(pg) = postgres::shared("writers_migrating_together_make_one_schema") else {
        return;
    };
    let raw = pg.fresh_database();
    let url = pg_url(&raw);
    let n = 6;
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (url, barrier) = (url.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                PostgresStore::open(&url, Access::ReadWrite).map(|_| ())
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let db = database_name(&raw);
    assert_eq!(
        pg.psql(
            &db,
            "SELECT count(*) || ' ' || max(version) FROM aloud_schema"
        ),
        format!("1 {}", aloud::store::postgres::schema::VERSION)
    );
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM pg_tables WHERE tablename IN ('captures', 'client_timings', 'feedback')"),
        "3"
    );
}

/// Migration 2 on a version-1 database: each beacon keeps its owner (`''` for none), and a
/// second owner's beacon on the same id gets a row of its own.
#[test]
fn beacons_move_to_rows_per_owner() {
    let Some(pg) = postgres::shared("beacons_move_to_rows_per_owner") else {
        return;
    };
    let raw = pg.fresh_database();
    let db = database_name(&raw);
    let v1 = aloud::store::postgres::schema::MIGRATIONS[0];
    pg.psql(&db, v1);
    pg.psql(
        &db,
        "CREATE TABLE aloud_schema (version BIGINT NOT NULL);
         INSERT INTO aloud_schema VALUES (1);
         INSERT INTO feedback (id, score, label, owner)
             VALUES ('mine', 1, 'good', '00112233445566778899aabbccddeeff'),
                    ('anon', 0, 'bad', NULL);
         INSERT INTO client_timings (id, timings, owner) VALUES ('anon', '{}', NULL);",
    );
    let mut store = PostgresStore::open(&pg_url(&raw), Access::ReadWrite).unwrap();
    let a = aloud::config::Owner::parse("00112233445566778899aabbccddeeff");
    let label = |s: &PostgresStore, id, o| s.feedback(id, o).unwrap().and_then(|f| f.label);
    assert_eq!(label(&store, "mine", a).as_deref(), Some("good"));
    assert_eq!(label(&store, "anon", None).as_deref(), Some("bad"));
    assert_eq!(label(&store, "mine", None), None);
    assert!(store.client_timings("anon", None).unwrap().is_some());
    store
        .insert_feedback("mine", Some(0.0), Some("other".into()), None)
        .unwrap();
    assert_eq!(label(&store, "mine", a).as_deref(), Some("good"));
    assert_eq!(label(&store, "mine", None).as_deref(), Some("other"));
    assert_eq!(
        pg.psql(&db, "SELECT max(version) FROM aloud_schema"),
        aloud::store::postgres::schema::VERSION.to_string()
    );
}

/// A batch written twice (a replayed spill, a retry after a crash) stores nothing new.
#[test]
fn a_batch_written_twice_is_stored_once() {
    let Some(pg) = postgres::shared("a_batch_written_twice_is_stored_once") else {
        return;
    };
    let raw = pg.fresh_database();
    let mut store = PostgresStore::open(&pg_url(&raw), Access::ReadWrite).unwrap();
    let mut entries: Vec<Entry> = (0..300)
        .map(|i| {
            Entry::Record(Box::new(record(
                &format!("pg-twice-{i:05}"),
                1 + i % 2,
                1_000 + i64::from(i),
                2000,
            )))
        })
        .collect();
    entries.push(entries[3].clone());
    assert_eq!(store.write_batch(&entries).unwrap(), 300);
    assert_eq!(store.write_batch(&entries).unwrap(), 0);
    assert_eq!(
        store
            .insert_batch(&[record("pg-twice-00001", 2, 5, 900)])
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .insert_batch(&[record("pg-twice-00001", 3, 5, 900)])
            .unwrap(),
        1
    );
    let db = database_name(&raw);
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM captures"), "301");
}

/// Reading newest first pages backwards across ties of start time, as SQLite does, and a limit
/// keeps the newest.
#[test]
fn newest_first_pages_across_ties() {
    let Some(pg) = postgres::shared("newest_first_pages_across_ties") else {
        return;
    };
    let raw = pg.fresh_database();
    let mut store = PostgresStore::open(&pg_url(&raw), Access::ReadWrite).unwrap();
    let batch: Vec<_> = (0..600)
        .map(|i| record(&format!("pg-tie-{i:04}"), 1, i64::from(i / 7), 600))
        .collect();
    assert_eq!(store.insert_batch(&batch).unwrap(), 600);
    let ids =
        |f: &Filter| -> Vec<String> { store.query(f).unwrap().map(|r| r.unwrap().id).collect() };
    let oldest = ids(&Filter::default());
    let want: Vec<_> = batch.iter().map(|r| r.id.clone()).collect();
    assert_eq!(oldest, want);
    let reversed: Vec<_> = want.iter().rev().cloned().collect();
    let newest = Filter {
        newest_first: true,
        ..Filter::default()
    };
    assert_eq!(ids(&newest), reversed);
    let newest_300 = Filter {
        limit: Some(300),
        since_ms: Some(10),
        ..newest
    };
    assert_eq!(ids(&newest_300), reversed[..300]);
}
