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
use std::process::{Command, Stdio};
use std::time::Duration;
use support::scripted::Scripted;
use support::wire::{Conn, End};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn shutdown_past_the_grace_cuts_streams_and_records_and_logs_shutdown() {
    let up = Scripted::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let db = dir.path().join("aloud.db");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace = \"300ms\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n\
             [capture]\ndatabase = \"{db}\"\nspill_dir = \"{spill}\"\nflush_interval = \"50ms\"\n\
             [[routes]]\nname = \"up\"\nprefix = \"/up\"\nupstream = \"http://{up}\"\napi = \"openai\"\n",
            db = db.display(),
            spill = dir.path().join("spill").display(),
            up = up.addr(),
        ),
    )
    .unwrap();
    let log_path = dir.path().join("aloud.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_aloud"))
        .args(["--log-json", "serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Ready when it accepts (bounded).
    let mut ready = false;
    for _ in 0..2000 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            ready = true;
            break;
        }
        tokio::task::yield_now().await;
        std::thread::yield_now();
    }
    assert!(ready, "aloud did not start");

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
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
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
    let status = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .expect("aloud did not exit after its grace period")
    .unwrap()
    .unwrap();
    assert!(status.success(), "aloud exited with {status}");

    let store = SqliteStore::open(&db).unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    for tier in tiers {
        let rid = id(tier);
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
