//! A raw mock upstream that fails in precise ways on cue (reset, early close, bad chunking,
//! invalid gzip, stalls, a short `Content-Length`, `101`), chosen per request by `x-mock`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::Upstream;
use super::wire::{DONE, E1, E2};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What a scripted upstream does after reading the request (chosen by its `x-mock` header).
///
/// Modes ending in `-on-go` send their head and [`E1`], then wait for [`Scripted::go`] before
/// failing (or going on), so the test knows the client already has the bytes before the
/// failure; `late-*` modes also wait for a go before their head, so a test can let aloud's
/// hold run out first. `sse-ok` and `json-ok` keep the connection for the next request.
pub const MODES: &[&str] = &[
    "sse-ok",
    "json-ok",
    "reset-before-head",
    "stall-before-head",
    "reset-on-go",
    "close-on-go",
    "bad-chunk-on-go",
    "bad-gzip",
    "bad-gzip-json",
    "cut-gzip-json",
    "big-gzip-json",
    "bad-xgzip-json",
    "empty-gzip-json",
    "late-gzip-sse",
    "late-big-429",
    "gemini-stop-then-reset",
    "stall-after-event",
    "tick",
    "short-length",
    "switch",
    "late-head-reset-on-go",
    "late-head-partial-reset-on-go",
    "late-reset",
    "sse-length-on-go",
    "partial-then-reset",
    "done-without-blank",
    "stream-error",
];

/// A raw mock upstream driven by the request's `x-mock` header.
pub struct Scripted {
    pub up: Upstream,
    go: Arc<Semaphore>,
}

impl Scripted {
    pub async fn start() -> Scripted {
        let go = Arc::new(Semaphore::new(0));
        let g = Arc::clone(&go);
        let up = Upstream::raw(move |s| script(s, Arc::clone(&g))).await;
        Scripted { up, go }
    }

    pub fn addr(&self) -> SocketAddr {
        self.up.addr
    }

    /// Lets one waiting `-on-go` connection fail now.
    pub fn go(&self) {
        self.go.add_permits(1);
    }
}

/// Reads a request head (and its `Content-Length` body); returns the head's lowercase text.
pub async fn read_request(s: &mut TcpStream) -> Option<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    let end = loop {
        if let Some(end) = find(&seen, b"\r\n\r\n") {
            break end;
        }
        let n = s.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        seen.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut have = seen.len() - end - 4;
    while have < length {
        let n = s.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        have += n;
    }
    Some(head)
}

/// Waits until the peer closes (or resets) the connection.
pub async fn wait_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// Closes with RST instead of FIN.
pub fn reset(s: TcpStream) {
    let _ = s.set_zero_linger();
    drop(s);
}

/// An SSE head, chunked.
pub const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

/// One HTTP chunk holding `data`.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// Serves requests on one connection; complete answers keep it open for the next request
/// (aloud pools upstream connections), failures end it.
async fn script(mut s: TcpStream, go: Arc<Semaphore>) {
    while let Some(head) = read_request(&mut s).await {
        match script_one(&mut s, &head, &go).await {
            Some(()) => continue,
            None => return,
        }
    }
}

/// Answers one request; `Some` when the connection may serve another. A reset sets zero
/// linger and returns `None`, so the caller's drop sends RST.
async fn script_one(s: &mut TcpStream, head: &str, go: &Semaphore) -> Option<()> {
    let mode = head
        .lines()
        .find_map(|l| l.strip_prefix("x-mock:"))
        .map_or("sse-ok", str::trim);
    let rst = |s: &mut TcpStream| {
        let _ = s.set_zero_linger();
        None
    };
    let mut first = SSE_HEAD.as_bytes().to_vec();
    first.extend(chunk(E1.as_bytes()));
    match mode {
        "sse-ok" => {
            let mut out = SSE_HEAD.as_bytes().to_vec();
            for e in [E1, E2, DONE] {
                out.extend(chunk(e.as_bytes()));
            }
            out.extend_from_slice(b"0\r\n\r\n");
            s.write_all(&out).await.ok()
        }
        "json-ok" => {
            let body = r#"{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}]}"#;
            let out = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(out.as_bytes()).await.ok()
        }
        "reset-before-head" => rst(s),
        "stall-before-head" => {
            wait_closed(s).await;
            None
        }
        "reset-on-go" | "close-on-go" | "bad-chunk-on-go" => {
            s.write_all(&first).await.ok()?;
            go.acquire().await.unwrap().forget();
            match mode {
                "reset-on-go" => return rst(s),
                "close-on-go" => {
                    let _ = s.shutdown().await;
                }
                _ => {
                    let _ = s.write_all(b"zz-not-a-chunk-size\r\nxyz\r\n").await;
                }
            }
            wait_closed(s).await;
            None
        }
        // Head only after a go (past aloud's hold): a whole, valid stream, gzip-compressed
        // although aloud asked for identity.
        "late-gzip-sse" => {
            use std::io::Write;
            go.acquire().await.unwrap().forget();
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            for ev in [E1, E2, DONE] {
                e.write_all(ev.as_bytes()).unwrap();
            }
            let gz = e.finish().unwrap();
            let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            out.extend(chunk(&gz));
            out.extend_from_slice(b"0\r\n\r\n");
            s.write_all(&out).await.ok()
        }
        // Head only after a go (past aloud's hold): a 429 whose error body is 256 KiB.
        "late-big-429" => {
            go.acquire().await.unwrap().forget();
            let body = format!(
                r#"{{"error":{{"message":"slow down","type":"rate_limit_error","pad":"{}"}}}}"#,
                "x".repeat(256 << 10)
            );
            let out = format!(
                "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(out.as_bytes()).await.ok()
        }
        // Head only after a go (past aloud's hold), then E1, then a reset on the next go.
        "late-head-reset-on-go" => {
            go.acquire().await.unwrap().forget();
            s.write_all(&first).await.ok()?;
            go.acquire().await.unwrap().forget();
            rst(s)
        }
        // The same with half an event before the reset.
        "late-head-partial-reset-on-go" => {
            go.acquire().await.unwrap().forget();
            s.write_all(&first).await.ok()?;
            s.write_all(&chunk(b"data: {\"id")).await.ok()?;
            go.acquire().await.unwrap().forget();
            rst(s)
        }
        // No head at all: a reset on go (past aloud's hold).
        // E1, half an event, then a reset.
        // A Gemini stream (no end marker) whose last chunk has its finish reason, then a reset
        // before the chunked terminator: cut, not done.
        "gemini-stop-then-reset" => {
            let mut out = SSE_HEAD.as_bytes().to_vec();
            out.extend(chunk(
                b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}]},\"finishReason\":\"STOP\"}]}\n\n",
            ));
            s.write_all(&out).await.ok()?;
            rst(s)
        }
        "partial-then-reset" => {
            s.write_all(&first).await.ok()?;
            s.write_all(&chunk(b"data: {\"choices\":[{\"del"))
                .await
                .ok()?;
            rst(s)
        }
        // Both framings: `Content-Length: 3` and a chunked body of E1 and DONE (chunked wins).
        "cl-and-te" => {
            let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            out.extend(chunk(E1.as_bytes()));
            out.extend(chunk(DONE.as_bytes()));
            out.extend_from_slice(b"0\r\n\r\n");
            s.write_all(&out).await.ok()
        }
        // An HTTP/1.0 answer (no length: its end is the close): E1 and DONE then a close, or E1
        // then a reset.
        "http10-ok" | "http10-then-reset" => {
            let mut out = b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\n".to_vec();
            out.extend_from_slice(E1.as_bytes());
            if mode == "http10-ok" {
                out.extend_from_slice(DONE.as_bytes());
                s.write_all(&out).await.ok()?;
                let _ = s.shutdown().await;
                return None;
            }
            s.write_all(&out).await.ok()?;
            rst(s)
        }
        // E1, E2 and DONE in one write, then a close without the terminating chunk.
        "events-then-close" => {
            let mut out = first.clone();
            out.extend(chunk(E2.as_bytes()));
            out.extend(chunk(DONE.as_bytes()));
            s.write_all(&out).await.ok()?;
            let _ = s.shutdown().await;
            wait_closed(s).await;
            None
        }
        // E1, then a clean end: no finish reason, no `[DONE]` (a server that stopped early).
        "no-done" => {
            let mut out = first.clone();
            out.extend_from_slice(b"0\r\n\r\n");
            s.write_all(&out).await.ok()
        }
        // E1 and a last event without its blank line, then a clean end.
        "done-without-blank" => {
            let mut out = first.clone();
            out.extend(chunk(b"data: [DONE]\n"));
            out.extend_from_slice(b"0\r\n\r\n");
            s.write_all(&out).await.ok()
        }
        // E1, the stream's own error event, [DONE], a clean end.
        "stream-error" => {
            let mut out = first.clone();
            out.extend(chunk(
                b"data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n",
            ));
            out.extend(chunk(DONE.as_bytes()));
            out.extend_from_slice(b"0\r\n\r\n");
            s.write_all(&out).await.ok()
        }
        "late-reset" => {
            go.acquire().await.unwrap().forget();
            rst(s)
        }
        // An SSE body framed by Content-Length: E1, then (on go) E2 and DONE.
        "sse-length-on-go" => {
            let length = E1.len() + E2.len() + DONE.len();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {length}\r\n\r\n{E1}"
            );
            s.write_all(head.as_bytes()).await.ok()?;
            go.acquire().await.unwrap().forget();
            s.write_all(format!("{E2}{DONE}").as_bytes()).await.ok()
        }
        "bad-gzip" => {
            let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            out.extend(chunk(
                b"this is not gzip at all, whatever the header says\n\n",
            ));
            out.extend_from_slice(b"0\r\n\r\n");
            // Well framed at the HTTP level: the connection may serve another request.
            s.write_all(&out).await.ok()
        }
        "bad-gzip-json" | "cut-gzip-json" | "big-gzip-json" | "bad-xgzip-json"
        | "empty-gzip-json" => {
            // A whole answer declared gzip: not gzip at all, real gzip without its end, or
            // a few KiB of gzip that decode to 1 MiB.
            let gzip = |json: &[u8]| {
                use std::io::Write;
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                e.write_all(json).unwrap();
                e.finish().unwrap()
            };
            let body = match mode {
                "bad-gzip-json" | "bad-xgzip-json" => {
                    b"this is not gzip at all, whatever the header says".to_vec()
                }
                "empty-gzip-json" => Vec::new(),
                "cut-gzip-json" => {
                    let mut gz = gzip(br#"{"choices":[{"message":{"content":"Hello"}}]}"#);
                    gz.truncate(gz.len() - 12);
                    gz
                }
                _ => gzip(format!(r#"{{"pad":"{}"}}"#, " ".repeat(1 << 20)).as_bytes()),
            };
            let encoding = if mode == "bad-xgzip-json" {
                "x-gzip"
            } else {
                "gzip"
            };
            let mut out = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: {encoding}\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            out.extend(body);
            s.write_all(&out).await.ok()
        }
        "stall-after-event" => {
            s.write_all(&first).await.ok()?;
            wait_closed(s).await;
            None
        }
        "tick" => {
            s.write_all(&first).await.ok()?;
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tick.tick().await;
                s.write_all(&chunk(E2.as_bytes())).await.ok()?;
            }
        }
        "short-length" => {
            let mut out =
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n"
                    .to_vec();
            out.extend_from_slice(&[b' '; 100]);
            let _ = s.write_all(&out).await;
            let _ = s.shutdown().await;
            wait_closed(s).await;
            None
        }
        "switch" => {
            let _ = s
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n")
                .await;
            wait_closed(s).await;
            None
        }
        other => panic!("unknown x-mock mode {other:?}; known: {MODES:?}"),
    }
}
