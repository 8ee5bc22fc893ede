//! aloud's own heap per waiting request, counted by a global allocator in this process.
//!
//! ```text
//! state_size --upstream 127.0.0.1:PORT --load-bin target/release/examples/heartbeat_load \
//!     [--streams N (1000)] [--heartbeat-ms MS (1000)] [--ramp R (500)] [--hold-s S (10)] \
//!     [--no-baseline] [--no-keep] \
//!     [--load-core C --pin 1]
//! ```
//!
//! Method (the counting allocator lives only in this example, never in the library):
//!
//! 1. A plain hyper proxy (server connection + `hyper_util` legacy client, the body relayed
//!    untouched) and then aloud itself (`aloud::server::serve`, the config `benches/heartbeats.sh`
//!    uses) run in this process, each on a loopback port, in front of `slow_upstream` (a separate
//!    process: its allocations are not counted).
//! 2. The client is `heartbeat_load` in a separate process (its allocations are not counted
//!    either). For each proxy: a warm-up of a few short streams, then the live heap is read
//!    (bytes allocated minus bytes freed); then N streams whose upstream stays silent are
//!    opened, and once every stream has its head and one and a half heartbeats have passed
//!    (`heartbeat_load` prints `plateau`), the live heap is read again, and once more late in
//!    the wait (`--hold-s`, default 10 s after the plateau: `heartbeat_load` prints `late`).
//! 3. (plateau − idle) / open streams = heap per waiting request in that proxy. aloud's figure
//!    minus the plain proxy's = what aloud itself keeps per waiting request (relay, watcher,
//!    progress state, interpreter, hub entry, request tap, ...), beyond the connection machinery
//!    any hyper proxy needs (socket buffers in the kernel are in neither: see the RSS figure).
//!
//! Prints `key=value` lines: streams, idle_kib, plateau_kib, per_stream_bytes,
//! baseline_per_stream_bytes, own_per_stream_bytes, allocs_per_stream, and
//! growth_bytes_per_stream_s: how much each waiting stream's heap grows per second of waiting.
#![expect(
    clippy::disallowed_methods,
    reason = "a standalone bench tool: plain tokio::spawn is fine here"
)]

use std::alloc::System;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aloud::config::{Config, MapEnv};
use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Either, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio::net::TcpListener;

/// Counts every allocation of the whole process (the `stats_alloc` dev-dependency: the crate
/// forbids unsafe code, so the `GlobalAlloc` impl comes from there).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Live heap bytes and live allocations right now. (`stats_alloc` already counts a realloc's
/// change of size in `bytes_allocated` or `bytes_deallocated`; its `bytes_reallocated` is the
/// same change again, and adding it counted every buffer that grew as growth of the heap.)
fn live() -> (isize, isize) {
    let s = GLOBAL.stats();
    (
        s.bytes_allocated as isize - s.bytes_deallocated as isize,
        s.allocations as isize - s.deallocations as isize,
    )
}

struct Args {
    upstream: SocketAddr,
    load_bin: PathBuf,
    streams: usize,
    heartbeat_ms: u64,
    ramp: f64,
    baseline: bool,
    keep_baseline: bool,
    hold_s: u64,
    load_core: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        upstream: SocketAddr::from(([127, 0, 0, 1], 0)),
        load_bin: PathBuf::new(),
        streams: 1000,
        heartbeat_ms: 1000,
        ramp: 500.0,
        baseline: true,
        keep_baseline: true,
        hold_s: 10,
        load_core: None,
    };
    let mut pin = true;
    let mut core = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--upstream" => a.upstream = val("--upstream")?.parse().map_err(|e| format!("{e}"))?,
            "--load-bin" => a.load_bin = PathBuf::from(val("--load-bin")?),
            "--streams" => a.streams = val("--streams")?.parse().map_err(|e| format!("{e}"))?,
            "--heartbeat-ms" => {
                a.heartbeat_ms = val("--heartbeat-ms")?.parse().map_err(|e| format!("{e}"))?
            }
            "--ramp" => a.ramp = val("--ramp")?.parse().map_err(|e| format!("{e}"))?,
            "--no-baseline" => a.baseline = false,
            "--no-keep" => a.keep_baseline = false,
            "--hold-s" => {
                a.hold_s = val("--hold-s")?
                    .parse::<u64>()
                    .map_err(|e| format!("{e}"))?
                    .min(600)
            }
            "--load-core" => core = Some(val("--load-core")?),
            "--pin" => pin = val("--pin")? != "0",
            "-h" | "--help" => {
                println!(
                    "usage: state_size --upstream ADDR --load-bin PATH [--streams N] [--heartbeat-ms MS] \
                     [--ramp R] [--hold-s S (10)] [--no-baseline] [--no-keep] [--load-core C] [--pin 0|1]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !a.upstream.ip().is_loopback() || a.upstream.port() == 0 {
        return Err("--upstream must be a loopback ADDR:PORT".into());
    }
    if !a.load_bin.is_file() {
        return Err(format!("--load-bin {:?} is not a file", a.load_bin));
    }
    if a.streams == 0 || a.streams > 20_000 {
        return Err("--streams must be 1..=20000".into());
    }
    if pin {
        a.load_core = core;
    }
    Ok(a)
}

/// The open streams and the live heap (bytes, allocations) at one moment.
type Sample = (usize, (isize, isize));

/// Runs `heartbeat_load` against `url`; returns the open streams it reported at its plateau and
/// the live heap then (read as soon as the line arrives; the streams are all waiting), and the
/// same late in the wait (its `late` line), when it reports one.
fn load(
    args: &Args,
    url: &str,
    streams: usize,
    wait_ms: u64,
) -> Result<(Sample, Option<(Sample, f64)>), String> {
    let url = format!("{url}?wait_ms={wait_ms}");
    let load_args = [
        "--url".to_owned(),
        url,
        "--streams".to_owned(),
        streams.to_string(),
        "--ramp".to_owned(),
        args.ramp.to_string(),
        "--heartbeat-ms".to_owned(),
        args.heartbeat_ms.to_string(),
    ];
    let mut cmd = match &args.load_core {
        Some(core) if Path::new("/usr/bin/taskset").exists() => {
            let mut c = Command::new("/usr/bin/taskset");
            c.args(["-c", core]).arg(&args.load_bin);
            c
        }
        _ => Command::new(&args.load_bin),
    };
    let mut child = cmd
        .args(load_args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", args.load_bin))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut at_plateau = None;
    let mut at_late = None;
    let open_of = |rest: &str| {
        rest.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if let Some(rest) = line.strip_prefix("plateau open=") {
            let heap = live();
            at_plateau = Some(((open_of(rest), heap), std::time::Instant::now()));
        } else if let Some(rest) = line.strip_prefix("late open=") {
            let heap = live();
            at_late = Some(((open_of(rest), heap), std::time::Instant::now()));
        } else if !line.starts_with("heartbeat_load: ") || line.contains("fail") {
            eprintln!("load: {line}");
        }
    }
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    if !status.success() {
        return Err(format!("heartbeat_load exited with {status}"));
    }
    let (plateau, plateau_at) =
        at_plateau.ok_or_else(|| "heartbeat_load never reported its plateau".to_owned())?;
    let late = at_late.map(|(s, at): (Sample, std::time::Instant)| {
        (s, at.duration_since(plateau_at).as_secs_f64())
    });
    Ok((plateau, late))
}

/// Measures one proxy at `base` (e.g. `http://127.0.0.1:P/slow/v1/chat/completions`).
fn measure(rt: &tokio::runtime::Runtime, args: &Args, url: &str) -> Result<Measured, String> {
    // Warm-up: connection pools, maps, lazily built statics.
    load(args, url, 20.min(args.streams), 50)?;
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(300)).await });
    let idle = live();
    let ramp_ms = (args.streams as f64 / args.ramp * 1000.0) as u64;
    let wait_ms = ramp_ms + args.heartbeat_ms * 3 / 2 + 1000 + args.hold_s * 1000;
    let ((open, plateau), late) = load(args, url, args.streams, wait_ms)?;
    if open == 0 {
        return Err("no stream was open at the plateau".into());
    }
    // Growth while waiting: bytes per stream per second between the plateau and the late sample.
    let growth = late.and_then(|((late_open, heap), secs)| {
        (late_open == open && secs > 0.5).then(|| (heap.0 - plateau.0) as f64 / open as f64 / secs)
    });
    Ok(Measured {
        idle: idle.0,
        plateau: plateau.0,
        open,
        per_stream: (plateau.0 - idle.0) / open as isize,
        allocs_per_stream: (plateau.1 - idle.1) / open as isize,
        growth,
    })
}

struct Measured {
    idle: isize,
    plateau: isize,
    open: usize,
    per_stream: isize,
    allocs_per_stream: isize,
    /// Heap growth per waiting stream per second after the plateau.
    growth: Option<f64>,
}

/// A plain hyper proxy: `/slow/...` to the upstream's `/...`, the response body relayed
/// untouched. The request body is collected (zero-copy for one chunk) and sent on; with `keep`,
/// a clone of it is also kept until the connection closes, as aloud's request tap keeps the
/// body it saw (a `Bytes` slice of hyper's read buffer keeps that whole buffer alive).
async fn plain_proxy(listener: TcpListener, upstream: SocketAddr, keep: bool) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let kept: Arc<Mutex<Vec<Bytes>>> = Arc::default();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let client = client.clone();
                let kept = Arc::clone(&kept);
                async move {
                    let (mut parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|c| c.to_bytes())
                        .unwrap_or_default();
                    if keep {
                        kept.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(body.clone());
                    }
                    let pq = parts
                        .uri
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .trim_start_matches("/slow")
                        .to_owned();
                    parts.uri = format!("http://{upstream}{pq}")
                        .parse::<Uri>()
                        .unwrap_or_default();
                    parts.headers.remove(http::header::HOST);
                    let upstream_req = Request::from_parts(parts, Full::new(body));
                    let resp = match client.request(upstream_req).await {
                        Ok(r) => r.map(Either::Left),
                        Err(_) => {
                            let mut r = Response::new(Either::Right(Empty::<Bytes>::new()));
                            *r.status_mut() = http::StatusCode::BAD_GATEWAY;
                            r
                        }
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Starts a plain proxy and measures it.
fn measure_plain(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    keep: bool,
) -> Result<Measured, String> {
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("{e}"))?;
    rt.spawn(plain_proxy(listener, args.upstream, keep));
    let url = format!("http://{addr}/slow/v1/chat/completions");
    let m = measure(rt, args, &url)?;
    eprintln!(
        "state_size: plain hyper proxy{}: {} B ({} allocations) per stream over {} streams",
        if keep {
            " keeping the request body"
        } else {
            ""
        },
        m.per_stream,
        m.allocs_per_stream,
        m.open
    );
    Ok(m)
}

fn run(args: &Args) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let mut baseline = None;
    let mut keeping = None;
    if args.baseline {
        baseline = Some(measure_plain(&rt, args, false)?);
        if args.keep_baseline {
            keeping = Some(measure_plain(&rt, args, true)?);
        }
    }
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_concurrent_requests = {conc}\nmax_connections = {conc}\n\n[progress]\nheartbeat = \"{}ms\"\n\n\
         [[routes]]\nname = \"slow\"\nprefix = \"/slow\"\nupstream = \"http://{}\"\napi = \"openai\"\n",
        args.heartbeat_ms,
        args.upstream,
        conc = (args.streams + 100).max(4096),
    );
    let config = Config::parse(&toml, Path::new("state_size.toml"), &MapEnv::default())
        .map_err(|e| format!("config: {e}"))?;
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("{e}"))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(aloud::server::serve(
        config,
        aloud::server::Listeners::proxy(listener),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let url = format!("http://{addr}/slow/v1/chat/completions");
    let m = measure(&rt, args, &url)?;
    println!("streams={}", m.open);
    println!("idle_kib={}", m.idle / 1024);
    println!("plateau_kib={}", m.plateau / 1024);
    println!("per_stream_bytes={}", m.per_stream);
    println!("allocs_per_stream={}", m.allocs_per_stream);
    if let Some(g) = m.growth {
        println!("growth_bytes_per_stream_s={}", g.round() + 0.0);
    }
    if let Some(b) = baseline {
        println!("baseline_per_stream_bytes={}", b.per_stream);
        println!("baseline_allocs_per_stream={}", b.allocs_per_stream);
        println!("own_per_stream_bytes={}", m.per_stream - b.per_stream);
        println!(
            "own_allocs_per_stream={}",
            m.allocs_per_stream - b.allocs_per_stream
        );
        if let Some(g) = b.growth {
            println!("baseline_growth_bytes_per_stream_s={}", g.round() + 0.0);
        }
    }
    if let Some(k) = keeping {
        println!("keeping_per_stream_bytes={}", k.per_stream);
    }
    let _ = stop_tx.send(());
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), server).await });
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("state_size: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("state_size: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
