//! The ETA seed at start reads the newest captures of its window, not the oldest.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

#[path = "support/records.rs"]
mod records;

use aloud::progress::eta::History;
use aloud::server::seed;
use std::time::{SystemTime, UNIX_EPOCH};

/// A busy store holds more ok exchanges in the seed's window than the seed reads: the ones it
/// reads are the latest (what the rings are meant to keep), so the estimate follows how the
/// route behaves now, not how it behaved days ago.
#[test]
fn the_seed_reads_the_newest_records_of_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("aloud.db");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let made = |name: &str, i: i64, at: i64, total: f64| {
        let mut r = records::record(&format!("{name}-{i:06}"), 1, at + i, 2000);
        r.api = "openai".into();
        r.request = None;
        r.timings.done_ms = Some(total);
        r.timings.first_token_ms = Some(total / 2.0);
        r
    };
    const N: i64 = 40;
    let mut all: Vec<_> = (0..N)
        .map(|i| made("old", i, now - 2 * 24 * 3_600_000, 9000.0))
        .collect();
    // Within the last hour too, older exchanges that took longer: still not the newest.
    all.extend((0..N).map(|i| made("hour", i, now - 40 * 60_000, 5000.0)));
    all.extend((0..N).map(|i| made("new", i, now - 10 * 60_000, 1000.0)));
    let mut store = aloud::store::SqliteStore::open(&db).unwrap();
    aloud::store::Store::insert_batch(&mut store, &all).unwrap();
    drop(store);

    let history = History::new();
    let database = aloud::config::Database::Sqlite(db);
    let added = seed::seed_at_most(&database, &history, now, N as usize).unwrap();
    assert_eq!(added, N as usize);
    let (key, _, _) = seed::from_record(&all[0]).unwrap();
    let e = history.estimate(&key, 0.0, false).unwrap();
    assert_eq!(
        e.remaining_ms, 1000.0,
        "the seed read the window's oldest records, not its newest"
    );
}
