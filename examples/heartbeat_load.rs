//! Heartbeat load: opens many concurrent streaming requests through aloud while the upstream is
//! silent, and measures from the client side when each heartbeat arrives.
//!
//! ```text
//! heartbeat_load --url http://127.0.0.1:8787/slow/v1/chat/completions?wait_ms=20000 \
//!     [--streams N (500)] [--ramp R (500 per s)] [--heartbeat-ms MS (1000)] [--events] \
//!     [--rss-pid PID] [--threads N (1)] [--timeout-s S (wait + 60)]
//! ```
//!
//! Each stream is its own TCP connection and one `POST` with `"stream": true` (raw hyper
//! client, HTTP/1.1); stream i starts at i/R s. Lines are timestamped as their body frame
//! arrives. Nothing here looks inside aloud: only the bytes a client gets, and (with `--rss-pid`)
//! `/proc/PID/status`, `/proc/PID/stat` and `/proc/PID/fd` of the proxy.
//!
//! Lateness of a heartbeat = arrival − due time, where
//! - comments tier (default): each `: aloud {...}` comment is due `heartbeat` after the previous
//!   line the client got (an upstream `data:` line or the previous comment), because aloud
//!   comments once the upstream has been silent for `heartbeat`;
//! - events tier (`--events`, sends `Aloud-Progress: events`): each heartbeat `aloud.progress`
//!   event (same phase as the previous one: a phase change is not a heartbeat) is due `heartbeat`
//!   after the previous `aloud.progress` event.
//!
//! Heartbeats are split into `first` (the first one after upstream data) and `steady` (after a
//! heartbeat). `server` lateness uses aloud's own `elapsed_ms` stamps of two consecutive
//! heartbeats (ms resolution), which excludes delivery and client scheduling.
//!
//! Output: `key=value` lines on stdout (read by `benches/heartbeats.sh`), progress on stderr,
//! including a line `plateau open=N` once every stream has its response head and one and a half
//! heartbeats passed (what `state_size` waits for), and `late open=N` 0.7 s before the first
//! stream's wait ends (when that is at least 1 s after the plateau).
#![expect(
    clippy::disallowed_methods,
    reason = "a standalone bench tool: plain tokio::spawn is fine here"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const MAX_STREAMS: usize = 50_000;
const REQUEST_BODY: &str = r#"{"model":"bench-slow-1","stream":true,"messages":[{"role":"user","content":"Think hard, then answer."}]}"#;

struct Args {
    authority: String,
    path: String,
    streams: usize,
    ramp: f64,
    heartbeat: Duration,
    events: bool,
    rss_pid: Option<u32>,
    threads: usize,
    timeout: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut url = None;
    let mut a = Args {
        authority: String::new(),
        path: String::new(),
        streams: 500,
        ramp: 500.0,
        heartbeat: Duration::from_millis(1000),
        events: false,
        rss_pid: None,
        threads: 1,
        timeout: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--url" => url = Some(val("--url")?),
            "--streams" => a.streams = val("--streams")?.parse().map_err(|e| format!("{e}"))?,
            "--ramp" => a.ramp = val("--ramp")?.parse().map_err(|e| format!("{e}"))?,
            "--heartbeat-ms" => {
                a.heartbeat = Duration::from_millis(
                    val("--heartbeat-ms")?.parse().map_err(|e| format!("{e}"))?,
                )
            }
            "--events" => a.events = true,
            "--rss-pid" => a.rss_pid = Some(val("--rss-pid")?.parse().map_err(|e| format!("{e}"))?),
            "--threads" => a.threads = val("--threads")?.parse().map_err(|e| format!("{e}"))?,
            "--timeout-s" => {
                a.timeout = Some(Duration::from_secs(
                    val("--timeout-s")?.parse().map_err(|e| format!("{e}"))?,
                ))
            }
            "-h" | "--help" => {
                println!(
                    "usage: heartbeat_load --url http://127.0.0.1:PORT/PATH [--streams N] [--ramp R] \
                     [--heartbeat-ms MS] [--events] [--rss-pid PID] [--threads N] [--timeout-s S]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if !(authority.starts_with("127.0.0.1:") || authority.starts_with("localhost:")) {
        return Err("the load only goes to 127.0.0.1".into());
    }
    a.authority = authority.to_owned();
    a.path = path.to_owned();
    if a.streams == 0 || a.streams > MAX_STREAMS {
        return Err(format!("--streams must be 1..={MAX_STREAMS}"));
    }
    if a.ramp.is_nan() || a.ramp <= 0.0 {
        return Err("--ramp must be positive".into());
    }
    if a.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    Ok(a)
}

/// The upstream's wait, from the URL's `wait_ms`, to size the per-stream timeout.
fn wait_of(path: &str) -> Duration {
    let ms = path
        .split_once('?')
        .and_then(|(_, q)| {
            q.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == "wait_ms").then(|| v.parse::<u64>().ok()).flatten()
            })
        })
        .unwrap_or(20_000);
    Duration::from_millis(ms)
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

#[derive(Default)]
struct Outcome {
    /// Lateness in µs of heartbeats right after upstream data.
    first: Vec<i64>,
    /// Lateness in µs of heartbeats right after a heartbeat.
    steady: Vec<i64>,
    /// Lateness in ms from aloud's own `elapsed_ms` (consecutive heartbeats only).
    server: Vec<i64>,
    /// Non-heartbeat `aloud.progress` events (phase changes).
    other_events: u64,
    error: Option<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Last {
    Nothing,
    Data,
    Beat,
}

/// Reads one response's lines and keeps the heartbeat timings.
struct Reader {
    events: bool,
    hb_ns: i128,
    hb_ms: i64,
    buf: Vec<u8>,
    last: Last,
    last_at: i128,
    last_elapsed: Option<i64>,
    last_phase: Option<String>,
    pending_event: Option<String>,
    saw_done: bool,
    saw_aloud_done: bool,
    /// The response head arrived (whatever its status).
    headed: bool,
    out: Outcome,
}

impl Reader {
    fn new(events: bool, hb: Duration) -> Self {
        Reader {
            events,
            hb_ns: hb.as_nanos() as i128,
            hb_ms: hb.as_millis() as i64,
            buf: Vec::with_capacity(512),
            last: Last::Nothing,
            last_at: 0,
            last_elapsed: None,
            last_phase: None,
            pending_event: None,
            saw_done: false,
            saw_aloud_done: false,
            headed: false,
            out: Outcome::default(),
        }
    }

    fn feed(&mut self, data: &[u8], at: i128) {
        self.buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(n) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let line = self.buf[start..start + n].to_vec();
            start += n + 1;
            self.line(&line, at);
        }
        self.buf.drain(..start);
    }

    /// A progress payload (comment JSON or event data): records it as a heartbeat or not.
    fn progress(&mut self, json: &[u8], at: i128) {
        let v: serde_json::Value = serde_json::from_slice(json).unwrap_or_default();
        let elapsed = v.get("elapsed_ms").and_then(serde_json::Value::as_i64);
        let phase = v
            .get("phase")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        let is_beat = if self.events {
            // A phase change is an event of its own, not a heartbeat.
            self.last_at != 0 && phase.is_some() && phase == self.last_phase
        } else {
            self.last != Last::Nothing && v.get("seq").is_some()
        };
        if is_beat {
            let late_us = ((at - self.last_at - self.hb_ns) / 1000) as i64;
            if self.last == Last::Beat {
                self.out.steady.push(late_us);
                if let (Some(e), Some(p)) = (elapsed, self.last_elapsed) {
                    self.out.server.push(e - p - self.hb_ms);
                }
            } else {
                self.out.first.push(late_us);
            }
        } else if self.events {
            self.out.other_events += 1;
        }
        self.last = Last::Beat;
        self.last_at = at;
        self.last_elapsed = elapsed;
        self.last_phase = phase;
    }

    fn line(&mut self, line: &[u8], at: i128) {
        if let Some(json) = line.strip_prefix(b": aloud ") {
            if !self.events {
                self.progress(json, at);
            }
        } else if let Some(name) = line.strip_prefix(b"event: ") {
            self.pending_event = Some(String::from_utf8_lossy(name).into_owned());
        } else if let Some(data) = line.strip_prefix(b"data: ") {
            match self.pending_event.take().as_deref() {
                Some("aloud.progress") => self.progress(data, at),
                Some("aloud.done") => self.saw_aloud_done = true,
                Some("aloud.error") => {
                    self.out.error = Some("aloud.error event".into());
                }
                Some(_) => {}
                None => {
                    if data == b"[DONE]" {
                        self.saw_done = true;
                    }
                    if !self.events {
                        // Upstream activity: the next comment is due a heartbeat after it.
                        self.last = Last::Data;
                        self.last_at = at;
                        self.last_elapsed = None;
                    } else if self.last == Last::Beat {
                        // Upstream data between events does not move the events tier's timer,
                        // but the next heartbeat no longer follows a quiet stretch.
                        self.last = Last::Data;
                    }
                }
            }
        }
    }
}

/// Streams that got their head or failed before it (for the plateau), streams reading a body.
#[derive(Default)]
struct Counts {
    settled: AtomicUsize,
    active: AtomicUsize,
}

async fn one_stream(args: Arc<Args>, counts: Arc<Counts>) -> Outcome {
    let mut r = Reader::new(args.events, args.heartbeat);
    let result = run_stream(&args, &mut r, &counts).await;
    if !r.headed {
        counts.settled.fetch_add(1, Ordering::Relaxed);
    }
    if let Err(e) = result {
        r.out.error.get_or_insert(e);
    } else if !r.saw_done {
        r.out
            .error
            .get_or_insert("stream ended without [DONE]".into());
    } else if args.events && !r.saw_aloud_done {
        r.out
            .error
            .get_or_insert("stream ended without aloud.done".into());
    }
    r.out
}

async fn run_stream(args: &Args, r: &mut Reader, counts: &Counts) -> Result<(), String> {
    let stream = TcpStream::connect(&args.authority)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::post(args.path.as_str())
        .header(header::HOST, args.authority.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "text/event-stream");
    if args.events {
        req = req.header("aloud-progress", "events");
    }
    let req = req
        .body(Full::new(Bytes::from_static(REQUEST_BODY.as_bytes())))
        .map_err(|e| format!("request: {e}"))?;
    let result = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        r.headed = true;
        counts.settled.fetch_add(1, Ordering::Relaxed);
        if resp.status() != http::StatusCode::OK {
            return Err(format!("status {}", resp.status().as_u16()));
        }
        counts.active.fetch_add(1, Ordering::Relaxed);
        let mut body = resp.into_body();
        let read = async {
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| format!("body: {e}"))?;
                if let Ok(data) = frame.into_data() {
                    r.feed(&data, now_ns());
                }
            }
            Ok::<(), String>(())
        }
        .await;
        counts.active.fetch_sub(1, Ordering::Relaxed);
        read
    }
    .await;
    driver.abort();
    result
}

/// VmRSS in KiB, open fds, and utime+stime in clock ticks of a process.
fn proc_sample(pid: u32) -> Option<(u64, usize, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at state = field 3.
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let cpu = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((rss, fds, cpu))
}

fn pct(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

fn emit_dist(name: &str, mut v: Vec<i64>, scale: f64) {
    v.sort_unstable();
    let f = |x: Option<i64>| x.map_or("-".to_owned(), |x| format!("{:.1}", x as f64 / scale));
    println!("{name}_n={}", v.len());
    // Heartbeats more than 100 ms late (the issue's bound), whatever the percentiles say.
    let over = v.iter().filter(|&&x| x as f64 / scale > 100.0).count();
    println!("{name}_over100={over}");
    println!("{name}_p50_ms={}", f(pct(&v, 0.50)));
    println!("{name}_p99_ms={}", f(pct(&v, 0.99)));
    println!("{name}_max_ms={}", f(v.last().copied()));
    println!("{name}_min_ms={}", f(v.first().copied()));
}

async fn run(args: Args) -> Result<(), String> {
    let args = Arc::new(args);
    let wait = wait_of(&args.path);
    let timeout = args
        .timeout
        .unwrap_or(wait + Duration::from_secs(60))
        .min(Duration::from_secs(3600));
    let idle = args.rss_pid.and_then(proc_sample);
    let counts = Arc::new(Counts::default());
    let mut set = JoinSet::new();
    let start = Instant::now();
    let tick = Duration::from_secs_f64(1.0 / args.ramp);
    for i in 0..args.streams {
        tokio::time::sleep_until((start + tick.mul_f64(i as f64)).into()).await;
        let (a, c) = (Arc::clone(&args), Arc::clone(&counts));
        set.spawn(async move {
            tokio::time::timeout(timeout, one_stream(a, c))
                .await
                .unwrap_or_else(|_| Outcome {
                    error: Some("timed out".into()),
                    ..Outcome::default()
                })
        });
    }
    let ramp_s = start.elapsed().as_secs_f64();
    eprintln!(
        "heartbeat_load: {} streams started in {ramp_s:.1} s",
        args.streams
    );
    // Plateau: every stream has its head (or failed), then 1.5 heartbeats so each is waiting.
    let settle_limit = Instant::now() + Duration::from_secs(10);
    while counts.settled.load(Ordering::Relaxed) < args.streams && Instant::now() < settle_limit {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(args.heartbeat.mul_f64(1.5)).await;
    let plateau_at = start.elapsed().as_secs_f64();
    let plateau_active = counts.active.load(Ordering::Relaxed);
    let plateau = args.rss_pid.and_then(proc_sample);
    eprintln!("plateau open={plateau_active} at={plateau_at:.1}s");
    // Late in the wait, before the first stream ends: how a waiting request's cost grows.
    let late_at = wait.saturating_sub(Duration::from_millis(700));
    let late = if late_at.as_secs_f64() >= plateau_at + 1.0 {
        tokio::time::sleep_until((start + late_at).into()).await;
        let active = counts.active.load(Ordering::Relaxed);
        let s = args.rss_pid.and_then(proc_sample);
        eprintln!(
            "late open={active} at={:.1}s",
            start.elapsed().as_secs_f64()
        );
        Some((start.elapsed().as_secs_f64(), active, s))
    } else {
        None
    };
    let mut results = Vec::with_capacity(args.streams);
    while let Some(r) = set.join_next().await {
        results.push(r.unwrap_or_else(|e| Outcome {
            error: Some(format!("task: {e}")),
            ..Outcome::default()
        }));
    }
    let total_s = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = args.rss_pid.and_then(proc_sample);

    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let (mut first, mut steady, mut server) = (Vec::new(), Vec::new(), Vec::new());
    let mut per_stream = Vec::new();
    let mut other = 0;
    for r in results {
        if let Some(e) = r.error {
            *failures.entry(e).or_default() += 1;
        }
        per_stream.push((r.first.len() + r.steady.len()) as i64);
        first.extend(r.first);
        steady.extend(r.steady);
        server.extend(r.server);
        other += r.other_events;
    }
    let failed: usize = failures.values().sum();
    per_stream.sort_unstable();
    println!("streams={}", args.streams);
    println!("failed={failed}");
    for (e, n) in &failures {
        println!("failure={n} {e}");
    }
    println!("ramp_s={ramp_s:.2}");
    println!("total_s={total_s:.2}");
    println!("plateau_at_s={plateau_at:.2}");
    println!("plateau_active={plateau_active}");
    println!("other_progress_events={other}");
    println!(
        "beats_per_stream_min={}",
        per_stream.first().copied().unwrap_or(0)
    );
    println!(
        "beats_per_stream_mean={:.2}",
        per_stream.iter().sum::<i64>() as f64 / per_stream.len().max(1) as f64
    );
    let mut all = first.clone();
    all.extend_from_slice(&steady);
    emit_dist("late", all, 1000.0);
    emit_dist("late_first", first, 1000.0);
    emit_dist("late_steady", steady, 1000.0);
    emit_dist("late_server", server, 1.0);
    if plateau_at + 0.2 > wait.as_secs_f64() {
        println!(
            "warning=plateau sampled after the first streams could have ended: raise wait or ramp"
        );
    }
    if let Some((at, active, _)) = late {
        println!("late_at_s={at:.2}");
        println!("late_active={active}");
    }
    let late = late.and_then(|l| l.2);
    for (name, s) in [
        ("idle", idle),
        ("plateau", plateau),
        ("late", late),
        ("after", after),
    ] {
        if let Some((rss, fds, cpu)) = s {
            println!("{name}_rss_kib={rss}");
            println!("{name}_fds={fds}");
            println!("{name}_cpu_ticks={cpu}");
        }
    }
    if failed == args.streams {
        return Err("every stream failed".into());
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("heartbeat_load: {e}");
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
    let result = match runtime {
        Ok(rt) => rt.block_on(run(args)),
        Err(e) => Err(format!("runtime: {e}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heartbeat_load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
