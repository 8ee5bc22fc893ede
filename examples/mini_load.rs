//! A tiny HTTP/1.1 keep-alive load generator: the fallback when `oha` is not installed (used by
//! `benches/proxy_hop.sh --smoke`). Not a replacement for oha; good enough to prove the harness
//! works and to give rough numbers.
//!
//! ```text
//! mini_load [-c CONNS (16)] [-z SECONDS (2)] [-q RATE] URL
//! ```
//! Without `-q` it runs closed loop: each connection sends its next request as soon as the last
//! answer is in. With `-q RATE` it runs open loop: request i is due at start + i/RATE, requests
//! are dealt round-robin to the connections, and a request that had to wait because its
//! connection was still busy past its due time is charged from the due time (so a stalled
//! connection pays for the requests queued behind it, like oha's `--latency-correction`).
//!
//! Prints one line: `rps<TAB>p50_ms<TAB>p99_ms<TAB>ok<TAB>errors`.
#![allow(clippy::disallowed_methods)] // a standalone bench tool: plain tokio::spawn is fine here

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

struct Args {
    conns: u64,
    secs: f64,
    rate: Option<f64>,
    authority: String,
    path: String,
}

fn parse_args() -> Result<Args, String> {
    let mut conns = 16;
    let mut secs = 2.0;
    let mut rate = None;
    let mut url = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "-c" => conns = val("-c")?.parse().map_err(|e| format!("-c: {e}"))?,
            "-z" => {
                secs = val("-z")?
                    .trim_end_matches('s')
                    .parse()
                    .map_err(|e| format!("-z: {e}"))?
            }
            "-q" => rate = Some(val("-q")?.parse().map_err(|e| format!("-q: {e}"))?),
            "-h" | "--help" => {
                println!(
                    "usage: mini_load [-c CONNS] [-z SECONDS] [-q RATE] http://HOST:PORT/PATH"
                );
                std::process::exit(0);
            }
            u if u.starts_with("http://") => url = Some(u.to_owned()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let url = url.ok_or("no URL")?;
    let rest = &url["http://".len()..];
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_owned(), rest[i..].to_owned()),
        None => (rest.to_owned(), "/".to_owned()),
    };
    if conns == 0 || secs <= 0.0 || rate.is_some_and(|r: f64| r <= 0.0) {
        return Err("-c, -z and -q must be positive".into());
    }
    Ok(Args {
        conns,
        secs,
        rate,
        authority,
        path,
    })
}

#[derive(Default)]
struct Tally {
    lat_ns: Vec<u64>,
    errors: u64,
}

async fn connect(authority: &str) -> Option<http1::SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(authority).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    Some(sender)
}

async fn one(sender: &mut http1::SendRequest<Empty<Bytes>>, authority: &str, path: &str) -> bool {
    if sender.ready().await.is_err() {
        return false;
    }
    let Ok(req) = Request::get(path)
        .header(header::HOST, authority)
        .body(Empty::new())
    else {
        return false;
    };
    match sender.send_request(req).await {
        Ok(resp) => {
            let ok = resp.status().is_success();
            ok && resp.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

/// Worker `k` of `n`: closed loop, or (with a rate) the requests i = k, k+n, k+2n, ...
async fn worker(
    k: u64,
    n: u64,
    start: Instant,
    end: Instant,
    rate: Option<f64>,
    authority: String,
    path: String,
) -> Tally {
    let mut t = Tally::default();
    let mut sender = None;
    let mut i = k;
    let mut free_at = start;
    loop {
        let due = match rate {
            Some(r) => start + Duration::from_secs_f64(i as f64 / r),
            None => Instant::now(),
        };
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        // Charge from the due time when an earlier request kept this connection busy past it
        // (coordinated omission); otherwise from when the timer woke us, since tokio's timer
        // only has millisecond resolution and its lag is not the server's doing.
        let charged_from = if rate.is_some() && free_at > due {
            due
        } else {
            Instant::now()
        };
        if sender.is_none() {
            sender = connect(&authority).await;
        }
        let ok = match sender.as_mut() {
            Some(s) => one(s, &authority, &path).await,
            None => false,
        };
        free_at = Instant::now();
        if ok {
            t.lat_ns
                .push(free_at.duration_since(charged_from).as_nanos() as u64);
        } else {
            t.errors += 1;
            sender = None;
        }
        i += n;
    }
    t
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1e6
}

fn main() -> std::process::ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mini_load: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mini_load: runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let (lat, errors, elapsed) = rt.block_on(async {
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(a.secs);
        let handles: Vec<_> = (0..a.conns)
            .map(|k| {
                tokio::spawn(worker(
                    k,
                    a.conns,
                    start,
                    end,
                    a.rate,
                    a.authority.clone(),
                    a.path.clone(),
                ))
            })
            .collect();
        let mut lat = Vec::new();
        let mut errors = 0;
        for h in handles {
            match h.await {
                Ok(t) => {
                    lat.extend(t.lat_ns);
                    errors += t.errors;
                }
                Err(_) => errors += 1,
            }
        }
        (lat, errors, start.elapsed().as_secs_f64())
    });
    let mut lat = lat;
    lat.sort_unstable();
    let rps = lat.len() as f64 / elapsed;
    println!(
        "{rps:.1}\t{:.3}\t{:.3}\t{}\t{errors}",
        pct(&lat, 50.0),
        pct(&lat, 99.0),
        lat.len()
    );
    std::process::ExitCode::SUCCESS
}
