//! Request-body faults are the client's: a stalled body gets 408, broken chunking gets 400, and
//! the upstream sees its request aborted. Real sockets on both sides.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use http::Request;
use http_body_util::BodyExt;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// An upstream that reads whatever arrives and reports each connection's end (EOF or error),
/// never answering: only a client-side fault can end the exchange.
async fn reading_upstream() -> (Upstream, mpsc::UnboundedReceiver<usize>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let up = Upstream::raw(move |mut s| {
        let tx = tx.clone();
        async move {
            let mut total = 0;
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = s.read(&mut buf).await {
                total += n;
            }
            let _ = tx.send(total);
        }
    })
    .await;
    (up, rx)
}

async fn ok_upstream() -> Upstream {
    Upstream::start(|req: Request<hyper::body::Incoming>| async move {
        let _ = req.into_body().collect().await;
        response(200, &[("content-type", "application/json")], full("{}"))
    })
    .await
}

#[tokio::test]
async fn a_stalled_request_body_gets_408_and_the_upstream_request_is_aborted() {
    let (up, mut ended) = reading_upstream().await;
    // headers_timeout bounds the test on code without the request body timeout (504 there).
    let aloud = Aloud::start(&route_config(
        up.addr,
        "anthropic",
        "headers_timeout = \"5s\"",
        "request_body_timeout = \"300ms\"\nmax_concurrent_requests = 1",
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(aloud.addr).await.unwrap();
    s.write_all(
        b"POST /up/v1/messages HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\":",
    )
    .await
    .unwrap();
    // The client now says nothing more; aloud answers on its own.
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out).to_string();
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    let lower = out.to_ascii_lowercase();
    assert!(lower.contains("x-should-retry: false"), "{out}");
    assert!(lower.contains("connection: close"), "{out}");
    // Anthropic's envelope, with a message that names the cause.
    let body: serde_json::Value =
        serde_json::from_str(out.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stalled"),
        "{body}"
    );
    // The upstream saw its request cut off: head plus the 9 body bytes, then the end.
    let seen = ended.recv().await.unwrap();
    assert!(seen > 9, "{seen}");
    aloud.stop().await;
}

#[tokio::test]
async fn the_slot_of_a_stalled_body_is_freed_for_the_next_request() {
    let (up, mut ended) = reading_upstream().await;
    let aloud = Aloud::start(&route_config(
        up.addr,
        "openai",
        "headers_timeout = \"5s\"",
        "request_body_timeout = \"300ms\"\nmax_concurrent_requests = 1",
    ))
    .await;
    for _ in 0..2 {
        // With one slot, the second stalled request is only served (408, not 503) if the
        // first one's slot was freed.
        let mut s = tokio::net::TcpStream::connect(aloud.addr).await.unwrap();
        s.write_all(
            b"POST /up/v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n{",
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let out = String::from_utf8_lossy(&out).to_string();
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");
        assert!(out.contains("\"error\""), "{out}");
        ended.recv().await.unwrap();
    }
    aloud.stop().await;
}

#[tokio::test]
async fn a_malformed_chunked_request_body_gets_400_not_502() {
    let up = ok_upstream().await;
    let aloud = Aloud::start(&route_config(up.addr, "openai", "", "")).await;
    let raw = b"POST /up/v1/chat/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\nzz\r\n";
    let out = String::from_utf8_lossy(&raw_exchange(aloud.addr, raw).await).to_string();
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("invalid_request_error"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("x-should-retry: false"),
        "{out}"
    );
    aloud.stop().await;
}
