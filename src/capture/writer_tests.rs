//! The writer's bookkeeping, seen from inside: ids settled by the idle-priority writer are
//! applied by the overflow thread without any request or beacon asking.

use super::*;
use crate::capture::{CaptureLevel, Outcome, Timings};
use crate::store::SqliteStore;
use std::time::{Duration, Instant};

fn record(id: &str) -> CaptureRecord {
    CaptureRecord {
        id: id.into(),
        attempt: 1,
        owner: None,
        started_at_ms: 0,
        route: "r".into(),
        api: "openai".into(),
        model: None,
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        client_status: Some(200),
        upstream_status: Some(200),
        streamed: false,
        tier: "off".into(),
        outcome: Outcome::Ok,
        partial: false,
        capture: CaptureLevel::Metadata,
        timings: Timings::default(),
        usage: None,
        upstream_timings: None,
        eta: None,
        request: None,
        response: None,
        deltas: Vec::new(),
        error: None,
        truncated: false,
        disconnect: None,
    }
}

#[tokio::test]
async fn settled_ids_are_applied_without_anyone_asking() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("capture.db");
    let spill = dir.path().join("spill");
    let writer = CaptureWriter::start(WriterConfig::with_spill_dir(&spill), move || {
        SqliteStore::open(&db)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    writer.submit(record("settle-0001"));
    writer.flush().await;
    assert_eq!(writer.stats().written, 1);
    // Stored and settled by the writer; the overflow thread applies it within its period.
    let until = Instant::now() + Duration::from_secs(10);
    let pending = &writer.handle.core.pending;
    while pending.lock().contains(pending.print("settle-0001")) {
        assert!(Instant::now() < until, "the settled id was never applied");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    writer.close().await;
}
