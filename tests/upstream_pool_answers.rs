//! A plain-http route's connections across every kind of answer (`proxy/upstream/body.rs` puts
//! one back from the answer's body): bodiless and informational answers, trailers, whole
//! answers the events tier collects, `Connection: close`, a switched protocol and a broken
//! stream (never reused), and reuse under concurrency (no body ever crosses to another request).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::scripted::{chunk, read_request};

/// One serving thread: each thread keeps its own upstream connections, and the counts here
/// are of one pool (`proxy/upstream/plain.rs` tests the pools of two threads).
const ONE_THREAD: &str = "workers = 1";
use support::{Aloud, Upstream, post, read_to_end, route_config, send};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// One answer per request path; every body carries `tag` (the upstream's request count) so a
/// body that went to the wrong request would show.
fn answer(method_path: &str, tag: usize) -> (Vec<u8>, bool) {
    let json = format!("{{\"tag\":{tag}}}");
    let len = |ct: &str, extra: &str| {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ncontent-length: {}\r\n{extra}\r\n{json}",
            json.len()
        )
        .into_bytes()
    };
    // aloud strips the route's prefix: the upstream sees `/json`, not `/up/json`.
    let path = method_path.split_whitespace().nth(1).unwrap_or("");
    let path = format!("/up{path}");
    let path = path.as_str();
    let head_only = method_path.starts_with("head ");
    match path {
        _ if head_only => (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 999\r\n\r\n"
                .to_vec(),
            true,
        ),
        "/up/trailers" => {
            let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\ntrailer: x-t\r\n\r\n".to_vec();
            out.extend(chunk(json.as_bytes()));
            out.extend_from_slice(b"0\r\nx-t: 1\r\n\r\n");
            (out, true)
        }
        "/up/chunked" => {
            let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            out.extend(chunk(json.as_bytes()));
            out.extend_from_slice(b"0\r\n\r\n");
            (out, true)
        }
        "/up/sse" => {
            let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            out.extend(chunk(format!("data: {json}\n\n").as_bytes()));
            out.extend(chunk(b"data: [DONE]\n\n"));
            out.extend_from_slice(b"0\r\n\r\n");
            (out, true)
        }
        // After these the upstream answers nothing more on the connection (a switched
        // protocol, or a stream it broke): reusing the connection would hang the next request.
        "/up/switch" => (
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"
                .to_vec(),
            true,
        ),
        "/up/badchunk" => (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n5\r\ndata:\r\nzz\r\n"
                .to_vec(),
            true,
        ),
        "/up/204" => (b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(), true),
        "/up/zero" => (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"
                .to_vec(),
            true,
        ),
        "/up/early" => {
            let mut out = b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n".to_vec();
            out.extend(len("application/json", ""));
            (out, true)
        }
        "/up/close" => (len("application/json", "connection: close\r\n"), false),
        "/up/error" => (
            format!(
                "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
                json.len()
            )
            .into_bytes(),
            true,
        ),
        _ => (len("application/json", ""), true),
    }
}

struct Up {
    up: Upstream,
    connections: Arc<AtomicUsize>,
}

async fn upstream() -> Up {
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&connections);
    let up = Upstream::raw(move |mut s: TcpStream| {
        c.fetch_add(1, Ordering::SeqCst);
        let requests = Arc::clone(&requests);
        async move {
            while let Some(head) = read_request(&mut s).await {
                let tag = requests.fetch_add(1, Ordering::SeqCst);
                let first = head.lines().next().unwrap_or("").to_owned();
                let (out, keep) = answer(&first, tag);
                if s.write_all(&out).await.is_err() || !keep {
                    return;
                }
                if first.contains("/switch") || first.contains("/badchunk") {
                    // Hold the connection open, answering nothing.
                    support::scripted::wait_closed(&mut s).await;
                    return;
                }
            }
        }
    })
    .await;
    Up { up, connections }
}

async fn request(aloud: &Aloud, method: &str, path: &str) -> (u16, Vec<u8>) {
    let req = http::Request::builder()
        .method(method)
        .uri(aloud.url(path))
        .body(support::full(""))
        .unwrap();
    let r = send(req).await;
    let status = r.status().as_u16();
    let (bytes, clean) = read_to_end(r).await;
    assert!(clean, "{method} {path}: the transfer failed");
    (status, bytes)
}

fn off(up: &Up) -> String {
    route_config(up.up.addr, "openai", "progress = \"off\"", ONE_THREAD)
}

/// A chunked answer with trailers: the off tier stops reading the upstream's body at the
/// trailers frame (`response/mod.rs`), before its `Ready(None)`; the connection still goes back.
#[tokio::test]
async fn an_answer_with_trailers_keeps_its_connection() {
    let up = upstream().await;
    let aloud = Aloud::start(&off(&up)).await;
    for _ in 0..3 {
        let (status, body) = request(&aloud, "GET", "/up/trailers").await;
        assert_eq!(status, 200);
        assert!(body.starts_with(b"{\"tag\":"), "{body:?}");
    }
    let (status, _) = request(&aloud, "GET", "/up/json").await;
    assert_eq!(status, 200);
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "every answer, trailers or not, left its connection in the pool"
    );
    aloud.stop().await;
}

/// Bodiless answers (HEAD, 204, `Content-Length: 0`), a 103 before the answer, chunked and
/// whole answers, an error the events tier collects: one connection throughout.
#[tokio::test]
async fn bodiless_and_informational_answers_keep_their_connection() {
    let up = upstream().await;
    let aloud = Aloud::start(&off(&up)).await;
    for (method, path) in [
        ("GET", "/up/json"),
        ("HEAD", "/up/json"),
        ("GET", "/up/204"),
        ("GET", "/up/zero"),
        ("GET", "/up/early"),
        ("GET", "/up/chunked"),
        ("GET", "/up/sse"),
        ("GET", "/up/json"),
    ] {
        let (status, body) = request(&aloud, method, path).await;
        assert!(status == 200 || status == 204, "{method} {path}: {status}");
        if path == "/up/json" && method == "GET" {
            assert!(body.starts_with(b"{\"tag\":"), "{method} {path}: {body:?}");
        }
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
    aloud.stop().await;
}

/// The events tier collects a whole answer (and an error) and wraps it.
#[tokio::test]
async fn the_events_tier_collecting_whole_answers_keeps_the_connection() {
    let up = upstream().await;
    let aloud = Aloud::start(&route_config(up.up.addr, "openai", "", ONE_THREAD)).await;
    for path in ["/up/json", "/up/error", "/up/chunked", "/up/json"] {
        let r = post(
            &aloud.url(path),
            &[
                ("content-type", "application/json"),
                ("aloud-progress", "events"),
            ],
            "{}",
        )
        .await;
        let (_, clean) = read_to_end(r).await;
        assert!(clean, "{path}");
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
    aloud.stop().await;
}

/// `Connection: close` answers: no request fails on a pooled connection the upstream closed.
#[tokio::test]
async fn connection_close_answers_fail_no_request() {
    let up = upstream().await;
    let aloud = Aloud::start(&off(&up)).await;
    for i in 0..6 {
        let path = if i % 2 == 0 { "/up/close" } else { "/up/json" };
        let (status, body) = request(&aloud, "GET", path).await;
        assert_eq!(status, 200, "{path}");
        assert!(body.starts_with(b"{\"tag\":"), "{path}: {body:?}");
    }
    aloud.stop().await;
}

/// Many requests at once on a multi-threaded runtime, mixing answer kinds: every body is whole
/// and its own (the tag says which upstream request it answered; no two bodies share one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mixed_answers_never_share_or_cross() {
    let up = upstream().await;
    let aloud = Arc::new(Aloud::start(&off(&up)).await);
    let paths = [
        "/up/json",
        "/up/chunked",
        "/up/sse",
        "/up/zero",
        "/up/early",
    ];
    let mut tasks = Vec::new();
    for w in 0..8 {
        let aloud = Arc::clone(&aloud);
        #[expect(
            clippy::disallowed_methods,
            reason = "the test's concurrent clients, joined below"
        )]
        tasks.push(tokio::spawn(async move {
            let mut tags = Vec::new();
            for i in 0..60 {
                let path = paths[(w + i) % paths.len()];
                let (status, body) = request(&aloud, "GET", path).await;
                assert_eq!(status, 200);
                if path == "/up/zero" {
                    assert!(body.is_empty(), "{:?}", String::from_utf8_lossy(&body));
                    continue;
                }
                let text = String::from_utf8(body).unwrap();
                let tag = text
                    .split("\"tag\":")
                    .nth(1)
                    .and_then(|t| t.split('}').next())
                    .and_then(|t| t.parse::<usize>().ok())
                    .unwrap_or_else(|| panic!("{path}: {text:?}"));
                tags.push(tag);
            }
            tags
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "two bodies carried the same upstream answer");
    assert!(
        up.connections.load(Ordering::SeqCst) <= 16,
        "{} connections for 8 concurrent clients",
        up.connections.load(Ordering::SeqCst)
    );
    Arc::try_unwrap(aloud).ok().unwrap().stop().await;
}

/// A 101 to a plain request, and a body that fails mid-stream while the upstream keeps the
/// socket open: neither connection is used again (the next request would hang on it).
#[tokio::test]
async fn a_switched_or_broken_connection_is_not_reused() {
    let up = upstream().await;
    let aloud = Aloud::start(&off(&up)).await;
    let (status, _) = request(&aloud, "GET", "/up/json").await;
    assert_eq!(status, 200);
    for path in ["/up/switch", "/up/badchunk"] {
        let req = http::Request::get(aloud.url(path))
            .body(support::full(""))
            .unwrap();
        let r = send(req).await;
        let _ = read_to_end(r).await;
        let next = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            request(&aloud, "GET", "/up/json"),
        )
        .await
        .unwrap_or_else(|_| panic!("the request after {path} hung"));
        assert_eq!(next.0, 200, "after {path}");
    }
    aloud.stop().await;
}
