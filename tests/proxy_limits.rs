//! Limits, timeouts, overload and failing upstreams, over real sockets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn ok_upstream() -> Upstream {
    Upstream::start(|req: Request<hyper::body::Incoming>| async move {
        let _ = req.into_body().collect().await;
        response(200, &[("content-type", "application/json")], full("{}"))
    })
    .await
}

#[tokio::test]
async fn declared_oversized_bodies_get_413_before_100_continue() {
    let up = ok_upstream().await;
    let aloud = Aloud::start(&route_config(
        up.addr,
        "openai",
        "max_request_body = \"1KiB\"",
        "",
    ))
    .await;
    let raw = "POST /up/v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
    let out = String::from_utf8_lossy(&raw_exchange(aloud.addr, raw.as_bytes()).await).to_string();
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(!out.contains("100 Continue"), "{out}");
    assert!(
        out.contains("request_too_large") || out.contains("larger than"),
        "{out}"
    );
    assert!(
        out.to_ascii_lowercase().contains("x-should-retry: false"),
        "{out}"
    );
    aloud.stop().await;
}

#[tokio::test]
async fn expect_continue_within_the_limit_is_answered_and_forwarded() {
    let up = ok_upstream().await;
    let aloud = Aloud::start(&route_config(up.addr, "openai", "", "")).await;
    let mut s = tokio::net::TcpStream::connect(aloud.addr).await.unwrap();
    s.write_all(b"POST /up/v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 25];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"{}").await.unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert!(rest.starts_with(b"HTTP/1.1 200"));
    aloud.stop().await;
}

#[tokio::test]
async fn chunked_bodies_past_the_limit_get_413() {
    let up = ok_upstream().await;
    let aloud = Aloud::start(&route_config(
        up.addr,
        "anthropic",
        "max_request_body = \"1KiB\"",
        "",
    ))
    .await;
    let (tx, body) = channel_body();
    let req = Request::post(aloud.url("/up/v1/messages"))
        .body(body)
        .unwrap();
    let feeder = async move {
        for _ in 0..4 {
            if tx.send(Bytes::from(vec![b'a'; 512])).await.is_err() {
                return;
            }
        }
    };
    let (r, ()) = tokio::join!(send(req), feeder);
    assert_eq!(r.status(), 413);
    assert_eq!(body_json(r).await["error"]["type"], "request_too_large");
    aloud.stop().await;
}

#[tokio::test]
async fn an_upstream_that_refuses_gets_502_in_the_api_envelope() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let aloud = Aloud::start(&route_config(closed, "openai", "", "")).await;
    let r = post(&aloud.url("/up/v1/chat/completions"), &[], "{}").await;
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-should-retry"], "true");
    let body = body_json(r).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{body}"
    );
    aloud.stop().await;
}

#[tokio::test]
async fn garbage_from_the_upstream_gets_502() {
    let up = Upstream::raw(|mut s| async move {
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(b"this is not http\r\n\r\n").await;
    })
    .await;
    let aloud = Aloud::start(&route_config(up.addr, "gemini", "", "")).await;
    let r = post(&aloud.url("/up/v1beta/models/x:generateContent"), &[], "{}").await;
    assert_eq!(r.status(), 502);
    assert_eq!(body_json(r).await["error"]["status"], "INTERNAL");
    aloud.stop().await;
}

#[tokio::test]
async fn a_reset_mid_stream_fails_the_client_transfer_after_the_bytes_so_far() {
    let up = Upstream::raw(|mut s| async move {
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\nb\r\ndata: one\n\n\r\n")
            .await;
    })
    .await;
    let aloud = Aloud::start(&route_config(up.addr, "openai", "", "")).await;
    let r = post(&aloud.url("/up/v1/chat/completions"), &[], "{}").await;
    assert_eq!(r.status(), 200);
    let mut body = r.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, Bytes::from_static(b"data: one\n\n"));
    // Then the transfer fails, as it would without aloud: never a clean end.
    assert!(matches!(body.frame().await, Some(Err(_))));
    aloud.stop().await;
}

/// An upstream that answers headers after `headers` and then stays silent.
async fn stalling_upstream(headers_after: Duration) -> Upstream {
    Upstream::start(move |_req| async move {
        tokio::time::sleep(headers_after).await;
        let (tx, body) = channel_body();
        let _ = tx.send(Bytes::from_static(b"data: first\n\n")).await;
        // Keep the sender alive inside the body's lifetime: never send again.
        std::mem::forget(tx);
        response(200, &[("content-type", "text/event-stream")], body)
    })
    .await
}

#[tokio::test]
async fn the_headers_timeout_gives_504() {
    let up = stalling_upstream(Duration::from_secs(3600)).await;
    let aloud = Aloud::start(&route_config(
        up.addr,
        "anthropic",
        "headers_timeout = \"200ms\"",
        "",
    ))
    .await;
    let r = post(&aloud.url("/up/v1/messages"), &[], "{}").await;
    assert_eq!(r.status(), 504);
    let body = body_json(r).await;
    assert_eq!(body["error"]["type"], "timeout_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no response headers")
    );
    aloud.stop().await;
}

#[tokio::test]
async fn the_idle_timeout_fails_a_silent_stream() {
    let up = stalling_upstream(Duration::ZERO).await;
    let aloud = Aloud::start(&route_config(
        up.addr,
        "openai",
        "idle_timeout = \"200ms\"",
        "",
    ))
    .await;
    let r = post(&aloud.url("/up/v1/chat/completions"), &[], "{}").await;
    assert_eq!(r.status(), 200);
    let (bytes, clean) = read_to_end(r).await;
    assert_eq!(bytes, b"data: first\n\n");
    assert!(!clean, "a timed-out stream must not end cleanly");
    aloud.stop().await;
}

#[tokio::test]
async fn the_total_timeout_fails_a_stream_that_keeps_going() {
    let up = Upstream::start(|_req| async move {
        let (tx, body) = channel_body();
        #[expect(clippy::disallowed_methods, reason = "test upstream driver")]
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tick.tick().await;
                if tx.send(Bytes::from_static(b": tick\n\n")).await.is_err() {
                    return;
                }
            }
        });
        response(200, &[("content-type", "text/event-stream")], body)
    })
    .await;
    let toml = route_config(
        up.addr,
        "openai",
        "idle_timeout = \"5s\"\ntotal_timeout = \"300ms\"",
        "",
    );
    let aloud = Aloud::start(&toml).await;
    let r = post(&aloud.url("/up/v1/chat/completions"), &[], "{}").await;
    let (bytes, clean) = read_to_end(r).await;
    assert!(
        !bytes.is_empty() && bytes.len() % 8 == 0,
        "whole ticks only: {bytes:?}"
    );
    assert!(
        !clean,
        "a stream cut by the total timeout must not end cleanly"
    );
    aloud.stop().await;
}

#[tokio::test]
async fn over_the_concurrency_limit_gets_503_with_retry_after() {
    let up = stalling_upstream(Duration::ZERO).await;
    let aloud = Aloud::start(&route_config(
        up.addr,
        "openai",
        "",
        "max_concurrent_requests = 1",
    ))
    .await;
    let first = post(&aloud.url("/up/a"), &[], "{}").await;
    assert_eq!(first.status(), 200);
    let second = post(&aloud.url("/up/b"), &[], "{}").await;
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "1");
    assert_eq!(second.headers()["x-should-retry"], "true");
    assert_eq!(body_json(second).await["error"]["type"], "server_error");
    // Once the first stream ends, the slot is free again.
    drop(first);
    let mut status = 503;
    for _ in 0..200 {
        let r = post(&aloud.url("/up/c"), &[], "{}").await;
        status = r.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(status, 200);
    aloud.stop().await;
}

#[tokio::test]
async fn connect_and_upgrade_are_refused_clearly() {
    let up = ok_upstream().await;
    let aloud = Aloud::start(&route_config(up.addr, "openai", "", "")).await;
    let out = raw_exchange(
        aloud.addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    )
    .await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    assert!(out.contains("CONNECT tunnels are not supported"));
    let ws = "GET /up/ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let out = String::from_utf8_lossy(&raw_exchange(aloud.addr, ws.as_bytes()).await).to_string();
    assert!(out.starts_with("HTTP/1.1 501"), "{out}");
    assert!(out.contains("WebSocket"));
    aloud.stop().await;
}

#[tokio::test]
async fn malformed_and_oversized_heads_are_refused_without_harm() {
    let up = ok_upstream().await;
    let aloud = Aloud::start(&route_config(
        up.addr,
        "openai",
        "",
        "max_request_head = \"16KiB\"",
    ))
    .await;
    let out = raw_exchange(aloud.addr, b"NOT HTTP AT ALL\r\n\r\n").await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    let huge = format!(
        "GET /up/x HTTP/1.1\r\nHost: a\r\nx-big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let out = raw_exchange(aloud.addr, huge.as_bytes()).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    // The server is still fine.
    assert_eq!(get(&aloud.url("/healthz")).await.status(), 200);
    aloud.stop().await;
}

/// A request head of exactly `size` bytes: `GET /up/x`, `Host`, `Connection: close` and one
/// padding header.
fn head_of(size: usize) -> String {
    let bare = "GET /up/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nx-pad: \r\n\r\n";
    let head = bare.replace(
        "x-pad: ",
        &format!("x-pad: {}", "p".repeat(size - bare.len())),
    );
    assert_eq!(head.len(), size);
    head
}

#[tokio::test]
async fn the_request_head_limit_is_exact() {
    let up = ok_upstream().await;
    let aloud = Aloud::start(&route_config(
        up.addr,
        "openai",
        "",
        "max_request_head = \"64KiB\"\n[cors]\norigins = [\"*\"]",
    ))
    .await;
    let status = |out: Vec<u8>| {
        String::from_utf8_lossy(&out)
            .get(..12)
            .unwrap_or("")
            .to_owned()
    };
    // A CORS preflight is held to the limit too (it is answered before any route).
    let preflight = head_of((64 << 10) + 1).replacen(
        "GET /up/x HTTP/1.1\r\n",
        "OPTIONS /up/x HTTP/1.1\r\nOrigin: http://a\r\nAccess-Control-Request-Method: POST\r\n",
        1,
    );
    let out = raw_exchange(aloud.addr, preflight.as_bytes()).await;
    assert_eq!(status(out), "HTTP/1.1 431", "an oversized preflight");
    let limit = 64 << 10;
    // hyper's buffer bound alone let heads up to about 114 KB through this limit.
    for (size, want) in [
        (limit, "HTTP/1.1 200"),
        (limit + 1, "HTTP/1.1 431"),
        (limit + 40_000, "HTTP/1.1 431"),
    ] {
        let out = raw_exchange(aloud.addr, head_of(size).as_bytes()).await;
        assert_eq!(status(out), want, "a head of {size} bytes");
    }
    aloud.stop().await;
}

/// At the smallest limit too, a head just past it is aloud's own refusal (the route's envelope,
/// its error code and an id), not hyper's bare 431; and a smaller limit is a config error.
#[tokio::test]
async fn at_the_smallest_head_limit_an_oversized_head_is_still_refused_by_aloud() {
    let up = ok_upstream().await;
    let config = |limit: &str| {
        route_config(
            up.addr,
            "openai",
            "",
            &format!("max_request_head = \"{limit}\""),
        )
    };
    let err = aloud::config::Config::parse(
        &config("4KiB"),
        std::path::Path::new("aloud.toml"),
        &aloud::config::MapEnv::default(),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        err.contains("max_request_head") && err.contains("8KiB"),
        "{err}"
    );
    let aloud = Aloud::start(&config("8KiB")).await;
    for size in [8193, 12_000] {
        let out = raw_exchange(aloud.addr, head_of(size).as_bytes()).await;
        let text = String::from_utf8_lossy(&out).to_lowercase();
        assert!(text.starts_with("http/1.1 431"), "{size}: {text}");
        assert!(
            text.contains("aloud-error-code: request_head_too_large"),
            "{size}: {text}"
        );
        assert!(text.contains("aloud-request-id: "), "{size}: {text}");
    }
    aloud.stop().await;
}

#[tokio::test]
async fn a_slow_request_head_times_out() {
    let up = ok_upstream().await;
    let aloud = Aloud::start(&route_config(
        up.addr,
        "openai",
        "",
        "request_head_timeout = \"200ms\"",
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(aloud.addr).await.unwrap();
    s.write_all(b"GET /up/x HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let n = s.read_to_end(&mut out).await.unwrap_or(0);
    // hyper answers 408 or just closes; either way the connection ends.
    assert!(
        n == 0 || String::from_utf8_lossy(&out).starts_with("HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    aloud.stop().await;
}

/// The value of `name` in a raw response's head, if any.
fn header_in(out: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(out);
    let head = text.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// hyper refuses these heads itself, before aloud sees a request; they still carry an id and a
/// code, on the proxy's listener and on the admin listener.
#[tokio::test]
async fn heads_hyper_refuses_itself_still_carry_an_id_and_a_code() {
    let up = ok_upstream().await;
    let aloud = Aloud::start(&route_config(
        up.addr,
        "openai",
        "",
        "max_request_head = \"64KiB\"\n\n[admin]\nlisten = \"127.0.0.1:0\"",
    ))
    .await;
    let many_headers: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let cases: [(Vec<u8>, &str, &str); 5] = [
        (
            b"NOT HTTP AT ALL\r\n\r\n".to_vec(),
            "HTTP/1.1 400",
            "bad_request",
        ),
        (
            b"GET /up/x HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n".to_vec(),
            "HTTP/1.1 400",
            "bad_request",
        ),
        (
            format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(70_000)).into_bytes(),
            "HTTP/1.1 414",
            "uri_too_long",
        ),
        (
            format!("GET /up/x HTTP/1.1\r\nHost: a\r\n{many_headers}\r\n").into_bytes(),
            "HTTP/1.1 431",
            "request_head_too_large",
        ),
        // Past twice `max_request_head`: hyper's buffer limit, not aloud's exact measure.
        (
            format!(
                "GET /up/x HTTP/1.1\r\nHost: a\r\nx-big: {}\r\n\r\n",
                "a".repeat(140_000)
            )
            .into_bytes(),
            "HTTP/1.1 431",
            "request_head_too_large",
        ),
    ];
    let admin = aloud.admin.expect("an admin listener");
    // The admin listener has hyper's defaults (no head limit of aloud's): a line hyper cannot
    // parse, and more headers than hyper's 100.
    for (listener, addr, which) in [
        ("proxy", aloud.addr, &[0, 1, 2, 3, 4][..]),
        ("admin", admin, &[0, 3][..]),
    ] {
        for (raw, status, code) in which.iter().map(|&i| &cases[i]) {
            let out = raw_exchange(addr, raw).await;
            let text = String::from_utf8_lossy(&out);
            assert!(text.starts_with(status), "{listener}: {text:?}");
            let id = header_in(&out, "aloud-request-id")
                .unwrap_or_else(|| panic!("{listener}: no id in {text:?}"));
            assert!(aloud::request_id::is_valid(&id), "{listener}: {id:?}");
            assert_eq!(
                header_in(&out, "aloud-error-code").as_deref(),
                Some(*code),
                "{listener}: {text:?}"
            );
        }
    }
    assert_eq!(get(&aloud.url("/healthz")).await.status(), 200);
    aloud.stop().await;
}
