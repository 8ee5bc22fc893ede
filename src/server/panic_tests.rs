//! What a panic in the first thread's accept loop stops: every connection is cut (a stream
//! mid-answer ends without its last chunk), the cut exchange is recorded once as `shutdown`,
//! the capture writer closes, and the server returns an error instead of unwinding out.

#![allow(clippy::disallowed_methods)] // the test's own tasks: the upstream is aborted, the server awaited

use super::accept::panic_test;
use super::{Command, Listeners, serve_controlled};
use crate::config::{Config, MapEnv};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// An upstream that answers one streamed chat request with a head and one event, then holds
/// the stream open until the test ends; `read` is told once the request arrived.
async fn holding_upstream(arrived: oneshot::Sender<()>) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request ended early");
            seen.extend_from_slice(&buf[..n]);
        }
        let _ = arrived.send(());
        let event = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n";
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                    transfer-encoding: chunked\r\n\r\n";
        let chunk = format!("{head}{:x}\r\n{event}\r\n", event.len());
        conn.write_all(chunk.as_bytes()).await.unwrap();
        // Held open: aloud must cut it. Read until aloud closes its side.
        while conn.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    });
    (port, task)
}

#[tokio::test]
async fn a_panic_in_the_first_threads_accept_loop_cuts_connections_and_closes_capture() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("captures.db");
    let (arrived_tx, arrived) = oneshot::channel();
    let (up_port, upstream) = holding_upstream(arrived_tx).await;
    let toml = format!(
        r#"
[server]
workers = 1
[capture]
database = "{}"
[[routes]]
name = "r"
prefix = "/r"
upstream = "http://127.0.0.1:{up_port}"
api = "openai"
capture = "full"
progress = "off"
"#,
        db.display()
    );
    let config = Config::parse(&toml, Path::new("test.toml"), &MapEnv::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_commands, rx) = mpsc::channel::<Command>(4);
    let server = tokio::spawn(serve_controlled(config, Listeners::proxy(listener), rx));

    // A stream mid-answer: the head and the first event reached the client.
    let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let request = format!(
        "POST /r/v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    client.write_all(request.as_bytes()).await.unwrap();
    arrived.await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("Hel") {
        let n = client.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed before the first event: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }

    // The next connection makes the loop panic.
    panic_test::arm(port);
    let _poke = TcpStream::connect(("127.0.0.1", port)).await.unwrap();

    // The stream is cut: it ends without the chunked body's last chunk.
    let rest = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(rest.is_ok(), "the connection was not cut");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "a cut stream ended cleanly: {text:?}"
    );

    // The server stops with an error, having closed the capture writer: the record is there.
    let result = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the server did not stop")
        .expect("the server's task itself did not panic");
    assert!(
        result.is_err(),
        "a panicked accept loop is not a clean stop"
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: Vec<(String, bool)> = conn
        .prepare("SELECT outcome, partial FROM captures")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows, vec![("shutdown".to_owned(), true)]);
    upstream.abort();
}
