//! HTTP/1.1 on the wire for failure tests: a raw client that sees exactly how a response ended
//! (terminating chunk, full length, or a cut), a de-chunker, and an SSE parser. The mock
//! upstream that fails on cue is `scripted`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
