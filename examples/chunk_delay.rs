//! Per-chunk delay of an SSE stream, direct from `fast_upstream` and through proxies.
//!
//! Requests `BASE/stream?chunks=N&gap_us=U` from the upstream directly and through each
//! `--via NAME=BASE`, reads the body frame by frame and, for every event, takes the receive time
//! minus the send time `t` that the upstream stamped into it (same machine, same clock). Streams
//! for the targets are interleaved run by run so that drift in machine load hits them alike.
//!
//! Usage:
//! ```text
//! chunk_delay --upstream http://127.0.0.1:9100 \
//!     --via nginx=http://127.0.0.1:9200/fast --via aloud=http://127.0.0.1:9300/fast \
//!     [--chunks 1000] [--gap-us 1000] [--runs 1] [--format table|tsv]
//! ```
//! `table` prints a markdown table (delays in ms, with the p99 added over direct); `tsv` prints
//! `name  events  p50_us  p99_us  max_us  errors` lines for scripts.
#![allow(clippy::disallowed_methods)] // a standalone bench tool: plain tokio::spawn is fine here

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

struct Target {
    name: String,
    /// `host:port` to connect to.
    authority: String,
    /// Path prefix, without a trailing slash ("" for the upstream itself).
    prefix: String,
    delays_ns: Vec<i64>,
    errors: Vec<String>,
}

fn parse_base(name: &str, url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{name}: only http:// base URLs are supported, got {url:?}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(format!("{name}: no host in {url:?}"));
    }
    Ok(Target {
        name: name.to_owned(),
        authority: authority.to_owned(),
        prefix: path.trim_end_matches('/').to_owned(),
        delays_ns: Vec::new(),
        errors: Vec::new(),
    })
}

/// Pulls `"t":<digits>` out of one event.
fn event_time(event: &[u8]) -> Option<i128> {
    let key = b"\"t\":";
    let at = event.windows(key.len()).position(|w| w == key)? + key.len();
    let digits: &[u8] = &event[at..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// One stream: returns the delay of every event, in order.
async fn one_stream(t: &Target, chunks: u64, gap_us: u64) -> Result<Vec<i64>, String> {
    let stream = TcpStream::connect(&t.authority)
        .await
        .map_err(|e| format!("connect {}: {e}", t.authority))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    let uri = format!("{}/stream?chunks={chunks}&gap_us={gap_us}", t.prefix);
    let req = Request::get(uri)
        .header(header::HOST, &t.authority)
        .header(header::ACCEPT, "text/event-stream")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    if !resp.status().is_success() {
        driver.abort();
        return Err(format!("status {}", resp.status()));
    }
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut delays = Vec::with_capacity(chunks as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        let recv = now_ns();
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        let mut start = 0;
        while let Some(end) = buf[start..].windows(2).position(|w| w == b"\n\n") {
            let event = &buf[start..start + end];
            let sent = event_time(event)
                .ok_or_else(|| format!("event without t: {:?}", String::from_utf8_lossy(event)))?;
            delays.push((recv - sent).clamp(0, i64::MAX as i128) as i64);
            start += end + 2;
        }
        buf.drain(..start);
    }
    driver.abort();
    if delays.len() as u64 != chunks {
        return Err(format!("got {} of {chunks} events", delays.len()));
    }
    Ok(delays)
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Args {
    targets: Vec<Target>,
    chunks: u64,
    gap_us: u64,
    runs: u32,
    tsv: bool,
    timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        targets: Vec::new(),
        chunks: 1000,
        gap_us: 1000,
        runs: 1,
        tsv: false,
        timeout: Duration::from_secs(120),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--upstream" => {
                let url = val("--upstream")?;
                a.targets.insert(0, parse_base("direct", &url)?);
            }
            "--via" => {
                let spec = val("--via")?;
                let (name, url) = spec.split_once('=').ok_or("--via wants NAME=BASE_URL")?;
                a.targets.push(parse_base(name, url)?);
            }
            "--chunks" => {
                a.chunks = val("--chunks")?
                    .parse()
                    .map_err(|e| format!("--chunks: {e}"))?
            }
            "--gap-us" => {
                a.gap_us = val("--gap-us")?
                    .parse()
                    .map_err(|e| format!("--gap-us: {e}"))?
            }
            "--runs" => a.runs = val("--runs")?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--timeout-s" => {
                a.timeout = Duration::from_secs(
                    val("--timeout-s")?
                        .parse()
                        .map_err(|e| format!("--timeout-s: {e}"))?,
                )
            }
            "--format" => {
                a.tsv = match val("--format")?.as_str() {
                    "tsv" => true,
                    "table" => false,
                    other => return Err(format!("--format: table or tsv, not {other:?}")),
                }
            }
            "-h" | "--help" => {
                println!(
                    "usage: chunk_delay --upstream URL [--via NAME=URL]... [--chunks N] [--gap-us U] [--runs R] [--format table|tsv] [--timeout-s S]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.targets.is_empty() {
        return Err("give --upstream and/or --via".into());
    }
    if a.chunks == 0 || a.runs == 0 {
        return Err("--chunks and --runs must be at least 1".into());
    }
    Ok(a)
}

async fn run(mut a: Args) -> Vec<Target> {
    for _ in 0..a.runs {
        for t in &mut a.targets {
            match tokio::time::timeout(a.timeout, one_stream(t, a.chunks, a.gap_us)).await {
                Ok(Ok(d)) => t.delays_ns.extend(d),
                Ok(Err(e)) => t.errors.push(e),
                Err(_) => t.errors.push(format!("timed out after {:?}", a.timeout)),
            }
        }
    }
    a.targets
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chunk_delay: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let (chunks, gap_us, runs, tsv) = (args.chunks, args.gap_us, args.runs, args.tsv);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chunk_delay: runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut targets = rt.block_on(run(args));
    for t in &mut targets {
        t.delays_ns.sort_unstable();
        for e in &t.errors {
            eprintln!("chunk_delay: {}: {e}", t.name);
        }
    }
    let direct_p99 = targets
        .iter()
        .find(|t| t.name == "direct")
        .map(|t| pct(&t.delays_ns, 99.0));
    if tsv {
        for t in &targets {
            let d = &t.delays_ns;
            let (p50, p99, max) = (
                pct(d, 50.0) / 1000,
                pct(d, 99.0) / 1000,
                d.last().copied().unwrap_or(0) / 1000,
            );
            println!(
                "{}\t{}\t{p50}\t{p99}\t{max}\t{}",
                t.name,
                d.len(),
                t.errors.len()
            );
        }
    } else {
        println!("Per-chunk delay, {runs} stream(s) x {chunks} events, {gap_us} us apart (ms):\n");
        println!("| target | events | p50 | p99 | max | p99 added vs direct | errors |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        let ms = |ns: i64| format!("{:.3}", ns as f64 / 1e6);
        for t in &targets {
            let d = &t.delays_ns;
            if d.is_empty() {
                println!("| {} | 0 | - | - | - | - | {} |", t.name, t.errors.len());
                continue;
            }
            let p99 = pct(d, 99.0);
            let added = match direct_p99 {
                Some(dp) if t.name != "direct" => ms(p99 - dp),
                _ => "-".into(),
            };
            let max = d.last().copied().unwrap_or(0);
            println!(
                "| {} | {} | {} | {} | {} | {added} | {} |",
                t.name,
                d.len(),
                ms(pct(d, 50.0)),
                ms(p99),
                ms(max),
                t.errors.len()
            );
        }
    }
    if targets.iter().any(|t| !t.errors.is_empty()) {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
