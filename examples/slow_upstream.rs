//! A slow "reasoning model" upstream for the heartbeat scale benchmark (`benches/heartbeats.sh`).
//!
//! Any `POST` (or `GET`) whose path ends in `/chat/completions` or is `/slow` answers at once
//! with `200 text/event-stream` and
//!
//! 1. one chat-completion role chunk
//!    `data: {"id":..,"object":"chat.completion.chunk",..,"delta":{"role":"assistant"},..,"t":NS}`,
//! 2. silence for `wait_ms` (the model "thinks"; aloud should fill it with heartbeats),
//! 3. `chunks` content chunks `gap_ms` apart, then `data: [DONE]`.
//!
//! `t` in each chunk is the send time in ns since the UNIX epoch (same machine, same clock as the
//! load client). `wait_ms`, `chunks` and `gap_ms` come from the query string
//! (`/v1/chat/completions?wait_ms=20000&chunks=3&gap_ms=10`), else from `--wait-ms`, `--chunks`,
//! `--gap-ms`. Each body is a small state machine with one timer: thousands of concurrent
//! streams cost a few KiB each. Request bodies are read to the end before answering.
//!
//! Prints `listening on ADDR` on stdout once bound. Flags: `--listen ADDR` (127.0.0.1:0),
//! `--threads N` (1: a current-thread runtime).
//!
//! Run: `cargo run --release --example slow_upstream -- --listen 127.0.0.1:9200`
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

/// Caps so a typo cannot tie the upstream up for hours.
const MAX_WAIT_MS: u64 = 600_000;
const MAX_CHUNKS: u64 = 10_000;
const MAX_GAP_MS: u64 = 10_000;

const WORDS: [&str; 8] = [
    "The",
    " answer",
    " is",
    " forty",
    "-two",
    ",",
    " as",
    " expected.",
];

type RespBody = BoxBody<Bytes, Infallible>;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[derive(Clone, Copy)]
struct Plan {
    wait: Duration,
    chunks: u64,
    gap: Duration,
}

/// Where a slow stream is.
enum Step {
    Role,
    Wait,
    Content(u64),
    Done,
    End,
}

struct SlowBody {
    plan: Plan,
    step: Step,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl SlowBody {
    fn chunk(content: Option<&str>, finish: bool) -> Bytes {
        let delta = match content {
            None => r#"{"role":"assistant","content":""}"#.to_owned(),
            Some(c) => format!(r#"{{"content":"{c}"}}"#),
        };
        let finish = if finish { r#""stop""# } else { "null" };
        Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-slow0000000000000000000001\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench-slow-1\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}],\"t\":{}}}\n\n",
            now_ns()
        ))
    }
}

impl Body for SlowBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if let Some(sleep) = this.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        let frame = match this.step {
            Step::Role => {
                this.step = Step::Wait;
                this.sleep = Some(Box::pin(tokio::time::sleep(this.plan.wait)));
                Self::chunk(None, false)
            }
            Step::Wait | Step::Content(_) => {
                let i = match this.step {
                    Step::Content(i) => i,
                    _ => 0,
                };
                if i >= this.plan.chunks {
                    this.step = Step::End;
                    Bytes::from_static(b"data: [DONE]\n\n")
                } else {
                    let word = WORDS[(i as usize) % WORDS.len()];
                    let last = i + 1 == this.plan.chunks;
                    this.step = if last {
                        Step::Done
                    } else {
                        Step::Content(i + 1)
                    };
                    if !this.plan.gap.is_zero() {
                        this.sleep = Some(Box::pin(tokio::time::sleep(this.plan.gap)));
                    }
                    Self::chunk(Some(word), last)
                }
            }
            Step::Done => {
                this.step = Step::End;
                Bytes::from_static(b"data: [DONE]\n\n")
            }
            Step::End => return Poll::Ready(None),
        };
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.step, Step::End)
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

async fn handle(req: Request<Incoming>, defaults: Plan) -> Result<Response<RespBody>, Infallible> {
    let (parts, body) = req.into_parts();
    if body.collect().await.is_err() {
        return Ok(plain(StatusCode::BAD_REQUEST, "bad request body\n"));
    }
    let path = parts.uri.path();
    let slow = path == "/slow" || path.ends_with("/chat/completions");
    if !slow {
        return Ok(plain(StatusCode::NOT_FOUND, "not found\n"));
    }
    if !matches!(parts.method, Method::GET | Method::POST) {
        return Ok(plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n",
        ));
    }
    let query = parts.uri.query().unwrap_or("");
    let plan = Plan {
        wait: query_u64(query, "wait_ms")
            .map_or(defaults.wait, Duration::from_millis)
            .min(Duration::from_millis(MAX_WAIT_MS)),
        chunks: query_u64(query, "chunks")
            .unwrap_or(defaults.chunks)
            .min(MAX_CHUNKS),
        gap: query_u64(query, "gap_ms")
            .map_or(defaults.gap, Duration::from_millis)
            .min(Duration::from_millis(MAX_GAP_MS)),
    };
    let body = SlowBody {
        plan,
        step: Step::Role,
        sleep: None,
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
    Ok(resp)
}

struct Args {
    listen: SocketAddr,
    threads: usize,
    plan: Plan,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        threads: 1,
        plan: Plan {
            wait: Duration::from_millis(20_000),
            chunks: 3,
            gap: Duration::from_millis(10),
        },
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let num = |s: String, name: &str| s.parse::<u64>().map_err(|e| format!("{name}: {e}"));
        match a.as_str() {
            "--listen" => {
                args.listen = val("--listen")?
                    .parse()
                    .map_err(|e| format!("--listen: {e}"))?
            }
            "--threads" => args.threads = num(val("--threads")?, "--threads")? as usize,
            "--wait-ms" => {
                args.plan.wait =
                    Duration::from_millis(num(val("--wait-ms")?, "--wait-ms")?.min(MAX_WAIT_MS))
            }
            "--chunks" => args.plan.chunks = num(val("--chunks")?, "--chunks")?.min(MAX_CHUNKS),
            "--gap-ms" => {
                args.plan.gap =
                    Duration::from_millis(num(val("--gap-ms")?, "--gap-ms")?.min(MAX_GAP_MS))
            }
            "-h" | "--help" => {
                println!(
                    "usage: slow_upstream [--listen ADDR (127.0.0.1:0)] [--threads N (1)] \
                     [--wait-ms MS (20000)] [--chunks N (3)] [--gap-ms MS (10)]"
                );
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

async fn serve(listen: SocketAddr, plan: Plan) -> std::io::Result<()> {
    // A large backlog: the load ramps thousands of connections through aloud to here.
    let socket = if listen.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    let listener: TcpListener = socket.listen(4096)?;
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
            let conn = http1::Builder::new().serve_connection(
                TokioIo::new(stream),
                service_fn(move |req| handle(req, plan)),
            );
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
            eprintln!("slow_upstream: {e}");
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
    let result = runtime.and_then(|rt| rt.block_on(serve(args.listen, args.plan)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slow_upstream: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
