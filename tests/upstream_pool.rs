//! A plain-http route's own upstream connections (`proxy/upstream/plain.rs`): kept and reused,
//! a streamed answer's connection back in the pool once the stream ended, `Host` set to the
//! upstream's, and a pooled connection the upstream closed never failing a request.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::scripted::{chunk, read_request};
use support::{Aloud, Upstream, body_bytes, get, read_to_end, route_config};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Notify, Semaphore};

/// One serving thread: each thread keeps its own upstream connections, and the counts here
/// are of one pool (`proxy/upstream/plain.rs` tests the pools of two threads).
const ONE_THREAD: &str = "workers = 1";

const JSON: &str = "{\"ok\":true}";

/// Serves requests on one connection until the peer closes it: `/json` answers whole, `/sse`
/// sends its head and first event, waits for a permit of `go`, then ends. With `close_after`,
/// the connection is closed (FIN) after each answer, keep-alive notwithstanding.
async fn serve(
    s: TcpStream,
    go: Arc<Semaphore>,
    hosts: Arc<Mutex<Vec<String>>>,
    close_after: bool,
    closed: Arc<Notify>,
) {
    serve_until_closed(s, go, hosts, close_after).await;
    closed.notify_one();
}

async fn serve_until_closed(
    mut s: TcpStream,
    go: Arc<Semaphore>,
    hosts: Arc<Mutex<Vec<String>>>,
    close_after: bool,
) {
    while let Some(head) = read_request(&mut s).await {
        let host = head
            .lines()
            .find_map(|l| l.strip_prefix("host:"))
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        hosts.lock().await.push(host);
        if head.starts_with("get /sse") {
            let mut first = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            first.extend(chunk(b"data: 1\n\n"));
            if s.write_all(&first).await.is_err() {
                return;
            }
            go.acquire().await.unwrap().forget();
            let mut rest = chunk(b"data: 2\n\n");
            rest.extend_from_slice(b"0\r\n\r\n");
            if s.write_all(&rest).await.is_err() {
                return;
            }
        } else {
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{JSON}",
                JSON.len()
            );
            if s.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
        if close_after {
            return;
        }
    }
}

struct Counted {
    up: Upstream,
    connections: Arc<AtomicUsize>,
    hosts: Arc<Mutex<Vec<String>>>,
    go: Arc<Semaphore>,
    /// Notified as the upstream sees a connection end.
    closed: Arc<Notify>,
}

async fn counted(close_after: bool) -> Counted {
    let connections = Arc::new(AtomicUsize::new(0));
    let hosts = Arc::new(Mutex::new(Vec::new()));
    let go = Arc::new(Semaphore::new(0));
    let closed = Arc::new(Notify::new());
    let (c, h, g, e) = (
        Arc::clone(&connections),
        Arc::clone(&hosts),
        Arc::clone(&go),
        Arc::clone(&closed),
    );
    let up = Upstream::raw(move |s| {
        c.fetch_add(1, Ordering::SeqCst);
        serve(
            s,
            Arc::clone(&g),
            Arc::clone(&h),
            close_after,
            Arc::clone(&e),
        )
    })
    .await;
    Counted {
        up,
        connections,
        hosts,
        go,
        closed,
    }
}

/// aloud with one route to `up`, in the off tier (the bytes as they come).
async fn aloud_for(up: &Counted) -> Aloud {
    Aloud::start(&route_config(
        up.up.addr,
        "openai",
        "progress = \"off\"",
        ONE_THREAD,
    ))
    .await
}

#[tokio::test]
async fn requests_one_after_another_share_one_upstream_connection() {
    let up = counted(false).await;
    let aloud = aloud_for(&up).await;
    for _ in 0..3 {
        let r = get(&aloud.url("/up/json")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(body_bytes(r).await, JSON);
    }
    // A stream's connection is busy until its end, then goes back to the pool.
    for _ in 0..2 {
        let r = get(&aloud.url("/up/sse")).await;
        assert_eq!(r.status(), 200);
        let mut body = r.into_body();
        use http_body_util::BodyExt;
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "data: 1\n\n");
        up.go.add_permits(1);
        let mut rest = Vec::new();
        while let Some(f) = body.frame().await {
            rest.extend_from_slice(f.unwrap().data_ref().map_or(&[][..], |d| &d[..]));
        }
        assert_eq!(rest, b"data: 2\n\n");
    }
    let r = get(&aloud.url("/up/json")).await;
    assert_eq!(body_bytes(r).await, JSON);
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "every request reused the one connection"
    );
    // Host is the upstream's own, never the client's.
    let want = up.up.addr.to_string();
    assert!(
        up.hosts.lock().await.iter().all(|h| *h == want),
        "{:?}",
        up.hosts.lock().await
    );
    aloud.stop().await;
}

#[tokio::test]
async fn concurrent_requests_open_connections_that_are_kept_for_later_ones() {
    let up = counted(false).await;
    let aloud = aloud_for(&up).await;
    // Two streams at once need two connections.
    let a = get(&aloud.url("/up/sse")).await;
    let b = get(&aloud.url("/up/sse")).await;
    up.go.add_permits(2);
    for r in [a, b] {
        let (bytes, clean) = read_to_end(r).await;
        assert!(clean);
        assert_eq!(bytes, b"data: 1\n\ndata: 2\n\n");
    }
    for _ in 0..4 {
        let r = get(&aloud.url("/up/json")).await;
        assert_eq!(body_bytes(r).await, JSON);
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
    aloud.stop().await;
}

#[tokio::test]
async fn an_upstream_that_closes_each_connection_after_its_answer_fails_no_request() {
    let up = counted(true).await;
    let aloud = aloud_for(&up).await;
    for i in 0..5 {
        let r = get(&aloud.url("/up/json")).await;
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(body_bytes(r).await, JSON);
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 5);
    aloud.stop().await;
}

#[tokio::test]
async fn stopping_closes_the_idle_connections_and_waits_for_none() {
    let up = counted(false).await;
    let aloud = aloud_for(&up).await;
    let r = get(&aloud.url("/up/json")).await;
    assert_eq!(body_bytes(r).await, JSON);
    // The pooled connection is idle: the stop neither waits for it (nor for the task that
    // closes unused ones, which sleeps 30 s between rounds) nor leaves it open.
    let stopping = std::time::Instant::now();
    aloud.stop().await;
    let took = stopping.elapsed();
    assert!(
        took < std::time::Duration::from_secs(10),
        "the stop took {took:?}"
    );
    up.closed.notified().await;
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
}

/// Opens `GET /up/sse` on a raw socket (no client task) and reads until the first event.
async fn open_stream(aloud: &Aloud) -> TcpStream {
    use tokio::io::AsyncReadExt;
    let mut s = TcpStream::connect(aloud.addr).await.unwrap();
    s.write_all(b"GET /up/sse HTTP/1.1\r\nhost: aloud\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(9).any(|w| w == b"data: 1\n\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "aloud closed before the first event");
        seen.extend_from_slice(&buf[..n]);
    }
    s
}

#[tokio::test]
async fn a_waiting_stream_holds_no_task_beyond_its_two_connections() {
    let up = counted(false).await;
    let aloud = aloud_for(&up).await;
    let r = get(&aloud.url("/up/json")).await;
    assert_eq!(body_bytes(r).await, JSON);
    let alive = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let _first = open_stream(&aloud).await;
    let before = alive();
    let _more = [open_stream(&aloud).await, open_stream(&aloud).await];
    // Each further waiting stream: aloud's client connection, aloud's upstream connection, and
    // the test upstream's connection. Not a task that waits to put the upstream connection back
    // in the pool (its body does that at its end): that one lived as long as the stream.
    let added = alive().checked_sub(before);
    assert_eq!(added, Some(2 * 3), "tasks for two more waiting streams");
    up.go.add_permits(3);
    drop(_more);
    aloud.stop().await;
}

/// Serves on each connection: `/json` whole; `/sse` its first event, then one more every 5 ms
/// until a write fails. Counts connections, and notifies `closed` as each one ends.
async fn endless(connections: Arc<AtomicUsize>, closed: Arc<Notify>) -> Upstream {
    Upstream::raw(move |mut s| {
        connections.fetch_add(1, Ordering::SeqCst);
        let closed = Arc::clone(&closed);
        async move {
            while let Some(head) = read_request(&mut s).await {
                if head.starts_with("get /sse") {
                    let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                    out.extend(chunk(b"data: 1\n\n"));
                    while s.write_all(&out).await.is_ok() {
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        out = chunk(b"data: more\n\n");
                    }
                    break;
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{JSON}",
                    JSON.len()
                );
                if s.write_all(reply.as_bytes()).await.is_err() {
                    break;
                }
            }
            closed.notify_one();
        }
    })
    .await
}

#[tokio::test]
async fn a_stream_the_client_leaves_does_not_go_back_to_the_pool() {
    let connections = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(Notify::new());
    let up = endless(Arc::clone(&connections), Arc::clone(&closed)).await;
    let aloud = Aloud::start(&route_config(
        up.addr,
        "openai",
        "progress = \"off\"",
        ONE_THREAD,
    ))
    .await;
    let left = open_stream(&aloud).await;
    drop(left);
    // aloud's next write fails; it drops the upstream's body mid-stream, which closes that
    // connection: it is not pooled, and later requests get a new one.
    tokio::time::timeout(std::time::Duration::from_secs(20), closed.notified())
        .await
        .expect("the upstream connection of the stream the client left was closed");
    for _ in 0..2 {
        let r = get(&aloud.url("/up/json")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(body_bytes(r).await, JSON);
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    aloud.stop().await;
}

#[tokio::test]
async fn connections_opened_together_spread_over_the_threads_each_with_its_own_upstream_connection()
{
    let up = counted(false).await;
    let aloud = Aloud::start(&route_config(
        up.up.addr,
        "openai",
        "progress = \"off\"",
        "workers = 2",
    ))
    .await;
    // Both serving threads are up once a request (one that reaches no upstream) is answered.
    assert_eq!(get(&aloud.url("/healthz")).await.status(), 200);
    // Eight keep-alive connections opened at once. The connects block this thread, which also
    // runs the first serving thread's accept loop (`Aloud` serves on the test's runtime), so
    // the second serving thread accepts them all, and hands half to the first
    // (`server/spread.rs`).
    let opened: Vec<std::net::TcpStream> = (0..8)
        .map(|_| std::net::TcpStream::connect(aloud.addr).unwrap())
        .collect();
    let mut clients = Vec::new();
    for c in opened {
        c.set_nonblocking(true).unwrap();
        clients.push(TcpStream::from_std(c).unwrap());
    }
    // One request at a time, twice over every connection: each thread opens one upstream
    // connection and reuses it. All eight on one thread would make one; one pool for both
    // threads would make one too.
    for round in 0..2 {
        for (i, c) in clients.iter_mut().enumerate() {
            let answer = exchange(c, "/up/json").await;
            assert!(
                answer.starts_with("HTTP/1.1 200"),
                "round {round}, connection {i}: {answer}"
            );
            assert!(
                answer.ends_with(JSON),
                "round {round}, connection {i}: {answer}"
            );
        }
    }
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        2,
        "one upstream connection per serving thread, both threads serving"
    );
    drop(clients);
    aloud.stop().await;
}

/// One keep-alive request on `c`, read to the end of its `Content-Length` body.
async fn exchange(c: &mut TcpStream, path: &str) -> String {
    use tokio::io::AsyncReadExt;
    let request = format!("GET {path} HTTP/1.1\r\nhost: aloud\r\n\r\n");
    c.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = c.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .expect("a content-length");
            if body.len() >= length {
                return text;
            }
        }
    }
}
