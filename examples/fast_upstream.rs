//! A fast local upstream for benchmarking aloud (and the nginx stand-in) against.
//!
//! Endpoints:
//! - `GET|POST /json`: a small (~300 byte) JSON body shaped like a chat completion.
//! - `GET /stream?chunks=N&gap_us=U`: N small SSE events
//!   `data: {"i":k,"t":<send time, ns since the UNIX epoch>}\n\n`, each its own body frame and
//!   flushed on its own, U microseconds apart (0: back to back, but still one flush each).
//!
//! Prints `listening on ADDR` on stdout once bound. Flags: `--listen ADDR` (default
//! 127.0.0.1:0), `--threads N` (default 1: a current-thread runtime, cheapest per request).
//!
//! Run: `cargo run --release --example fast_upstream -- --listen 127.0.0.1:9100`
#![allow(clippy::disallowed_methods)] // a standalone bench tool: plain tokio::spawn is fine here

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const COMPLETION: &str = r#"{"id":"chatcmpl-bench0000000000000000000001","object":"chat.completion","created":1700000000,"model":"bench-fast-1","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! This is a short canned reply from the benchmark upstream."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":14,"total_tokens":26}}"#;

/// Caps a single stream so a typo cannot tie the upstream up for hours.
const MAX_CHUNKS: u64 = 10_000_000;
const MAX_GAP_US: u64 = 10_000_000;

type RespBody = BoxBody<Bytes, Infallible>;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The SSE body: produces each event when hyper asks for it, stamped with the time it is handed
/// over, and returns `Pending` between events so hyper flushes every event separately.
struct SseBody {
    next: u64,
    chunks: u64,
    gap: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether the next poll must first give hyper a chance to flush (gap 0 only).
    yield_first: bool,
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.next >= this.chunks {
            return Poll::Ready(None);
        }
        if let Some(sleep) = this.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        } else if this.yield_first {
            this.yield_first = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let event = format!("data: {{\"i\":{},\"t\":{}}}\n\n", this.next, now_ns());
        this.next += 1;
        if this.next < this.chunks {
            if this.gap.is_zero() {
                this.yield_first = true;
            } else {
                this.sleep = Some(Box::pin(tokio::time::sleep(this.gap)));
            }
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(event)))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.chunks
    }
}

fn query_u64(query: &str, key: &str) -> Option<u64> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        if k == key { v.parse().ok() } else { None }
    })
}

fn plain(status: StatusCode, msg: &'static str) -> Response<RespBody> {
    let mut resp = Response::new(Full::new(Bytes::from_static(msg.as_bytes())).boxed());
    *resp.status_mut() = status;
    resp
}

async fn handle(req: Request<Incoming>) -> Result<Response<RespBody>, Infallible> {
    let (parts, body) = req.into_parts();
    // Read the request body to the end so the connection can be kept alive.
    if body.collect().await.is_err() {
        return Ok(plain(StatusCode::BAD_REQUEST, "bad request body\n"));
    }
    let path = parts.uri.path();
    let resp = match (&parts.method, path) {
        (&Method::GET | &Method::POST, "/json") => {
            let mut resp =
                Response::new(Full::new(Bytes::from_static(COMPLETION.as_bytes())).boxed());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            resp
        }
        (&Method::GET, "/stream") => {
            let query = parts.uri.query().unwrap_or("");
            let chunks = query_u64(query, "chunks").unwrap_or(100).min(MAX_CHUNKS);
            let gap_us = query_u64(query, "gap_us").unwrap_or(0).min(MAX_GAP_US);
            let body = SseBody {
                next: 0,
                chunks,
                gap: Duration::from_micros(gap_us),
                sleep: None,
                yield_first: false,
            };
            let mut resp = Response::new(body.boxed());
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/event-stream"),
            );
            h.insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-cache"),
            );
            resp
        }
        (_, "/json" | "/stream") => plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(resp)
}

struct Args {
    listen: SocketAddr,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        threads: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--listen" => {
                args.listen = val("--listen")?
                    .parse()
                    .map_err(|e| format!("--listen: {e}"))?
            }
            "--threads" => {
                args.threads = val("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?
            }
            "-h" | "--help" => {
                println!("usage: fast_upstream [--listen ADDR (127.0.0.1:0)] [--threads N (1)]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    Ok(args)
}

async fn serve(listen: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
    }
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            // Out of file descriptors and the like: keep serving the connections we have.
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let conn =
                http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(handle));
            if let Err(e) = conn.await
                && !e.is_incomplete_message()
            {
                eprintln!("connection: {e}");
            }
        });
    }
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fast_upstream: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let result = runtime.and_then(|rt| rt.block_on(serve(args.listen)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fast_upstream: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
