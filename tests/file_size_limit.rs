//! The real binary under a file-size limit (`ulimit -f`): when the capture database hits it,
//! aloud logs a store error and keeps proxying, instead of dying of SIGXFSZ without a word.
#![cfg(unix)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use http::Request;
use http_body_util::BodyExt;
use std::process::Stdio;
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_file_size_limit_is_a_store_error_not_a_silent_death() {
    // Each answer is 16 KiB, captured whole: a few of them outgrow the limit below.
    let answer = format!("{{\"text\":\"{}\"}}", "x".repeat(16 << 10));
    let up = Upstream::start(move |req: Request<hyper::body::Incoming>| {
        let answer = answer.clone();
        async move {
            let _ = req.into_body().collect().await;
            response(200, &[("content-type", "application/json")], full(answer))
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n\
             [capture]\ndatabase = \"{db}\"\nspill_dir = \"{spill}\"\nflush_interval = \"20ms\"\n\
             [[routes]]\nname = \"up\"\nprefix = \"/up\"\nupstream = \"http://{up}\"\napi = \"openai\"\nprogress = \"off\"\n",
            db = dir.path().join("aloud.db").display(),
            spill = dir.path().join("spill").display(),
            up = up.addr,
        ),
    )
    .unwrap();
    // `ulimit -f` counts 512-byte blocks in dash and 1024-byte ones in bash: 256 KiB or 512.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -f 512 && exec \"$0\" --log-json serve --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_aloud"))
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (lines_tx, mut lines) = mpsc::unbounded_channel::<String>();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    #[expect(
        clippy::disallowed_methods,
        reason = "reads the child's log until it ends"
    )]
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            let _ = lines_tx.send(line);
        }
    });
    let mut log = Vec::new();
    loop {
        let line = lines.recv().await.expect("aloud ended before listening");
        let listening = line.contains("aloud listening");
        log.push(line);
        if listening {
            break;
        }
    }
    let url = format!("http://127.0.0.1:{port}/up/v1/chat/completions");
    let body = format!("{{\"prompt\":\"{}\"}}", "p".repeat(4 << 10));
    let mut store_failed = false;
    for _ in 0..200 {
        let r = post(&url, &[], body.clone()).await;
        assert_eq!(r.status(), 200, "{}", log.join("\n"));
        body_bytes(r).await;
        while let Ok(line) = lines.try_recv() {
            store_failed |= line.contains("capture store failed");
            log.push(line);
        }
        if store_failed {
            break;
        }
    }
    // Past the traffic, the error may still be on its way: wait for it (or for aloud's end).
    while !store_failed {
        let Some(line) = lines.recv().await else {
            panic!(
                "aloud ended without logging a store error:\n{}",
                log.join("\n")
            );
        };
        store_failed = line.contains("capture store failed");
        log.push(line);
    }
    // Still alive, and still proxying.
    assert!(child.try_wait().unwrap().is_none(), "{}", log.join("\n"));
    for _ in 0..3 {
        let r = post(&url, &[], "{}").await;
        assert_eq!(r.status(), 200);
        body_bytes(r).await;
    }
    assert!(child.try_wait().unwrap().is_none(), "{}", log.join("\n"));
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}
