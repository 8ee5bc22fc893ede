//! Disconnects cancel the upstream; stalled clients are cut; shutdown drains in-flight requests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use bytes::Bytes;
use http_body_util::BodyExt;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Reads the request head from `s` (up to the blank line).
async fn read_head(s: &mut tokio::net::TcpStream) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "upstream saw EOF before the request head");
        seen.extend_from_slice(&buf[..n]);
    }
}

/// Waits for EOF (or reset) on an upstream socket: the proxy closed its side.
async fn wait_closed(s: &mut tokio::net::TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// A raw upstream that reports (request received, connection closed at) through channels.
async fn watching_upstream(
    stream_first_chunk: bool,
) -> (Upstream, mpsc::Receiver<()>, mpsc::Receiver<Instant>) {
    let (got_tx, got_rx) = mpsc::channel(1);
    let (closed_tx, closed_rx) = mpsc::channel(1);
    let up = Upstream::raw(move |mut s| {
        let got_tx = got_tx.clone();
        let closed_tx = closed_tx.clone();
        async move {
            read_head(&mut s).await;
            if stream_first_chunk {
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\nb\r\ndata: one\n\n\r\n")
                    .await
                    .unwrap();
            }
            got_tx.send(()).await.unwrap();
            wait_closed(&mut s).await;
            closed_tx.send(Instant::now()).await.unwrap();
        }
    })
    .await;
    (up, got_rx, closed_rx)
}

#[tokio::test]
async fn a_client_disconnect_mid_stream_closes_the_upstream_connection() {
    let (up, mut got, mut closed) = watching_upstream(true).await;
    let aloud = Aloud::start(&route_config(up.addr, "openai", "", "")).await;
    let mut client = tokio::net::TcpStream::connect(aloud.addr).await.unwrap();
    client
        .write_all(
            b"POST /up/v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}",
        )
        .await
        .unwrap();
    got.recv().await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("data: one") {
        let n = client.read(&mut buf).await.unwrap();
        seen.extend_from_slice(&buf[..n]);
    }
    let dropped = Instant::now();
    drop(client);
    let closed_at = closed.recv().await.unwrap();
    let took = closed_at.duration_since(dropped);
    println!("streaming: upstream saw the close {took:?} after the client left");
    assert!(took < Duration::from_secs(2), "{took:?}");
    aloud.stop().await;
}

#[tokio::test]
async fn a_client_disconnect_while_waiting_for_headers_closes_the_upstream_connection() {
    let (up, mut got, mut closed) = watching_upstream(false).await;
    let aloud = Aloud::start(&route_config(up.addr, "openai", "", "")).await;
    let mut client = tokio::net::TcpStream::connect(aloud.addr).await.unwrap();
    client
        .write_all(
            b"POST /up/v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}",
        )
        .await
        .unwrap();
    got.recv().await.unwrap();
    let dropped = Instant::now();
    drop(client);
    let closed_at = closed.recv().await.unwrap();
    let took = closed_at.duration_since(dropped);
    println!("non-streaming: upstream saw the close {took:?} after the client left");
    assert!(took < Duration::from_secs(2), "{took:?}");
    aloud.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_after_the_write_stall_timeout() {
    let (cut_tx, mut cut_rx) = mpsc::channel::<()>(1);
    let up = Upstream::raw(move |mut s| {
        let cut_tx = cut_tx.clone();
        async move {
            read_head(&mut s).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n").await.unwrap();
            let chunk = format!("{:x}\r\n{}\n\r\n", 65_535, "x".repeat(65_534));
            while s.write_all(chunk.as_bytes()).await.is_ok() {}
            cut_tx.send(()).await.unwrap();
        }
    })
    .await;
    let toml = route_config(up.addr, "ollama", "", "write_stall_timeout = \"300ms\"");
    let aloud = Aloud::start(&toml).await;
    let mut client = tokio::net::TcpStream::connect(aloud.addr).await.unwrap();
    client
        .write_all(b"POST /up/api/chat HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .unwrap();
    // Never read: the upstream's writes must eventually fail because aloud gave up on us.
    cut_rx.recv().await.unwrap();
    drop(client);
    aloud.stop().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_streams_finish_and_refuses_new_connections() {
    let (tx, body) = channel_body();
    let body = std::sync::Mutex::new(Some(body));
    let up = Upstream::start(move |_req| {
        let b = body.lock().unwrap().take().unwrap_or_else(|| full(""));
        async move { response(200, &[("content-type", "text/event-stream")], b) }
    })
    .await;
    // The off tier: this test is about draining, and on a slow machine a comments-tier
    // heartbeat could land between the two chunks it compares byte for byte.
    let mut aloud = Aloud::start(&route_config(up.addr, "openai", "progress = \"off\"", "")).await;
    let r = post(&aloud.url("/up/v1/chat/completions"), &[], "{}").await;
    assert_eq!(r.status(), 200);
    tx.send(Bytes::from_static(b"data: 1\n\n")).await.unwrap();
    let mut body = r.into_body();
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "data: 1\n\n"
    );
    aloud.begin_shutdown();
    // New connections are refused once the listener is gone.
    let mut refused = false;
    for _ in 0..1000 {
        if tokio::net::TcpStream::connect(aloud.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused, "the listener should close at shutdown");
    tx.send(Bytes::from_static(b"data: 2\n\n")).await.unwrap();
    drop(tx);
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, Bytes::from_static(b"data: 2\n\n"));
    (&mut aloud.handle).await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_closes_streams_still_running_after_the_grace_period() {
    let (tx, body) = channel_body();
    let body = std::sync::Mutex::new(Some(body));
    let up = Upstream::start(move |_req| {
        let b = body.lock().unwrap().take().unwrap_or_else(|| full(""));
        async move { response(200, &[("content-type", "text/event-stream")], b) }
    })
    .await;
    let aloud = Aloud::start(&route_config(
        up.addr,
        "openai",
        "progress = \"off\"",
        "shutdown_grace = \"200ms\"",
    ))
    .await;
    let r = post(&aloud.url("/up/v1/chat/completions"), &[], "{}").await;
    tx.send(Bytes::from_static(b"data: 1\n\n")).await.unwrap();
    aloud.stop().await;
    // The client's stream ended (cut) rather than hanging.
    let mut body = r.into_body();
    let mut frames = 0;
    while let Some(Ok(_)) = body.frame().await {
        frames += 1;
    }
    assert!(frames <= 1);
    drop(tx);
}
