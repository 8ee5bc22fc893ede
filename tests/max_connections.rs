//! `[server] max_connections` over real sockets: idle connections at the cap keep a proxied
//! request out (refused at once, not queued), and closing one lets the next one in.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use std::net::SocketAddr;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROXIED: &[u8] = b"POST /up/v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";

/// An idle keep-alive connection that aloud has surely accepted: it answered one request on it.
async fn idle_connection(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains(r#"{"status":"ok"}"#) {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"));
    s
}

/// A proxied request on a fresh connection: what came back (empty when closed or reset).
async fn proxied(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // A refused connection may be closed before or while the request is written.
    let _ = s.write_all(PROXIED).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn idle_connections_at_the_cap_refuse_new_ones_until_one_closes() {
    let up = Upstream::start(|_req| async {
        response(
            200,
            &[("content-type", "application/json")],
            full("{\"ok\":1}"),
        )
    })
    .await;
    let aloud = Aloud::start(&route_config(up.addr, "openai", "", "max_connections = 3")).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(idle_connection(aloud.addr).await);
    }
    // At the cap: refused at once with a 503 (or closed), never forwarded.
    for _ in 0..3 {
        let answer = proxied(aloud.addr).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
            "{answer}"
        );
        assert!(!answer.contains("\"ok\":1"), "{answer}");
        if !answer.is_empty() {
            // Like every response, with an id and its reason.
            assert!(answer.contains("\r\naloud-request-id: "), "{answer}");
            assert!(
                answer.contains("\r\naloud-error-code: too_many_connections\r\n"),
                "{answer}"
            );
        }
    }
    // Close one idle connection and wait until aloud has seen it go (it closes its side too).
    let mut gone = idle.pop().unwrap();
    gone.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = gone.read_to_end(&mut rest).await;
    drop(gone);
    // The permit is released as the connection task ends, just after aloud's side closed:
    // each refused try is a full round trip, so this waits on aloud, not on a clock.
    let mut answer = String::new();
    for _ in 0..200 {
        answer = proxied(aloud.addr).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"ok\":1"), "{answer}");
    drop(idle);
    aloud.stop().await;
}
