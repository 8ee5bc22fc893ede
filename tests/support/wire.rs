//! HTTP/1.1 on the wire for failure tests: a raw client that sees exactly how a response ended
//! (terminating chunk, full length, or a cut), a scripted mock upstream that fails in precise
//! ways on cue, and an SSE parser.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::Upstream;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// How long a raw read may wait before the test calls the response hung.
pub const HUNG: Duration = Duration::from_secs(20);

/// Two OpenAI chat chunks, as a mock upstream sends them.
pub const E1: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n";
pub const E2: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":null}]}\n\n";
pub const DONE: &str = "data: [DONE]\n\n";

/// A streaming chat request body.
pub const CHAT_STREAM: &str =
    r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

/// How a response's body ended on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The terminating chunk arrived, or every byte a `Content-Length` announced.
    Clean,
    /// The connection closed (or reset) before the body's framing said it was complete.
    Cut,
    /// No framing at all (close-delimited): a cut cannot be told from an end.
    CloseDelimited,
}

/// A response as the raw client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body after de-chunking (what arrived, whole or not).
    pub body: Vec<u8>,
    pub end: End,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The framing of a response body, from its head.
#[derive(Clone, Copy, Debug)]
enum Framing {
    Chunked,
    Length(usize),
    Close,
}

/// A raw client connection: one request written, the response read by hand.
pub struct Conn {
    s: TcpStream,
    raw: Vec<u8>,
    eof: bool,
    status: u16,
    headers: Vec<(String, String)>,
    framing: Framing,
}

impl Conn {
    /// Connects, writes `method path` with `headers` and a `Content-Length` body, and reads
    /// the response head.
    pub async fn request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Conn {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        Self::raw_request(addr, &bytes).await
    }

    /// A streaming chat POST to `path` with `Aloud-Progress: tier` and extra headers.
    pub async fn chat(addr: SocketAddr, path: &str, tier: &str, extra: &[(&str, &str)]) -> Conn {
        let mut h = vec![
            ("Content-Type", "application/json"),
            ("Aloud-Progress", tier),
        ];
        h.extend_from_slice(extra);
        Self::request(addr, "POST", path, &h, CHAT_STREAM.as_bytes()).await
    }

    /// Writes `request` as is (errors ignored: the server may answer early) and reads the head.
    pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> Conn {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(request).await;
        let mut c = Conn {
            s,
            raw: Vec::new(),
            eof: false,
            status: 0,
            headers: Vec::new(),
            framing: Framing::Close,
        };
        c.read_head().await;
        c
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    /// Reads more bytes; false at EOF or on an error (a reset counts as the end).
    async fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut buf = [0u8; 16 * 1024];
        match tokio::time::timeout(HUNG, self.s.read(&mut buf)).await {
            Err(_) => panic!(
                "the response neither ended nor was cut within {HUNG:?}; so far:\n{}",
                String::from_utf8_lossy(&self.raw)
            ),
            Ok(Ok(0) | Err(_)) => {
                self.eof = true;
                false
            }
            Ok(Ok(n)) => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
        }
    }

    async fn read_head(&mut self) {
        loop {
            // Interim 1xx heads (100 Continue) are skipped, as a client does.
            if let Some(end) = find(&self.raw, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.raw[..end]).into_owned();
                let mut lines = head.split("\r\n");
                let status_line = lines.next().unwrap_or("");
                let status: u16 = status_line
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("not an HTTP status line: {status_line:?}"));
                self.raw.drain(..end + 4);
                if status == 100 {
                    continue;
                }
                self.status = status;
                self.headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let chunked = header_in(&self.headers, "transfer-encoding")
                    .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
                let length = header_in(&self.headers, "content-length").map(|v| {
                    v.parse::<usize>()
                        .unwrap_or_else(|_| panic!("bad content-length {v:?}"))
                });
                self.framing = match (chunked, length) {
                    (true, _) => Framing::Chunked,
                    (false, Some(n)) => Framing::Length(n),
                    (false, None) if status == 204 || status == 304 => Framing::Length(0),
                    (false, None) => Framing::Close,
                };
                return;
            }
            if !self.fill().await {
                panic!(
                    "the connection ended before a response head:\n{}",
                    String::from_utf8_lossy(&self.raw)
                );
            }
        }
    }

    /// The body so far, and whether its framing says it is complete.
    fn decoded(&self) -> (Vec<u8>, bool) {
        match self.framing {
            Framing::Chunked => dechunk(&self.raw),
            Framing::Length(n) => (
                self.raw[..self.raw.len().min(n)].to_vec(),
                self.raw.len() >= n,
            ),
            Framing::Close => (self.raw.clone(), false),
        }
    }

    /// Reads until the decoded body satisfies `done`; panics if the response ends first.
    pub async fn until(&mut self, done: impl Fn(&str) -> bool) -> String {
        loop {
            let (body, complete) = self.decoded();
            let text = String::from_utf8_lossy(&body).into_owned();
            if done(&text) {
                return text;
            }
            if complete || !self.fill().await {
                panic!("the response ended before the expected bytes; body:\n{text}");
            }
        }
    }

    /// Reads until the body contains `needle`.
    pub async fn until_contains(&mut self, needle: &str) -> String {
        self.until(|t| t.contains(needle)).await
    }

    /// Reads to the end of the response: complete by its framing, or the connection closed.
    pub async fn finish(mut self) -> Reply {
        loop {
            let (_, complete) = self.decoded();
            if complete || !self.fill().await {
                break;
            }
        }
        let (body, complete) = self.decoded();
        let end = match (self.framing, complete) {
            (_, true) => End::Clean,
            (Framing::Close, false) => End::CloseDelimited,
            (_, false) => End::Cut,
        };
        Reply {
            status: self.status,
            headers: self.headers,
            body,
            end,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// De-chunks `raw`: the data so far, and whether the terminating chunk (and trailers) arrived.
/// Malformed chunking counts as incomplete.
pub fn dechunk(raw: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let Some(line_end) = find(&raw[at..], b"\r\n") else {
            return (out, false);
        };
        let size_text = String::from_utf8_lossy(&raw[at..at + line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return (out, false);
        };
        at += line_end + 2;
        if size == 0 {
            // Trailers, then the blank line.
            let rest = &raw[at..];
            return (
                out,
                rest.starts_with(b"\r\n") || find(rest, b"\r\n\r\n").is_some(),
            );
        }
        if raw.len() < at + size + 2 {
            out.extend_from_slice(&raw[at..raw.len().min(at + size)]);
            return (out, false);
        }
        out.extend_from_slice(&raw[at..at + size]);
        at += size + 2;
    }
}

/// One SSE event: its name (`None` for the default `message`) and data lines joined by `\n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {:.200}", self.data))
    }
}

/// Parses an SSE stream as the WHATWG spec does: CRLF, CR or LF line ends, comments skipped,
/// `data:` lines joined, an event dispatched at a blank line when it has data.
pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    let mut events = Vec::new();
    let mut name: Option<String> = None;
    let mut data: Vec<&str> = Vec::new();
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    for line in normalized.split('\n') {
        if line.is_empty() {
            if !data.is_empty() {
                events.push(SseEvent {
                    event: name.take(),
                    data: data.join("\n"),
                });
            }
            name = None;
            data.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    events
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
    "stall-after-event",
    "tick",
    "short-length",
    "switch",
    "late-head-reset-on-go",
    "late-reset",
    "sse-length-on-go",
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
        // Head only after a go (past aloud's hold), then E1, then a reset on the next go.
        "late-head-reset-on-go" => {
            go.acquire().await.unwrap().forget();
            s.write_all(&first).await.ok()?;
            go.acquire().await.unwrap().forget();
            rst(s)
        }
        // No head at all: a reset on go (past aloud's hold).
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
            let _ = s.write_all(&out).await;
            wait_closed(s).await;
            None
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
