//! HTTP/2 to the upstream by ALPN: negotiated when offered (HTTP/1.1 otherwise), SSE bytes
//! passed unchanged chunk by chunk, a leaving client resets the upstream stream, the idle and
//! total timeouts cut the stream, and a server's stream limit opens another connection instead
//! of queueing. Against a local TLS upstream with a CA the test makes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::certs::TestCa;
use support::https_upstream::{ConnId, HttpsUpstream};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

const H2: &[&[u8]] = &[b"h2", b"http/1.1"];
const H1: &[&[u8]] = &[b"http/1.1"];

fn config(ca: &TestCa, up: &HttpsUpstream, extra: &str) -> String {
    format!(
        "[[routes]]\nname = \"up\"\nprefix = \"/up\"\nupstream = \"https://{}\"\napi = \"openai\"\nprogress = \"off\"\ncapture = \"off\"\nca_file = {:?}\n{extra}\n",
        up.addr,
        ca.ca_file.to_str().unwrap()
    )
}

/// An upstream whose streamed bodies the test feeds: each request's sender arrives on `senders`.
async fn streaming(
    ca: &TestCa,
    alpn: &[&[u8]],
) -> (HttpsUpstream, mpsc::UnboundedReceiver<mpsc::Sender<Bytes>>) {
    let leaf = ca.issue("upstream", &["127.0.0.1"], false);
    let (tx, rx) = mpsc::unbounded_channel();
    let up = HttpsUpstream::start(
        TestCa::server_config(&leaf, alpn, None),
        None,
        move |_req| {
            let tx = tx.clone();
            async move {
                let (body_tx, body) = channel_body();
                tx.send(body_tx).unwrap();
                response(200, &[("content-type", "text/event-stream")], body)
            }
        },
    )
    .await;
    (up, rx)
}

/// Chunks that a re-framing or buffering proxy would change: a UTF-8 character split across
/// chunks, CRLF line ends, a comment, an event split mid-line, and one larger than a window.
fn sse_chunks() -> Vec<Bytes> {
    let big = format!("data: {}\n\n", "x".repeat(100_000));
    vec![
        Bytes::from_static(b": upstream comment\r\n\r\n"),
        Bytes::from_static(b"data: {\"t\":\"caf\xc3"),
        Bytes::from_static(b"\xa9\"}\r\n\r\nda"),
        Bytes::from_static(b"ta: two\n\n"),
        Bytes::from(big),
        Bytes::from_static(b"data: [DONE]\n\n"),
    ]
}

async fn fidelity(alpn: &[&[u8]], version: Version) {
    let ca = TestCa::new("fidelity-ca");
    let (up, mut senders) = streaming(&ca, alpn).await;
    let aloud = Aloud::start(&config(&ca, &up, "")).await;
    let resp = post(&aloud.url("/up/v1/chat/completions"), &[], "{}").await;
    assert_eq!(resp.status(), 200);
    let tx = senders.recv().await.unwrap();
    let mut body = resp.into_body();
    let mut received = Vec::new();
    let mut sent = Vec::new();
    for chunk in sse_chunks() {
        sent.extend_from_slice(&chunk);
        tx.send(chunk).await.unwrap();
        // The next chunk goes only once this one came through: nothing waits for more.
        while received.len() < sent.len() {
            let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
                .await
                .expect("a chunk was held back")
                .unwrap()
                .unwrap();
            if let Some(d) = frame.data_ref() {
                received.extend_from_slice(d);
            }
        }
        assert_eq!(received, sent);
    }
    drop(tx);
    assert!(body.frame().await.is_none(), "the body ends cleanly");
    assert_eq!(up.seen.versions(), [version]);
}

#[tokio::test]
async fn h2_is_negotiated_and_sse_bytes_pass_unchanged_chunk_by_chunk() {
    fidelity(H2, Version::HTTP_2).await;
}

#[tokio::test]
async fn an_http1_only_upstream_is_spoken_http1_with_the_same_bytes() {
    fidelity(H1, Version::HTTP_11).await;
}

#[tokio::test]
async fn a_client_leaving_resets_the_upstream_stream_not_the_connection() {
    let ca = TestCa::new("cancel-ca");
    let (up, mut senders) = streaming(&ca, H2).await;
    let aloud = Aloud::start(&config(&ca, &up, "")).await;
    let mut client = tokio::net::TcpStream::connect(aloud.addr).await.unwrap();
    client
        .write_all(
            b"POST /up/v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}",
        )
        .await
        .unwrap();
    let tx = senders.recv().await.unwrap();
    tx.send(Bytes::from_static(b"data: one\n\n")).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("data: one") {
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    drop(client);
    // The upstream's body is dropped when its stream is reset.
    tokio::time::timeout(Duration::from_secs(10), tx.closed())
        .await
        .expect("the upstream stream was not reset after the client left");
    // The connection itself lives on: the next request reuses it.
    let resp = post(&aloud.url("/up/v1/chat/completions"), &[], "{}").await;
    let tx = senders.recv().await.unwrap();
    drop(tx);
    let (_, clean) = read_to_end(resp).await;
    assert!(clean);
    assert_eq!(up.seen.connections(), 1);
    assert_eq!(up.seen.versions(), [Version::HTTP_2, Version::HTTP_2]);
}

/// Sends one chunk and then nothing; the test checks the client's body is cut and the
/// upstream's stream reset.
async fn stalled_stream_is_cut(limits: &str) {
    let ca = TestCa::new("stall-ca");
    let (up, mut senders) = streaming(&ca, H2).await;
    let aloud = Aloud::start(&config(&ca, &up, limits)).await;
    let resp = post(&aloud.url("/up/v1/chat/completions"), &[], "{}").await;
    let tx = senders.recv().await.unwrap();
    tx.send(Bytes::from_static(b"data: one\n\n")).await.unwrap();
    let (bytes, clean) = tokio::time::timeout(Duration::from_secs(10), read_to_end(resp))
        .await
        .expect("the timeout did not cut the stream");
    assert_eq!(bytes, b"data: one\n\n");
    assert!(!clean, "a cut stream must not end like a complete one");
    tokio::time::timeout(Duration::from_secs(10), tx.closed())
        .await
        .expect("the upstream stream was not reset");
    assert_eq!(up.seen.versions(), [Version::HTTP_2]);
}

#[tokio::test]
async fn the_idle_timeout_cuts_an_h2_stream() {
    stalled_stream_is_cut("idle_timeout = \"300ms\"").await;
}

#[tokio::test]
async fn the_total_timeout_cuts_an_h2_stream() {
    stalled_stream_is_cut("total_timeout = \"400ms\"\nidle_timeout = \"30s\"").await;
}

#[tokio::test]
async fn past_the_stream_limit_requests_open_another_connection() {
    let ca = TestCa::new("limit-ca");
    let leaf = ca.issue("upstream", &["127.0.0.1"], false);
    let entered = Arc::new((AtomicUsize::new(0), Notify::new()));
    let release = Arc::new(Notify::new());
    let released = Arc::new(Mutex::new(false));
    let on = Arc::new(Mutex::new(Vec::new()));
    let (e2, r2, d2, o2) = (
        Arc::clone(&entered),
        Arc::clone(&release),
        Arc::clone(&released),
        Arc::clone(&on),
    );
    let up = HttpsUpstream::start(
        TestCa::server_config(&leaf, H2, None),
        Some(2),
        move |req: Request<Incoming>| {
            let (entered, release, released) = (Arc::clone(&e2), Arc::clone(&r2), Arc::clone(&d2));
            let on = Arc::clone(&o2);
            async move {
                if req.uri().path().ends_with("/slow") {
                    on.lock()
                        .unwrap()
                        .push(*req.extensions().get::<ConnId>().unwrap());
                    entered.0.fetch_add(1, Ordering::SeqCst);
                    entered.1.notify_waiters();
                    loop {
                        let notified = release.notified();
                        if *released.lock().unwrap() {
                            break;
                        }
                        notified.await;
                    }
                }
                response(200, &[], full("ok"))
            }
        },
    )
    .await;
    let aloud = Aloud::start(&config(&ca, &up, "")).await;
    // One request first: the connection tells aloud its limit of 2 streams.
    assert_eq!(get(&aloud.url("/up/warm")).await.status(), 200);

    let slow: Vec<_> = (0..5)
        .map(|_| {
            let url = aloud.url("/up/slow");
            #[expect(clippy::disallowed_methods, reason = "joined below")]
            tokio::spawn(async move { get(&url).await.status() })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let more = entered.1.notified();
        let n = entered.0.load(Ordering::SeqCst);
        if n == 5 {
            break;
        }
        assert!(
            tokio::time::timeout_at(deadline, more).await.is_ok(),
            "only {n} of 5 requests reached the upstream at once: the rest queued"
        );
    }
    *released.lock().unwrap() = true;
    release.notify_waiters();
    for s in slow {
        assert_eq!(s.await.unwrap(), 200);
    }
    // The limit learnt from the first connection is used: a connection carried two of the
    // slow requests at once (one per connection would mean the limit was never read).
    let on = on.lock().unwrap().clone();
    let busiest = on
        .iter()
        .map(|c| on.iter().filter(|d| *d == c).count())
        .max()
        .unwrap();
    assert_eq!(busiest, 2, "requests per connection: {on:?}");
    assert!(up.seen.versions().iter().all(|v| *v == Version::HTTP_2));
}
