//! Capture write throughput into SQLite or Postgres: the store alone (batches of 256 in one
//! transaction) and the whole writer (submit → queue → batching thread → store, then `flush`).
//!
//! `cargo run --release --example writer_bench -- --records 100000 --size 2048`
//! (`--database postgres://user:password@127.0.0.1:5432/db` writes into Postgres instead of a
//! temporary SQLite file; `benches/pg_writer.sh` starts a local one and runs this;
//! `--size` takes a comma-separated list, e.g. `--size 2048,30720`; `--queue-mib` sets the
//! writer's queue bound, default 64: a burst larger than the queue overflows to the spill, and
//! the figure then includes the replay).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly on the first surprise"
)]

use aloud::capture::{
    CaptureLevel, CaptureRecord, CaptureWriter, Delta, DeltaKind, Outcome, Reassembled, Timings,
    WriterConfig,
};
use aloud::config::Database;
use aloud::store::{Store, open_writer};
use serde_json::json;
use std::time::{Duration, Instant};

/// A record of about `size` bytes; `tag` keeps ids unique across phases and runs (a Postgres
/// database outlives the run, and a repeated id would be skipped, not written).
fn record(i: usize, size: usize, tag: &str) -> CaptureRecord {
    // About a third in the request, a third in the answer; deltas are offsets into it.
    let third = size.saturating_sub(900) / 3;
    CaptureRecord {
        id: format!("{tag}-{i:012}-{:x}", i.wrapping_mul(0x9e37_79b9)),
        attempt: 1,
        owner: None,
        started_at_ms: 1_760_000_000_000 + i as i64,
        route: ["openai", "anthropic", "local"][i % 3].to_string(),
        api: "openai_chat".to_string(),
        model: Some(["gpt-a", "gpt-b"][i % 2].to_string()),
        method: "POST".to_string(),
        path: "/v1/chat/completions".to_string(),
        client_status: Some(200),
        upstream_status: Some(200),
        streamed: true,
        tier: "events".to_string(),
        outcome: Outcome::Ok,
        partial: false,
        capture: CaptureLevel::Full,
        timings: Timings {
            first_feedback_ms: Some(3.0),
            first_token_ms: Some(800.0 + (i % 100) as f64),
            done_ms: Some(2500.0),
            longest_silence_ms: Some(400.0),
            overhead_ms: Some(0.8),
            upstream_ms: Some(350.0),
            ..Timings::default()
        },
        usage: None,
        upstream_timings: None,
        eta: None,
        request: Some(
            json!({
                "model": "gpt-a",
                "stream": true,
                "messages": [{"role": "user", "content": "q".repeat(third)}],
            })
            .into(),
        ),
        response: Some(Reassembled {
            text: "a".repeat(third),
            reasoning: String::new(),
            tool_calls: vec![],
            finish_reason: Some("stop".to_string()),
            body: None,
        }),
        deltas: (0..third / 48)
            .map(|k| Delta::span(800.0 + k as f64, DeltaKind::Answer, (k + 1) * 48))
            .collect(),
        error: None,
        truncated: false,
        disconnect: None,
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let records: usize = arg("--records").map_or(100_000, |v| v.parse().unwrap());
    let queue_mib: usize = arg("--queue-mib").map_or(64, |v| v.parse().unwrap());
    let sizes: Vec<usize> = arg("--size")
        .unwrap_or_else(|| "2048,30720".to_string())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let postgres = arg("--database").map(|url| Database::parse(&url).unwrap());
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    println!(
        "database: {}",
        postgres
            .as_ref()
            .map_or_else(|| "SQLite (temporary file)".to_owned(), |d| d.to_string())
    );
    for size in sizes {
        let tag = format!("{run}-{size}");
        let batch: Vec<CaptureRecord> = (0..records)
            .map(|i| record(i, size, &format!("{tag}s")))
            .collect();
        let json_bytes = serde_json::to_string(&batch[0]).unwrap().len();
        println!("records: {records}, target size {size} B, serialized {json_bytes} B");
        let dir = tempfile::tempdir().unwrap();
        let database = |name: &str| {
            postgres
                .clone()
                .unwrap_or_else(|| Database::Sqlite(dir.path().join(name)))
        };

        // The store alone (a blocking client: off the runtime).
        let store_db = database("store.db");
        let elapsed = tokio::task::spawn_blocking(move || {
            let mut store = open_writer(&store_db).unwrap();
            let started = Instant::now();
            for chunk in batch.chunks(256) {
                store.insert_batch(chunk).unwrap();
            }
            started.elapsed()
        })
        .await
        .unwrap();
        println!(
            "  store.insert_batch(256): {:>9.0} records/s  {:>7.1} MB/s  ({:.2?})",
            rate(records, elapsed),
            rate(records * json_bytes, elapsed) / 1e6,
            elapsed
        );

        // The whole writer.
        let batch: Vec<CaptureRecord> = (0..records)
            .map(|i| record(i, size, &format!("{tag}w")))
            .collect();
        let db = database("writer.db");
        let writer = CaptureWriter::start(
            WriterConfig {
                queue_bytes: queue_mib << 20,
                ..WriterConfig::with_spill_dir(dir.path().join("spill"))
            },
            move || open_writer(&db),
        )
        .unwrap();
        let started = Instant::now();
        let mut submits = Vec::with_capacity(records);
        for record in batch {
            let before = Instant::now();
            writer.submit(record);
            submits.push(before.elapsed());
        }
        submits.sort();
        let percentile = |p: f64| submits[((submits.len() - 1) as f64 * p) as usize];
        let submitted = started.elapsed();
        writer.flush().await;
        let elapsed = started.elapsed();
        let stats = writer.stats();
        println!(
            "  writer submit→flush:     {:>9.0} records/s  {:>7.1} MB/s  ({:.2?}; submit loop {:.2?}, \
             peak queue {:.1} MiB)",
            rate(records, elapsed),
            rate(records * json_bytes, elapsed) / 1e6,
            elapsed,
            submitted,
            stats.queued_bytes_peak as f64 / (1 << 20) as f64,
        );
        println!(
            "  submit latency p50 {:.1?} p99 {:.1?} p99.9 {:.1?} max {:.1?}",
            percentile(0.5),
            percentile(0.99),
            percentile(0.999),
            percentile(1.0)
        );
        println!(
            "  written {} spilled {} dropped {} replayed {}",
            stats.written, stats.spilled, stats.dropped, stats.replayed
        );
        writer.close().await;
    }
}
