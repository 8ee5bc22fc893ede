//! Shutdown past the grace period (issue 7, Deliver 2): the real binary, a stream in flight in
//! the off and comments tiers, SIGTERM. The client sees a cut transfer, the capture store holds
//! one `shutdown` record per exchange, and the access log says shutdown, not client_gone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use aloud::capture::Outcome;
use aloud::store::{SqliteStore, Store};
use std::time::Duration;
use support::binary::Binary;
use support::scripted::Scripted;
use support::wire::{Conn, End};

#[tokio::test]
async fn shutdown_past_the_grace_cuts_streams_and_records_and_logs_shutdown() {
    let up = Scripted::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("aloud.db");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nshutdown_grace = \"300ms\"\n\
             [capture]\ndatabase = \"{db}\"\nspill_dir = \"{spill}\"\nflush_interval = \"50ms\"\n\
             [[routes]]\nname = \"up\"\nprefix = \"/up\"\nupstream = \"http://{up}\"\napi = \"openai\"\n",
            db = db.display(),
            spill = dir.path().join("spill").display(),
            up = up.addr(),
        ),
    )
    .unwrap();
    // On port 0, ready once it logs its address (a port picked here and bound by the child later
    // could be taken in between, and a bounded spin on connect failed on a slow start).
    let mut aloud = Binary::start(&config, &[]).await;
    let addr = aloud.addr;

    let tiers = ["off", "comments"];
    let id = |tier: &str| format!("shutdown-cut-{tier}-0001");
    let mut conns = Vec::new();
    for tier in tiers {
        let rid = id(tier);
        let mut conn = Conn::chat(
            addr,
            "/up/v1/chat/completions",
            tier,
            &[("Aloud-Request-Id", &rid), ("x-mock", "stall-after-event")],
        )
        .await;
        conn.until_contains("\"Hel\"").await;
        conns.push((tier, conn));
    }
    aloud.signal("TERM");
    // The upstream never ends these streams: only the grace period running out does.
    for (tier, conn) in conns {
        let reply = conn.finish().await;
        assert_eq!(
            reply.end,
            End::Cut,
            "{tier}: the client must see a cut transfer at shutdown:\n{}",
            reply.text()
        );
    }
    let status = aloud.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "aloud exited with {status}");

    let store = SqliteStore::open(&db).unwrap();
    for tier in tiers {
        let rid = id(tier);
        // Its access line may still be in the pipe when the process has exited: wait for it.
        aloud
            .wait_json(|v| {
                let line = v.to_string();
                line.contains(&rid) && line.contains("shutdown")
            })
            .await;
        let log = aloud.log().join("\n");
        let rows = store.get(&rid).unwrap();
        assert_eq!(rows.len(), 1, "{tier}: one record, got {rows:#?}");
        assert_eq!(
            rows[0].outcome,
            Outcome::Shutdown,
            "{tier}: {:?}",
            rows[0].error
        );
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(&rid)).collect();
        assert!(!lines.is_empty(), "{tier}: no log line names {rid}:\n{log}");
        assert!(
            lines.iter().all(|l| !l.contains("client_gone")),
            "{tier}: the access log blames the client for aloud's shutdown:\n{}",
            lines.join("\n")
        );
        assert!(
            lines.iter().any(|l| l.contains("shutdown")),
            "{tier}: no log line for {rid} says shutdown:\n{}",
            lines.join("\n")
        );
    }
}
