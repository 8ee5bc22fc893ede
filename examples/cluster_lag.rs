//! Cross-replica event lag: two aloud replicas in this process sharing one Postgres (the side
//! channel across replicas), N concurrent requests served by replica A in the events tier, each
//! watched by a side-channel subscriber on replica B. An event's lag is the time from A's client
//! getting it to B's subscriber getting the same `seq` (one clock: both clients are here).
//!
//! ```text
//! cluster_lag --database postgres://... [--requests N (1000)] [--think-ms MS (8000)]
//!     [--heartbeat-ms MS (500)] [--ramp-ms MS (2000)]
//! ```
//!
//! Output: `key=value` lines on stdout (count, p50, p90, p99, max in ms, missed events).
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark harness: its tasks are joined, a surprise ends it loudly"
)]

use aloud::config::{Config, MapEnv};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

async fn replica(url: &str, heartbeat_ms: u64) -> SocketAddr {
    let toml = format!(
        "[server]\nmax_connections = 20000\n[admin]\nlisten = \"\"\n[capture]\nenabled = false\n[progress]\nheartbeat = \"{heartbeat_ms}ms\"\n[cluster]\nenabled = true\ndatabase = \"{url}\"\n[[routes]]\nname = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\nprogress = \"off\"\n"
    );
    let config = Config::parse(&toml, Path::new("bench.toml"), &MapEnv::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(aloud::server::serve(
        config,
        aloud::server::Listeners::proxy(listener),
        std::future::pending(),
    ));
    addr
}

/// Sends `req` on a new connection and returns (arrival, seq) for every event with a `seq`.
async fn events(addr: SocketAddr, req: Request<Full<Bytes>>) -> Vec<(Instant, u64)> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut body = sender.send_request(req).await.unwrap().into_body();
    let mut out = Vec::new();
    let mut buf = String::new();
    while let Some(Ok(frame)) = body.frame().await {
        let now = Instant::now();
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buf.push_str(&String::from_utf8_lossy(data));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if let Some(seq) = block
                .split("\"seq\":")
                .nth(1)
                .and_then(|r| r.split([',', '}']).next())
                .and_then(|n| n.parse().ok())
            {
                out.push((now, seq));
            }
        }
    }
    out
}

#[tokio::main]
async fn main() {
    let url = arg("--database", "");
    assert!(!url.is_empty(), "--database postgres://... is required");
    let n: usize = arg("--requests", "1000").parse().unwrap();
    let think: u64 = arg("--think-ms", "8000").parse().unwrap();
    let hb: u64 = arg("--heartbeat-ms", "500").parse().unwrap();
    let ramp: u64 = arg("--ramp-ms", "2000").parse().unwrap();
    let a = replica(&url, hb).await;
    let b = replica(&url, hb).await;
    // Both links up: a request on A with a subscriber on B gets through.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let id = format!(
            "lag-warmup-{:010}",
            deadline.elapsed().as_nanos() % 1_000_000_000
        );
        let sub = tokio::spawn(events(
            b,
            Request::get(format!("http://{b}/aloud/v1/progress/{id}"))
                .body(Full::default())
                .unwrap(),
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = events(a, post(a, &id, 0)).await;
        if !sub.await.unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the replicas never linked");
    }
    eprintln!("linked; starting {n} requests");
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("lag-{i:012}-{}", std::process::id());
        let start = Instant::now() + Duration::from_millis(ramp * i as u64 / n.max(1) as u64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start).await;
            let sub = tokio::spawn(events(
                b,
                Request::get(format!("http://{b}/aloud/v1/progress/{id}"))
                    .body(Full::default())
                    .unwrap(),
            ));
            // Let the interest reach A first (the subscriber subscribes before it posts).
            tokio::time::sleep(Duration::from_millis(100)).await;
            let direct = events(a, post(a, &id, think)).await;
            let remote = sub.await.unwrap();
            let at: HashMap<u64, Instant> = remote.into_iter().map(|(t, s)| (s, t)).collect();
            let mut lags = Vec::new();
            let mut missed = 0;
            for (t, s) in direct {
                match at.get(&s) {
                    Some(r) => lags.push(r.saturating_duration_since(t)),
                    None => missed += 1,
                }
            }
            (lags, missed)
        }));
    }
    let mut lags = Vec::new();
    let mut missed = 0;
    for t in tasks {
        let (l, m) = t.await.unwrap();
        lags.extend(l);
        missed += m;
    }
    lags.sort();
    let q = |p: f64| {
        lags.get(((lags.len() as f64 * p) as usize).min(lags.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    println!("requests={n}");
    println!("events={}", lags.len());
    println!("missed={missed}");
    println!("p50_ms={:.1}", q(0.50));
    println!("p90_ms={:.1}", q(0.90));
    println!("p99_ms={:.1}", q(0.99));
    println!("max_ms={:.1}", q(1.0));
    std::process::exit(0);
}

fn post(a: SocketAddr, id: &str, think: u64) -> Request<Full<Bytes>> {
    Request::post(format!("http://{a}/sim/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("aloud-request-id", id)
        .header("aloud-progress", "events")
        .header("x-sim-think-ms", think.to_string())
        .header("x-sim-tokens", "5")
        .header("x-sim-token-ms", "5")
        .body(Full::new(Bytes::from_static(
            br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        )))
        .unwrap()
}
