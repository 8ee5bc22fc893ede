//! Postgres in operation, against a real Postgres (tests/support/postgres.rs): stopped
//! mid-traffic, a spill replayed twice, the real binary serving into it and reading it back
//! (`aloud stats` / `aloud export --database postgres://...`), and TLS per `sslmode`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

#[path = "support/records.rs"]
mod records;
mod support;

use aloud::capture::{CaptureWriter, WriterConfig};
use aloud::config::PostgresUrl;
use aloud::store::PostgresStore;
use aloud::store::postgres::Access;
use records::record;
use std::time::Duration;
use support::postgres::{self, Postgres};

fn pg_url(url: &str) -> PostgresUrl {
    PostgresUrl::parse(&format!("{url}?sslmode=disable")).unwrap()
}

fn database_name(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

fn count_ids(pg: &Postgres, raw: &str) -> (String, String) {
    let db = database_name(raw);
    (
        pg.psql(&db, "SELECT count(*) FROM captures"),
        pg.psql(&db, "SELECT count(DISTINCT (id, attempt)) FROM captures"),
    )
}

fn pg_writer(url: &PostgresUrl, spill: &std::path::Path) -> CaptureWriter {
    let config = WriterConfig {
        flush_interval: Duration::from_millis(20),
        batch_records: 64,
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        ..WriterConfig::with_spill_dir(spill)
    };
    let url = url.clone();
    CaptureWriter::start(config, move || PostgresStore::open(&url, Access::ReadWrite)).unwrap()
}

/// Postgres stops mid-traffic: what comes meanwhile spills; once it is back, the spill is
/// replayed and every id is stored exactly once.
#[tokio::test]
async fn postgres_stopped_mid_traffic_spills_then_replays_each_id_once() {
    let Some(pg) = postgres::start("postgres_stopped_mid_traffic_spills_then_replays_each_id_once")
    else {
        return;
    };
    let raw = pg.fresh_database();
    let url = pg_url(&raw);
    let dir = tempfile::tempdir().unwrap();
    let writer = pg_writer(&url, &dir.path().join("spill"));
    let submit = |from: u32, to: u32| {
        for i in from..to {
            writer.submit(record(&format!("pg-outage-{i:05}"), 1, i64::from(i), 2000));
        }
    };
    submit(0, 500);
    writer.flush().await;
    assert_eq!(count_ids(&pg, &raw).0, "500");
    pg.stop();
    submit(500, 1500);
    writer.flush().await;
    let stats = writer.stats();
    assert!(
        stats.spilled >= 1000,
        "records spilled while Postgres was down: {stats:?}"
    );
    pg.start();
    submit(1500, 2000);
    writer.flush().await;
    let stats = writer.stats();
    assert_eq!(stats.spill_bytes, 0, "spill replayed: {stats:?}");
    assert!(stats.replayed >= 1000, "{stats:?}");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    writer.clone().close().await;
    assert_eq!(count_ids(&pg, &raw), ("2000".into(), "2000".into()));
}

/// A spill replayed, then the same spill (a copy, as after a crash before its deletion)
/// replayed again: nothing is stored twice.
#[tokio::test]
async fn a_spill_replayed_twice_never_duplicates() {
    let Some(pg) = postgres::start("a_spill_replayed_twice_never_duplicates") else {
        return;
    };
    let raw = pg.fresh_database();
    let url = pg_url(&raw);
    // The schema exists, then Postgres goes away before anything is written.
    let open = url.clone();
    tokio::task::spawn_blocking(move || {
        drop(PostgresStore::open(&open, Access::ReadWrite).unwrap())
    })
    .await
    .unwrap();
    pg.stop();
    let dir = tempfile::tempdir().unwrap();
    let (spill, copy) = (dir.path().join("spill"), dir.path().join("copy"));
    let writer = pg_writer(&url, &spill);
    for i in 0..400 {
        writer.submit(record(&format!("pg-replay-{i:05}"), 1, i64::from(i), 2000));
    }
    writer.clone().close().await;
    assert!(writer.stats().spilled >= 400, "{:?}", writer.stats());
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(&spill).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
    }
    pg.start();
    for dir in [&spill, &copy] {
        let writer = pg_writer(&url, dir);
        writer.flush().await;
        assert!(writer.stats().replayed >= 400, "{:?}", writer.stats());
        writer.clone().close().await;
    }
    assert_eq!(count_ids(&pg, &raw), ("400".into(), "400".into()));
}
