//! What interpreting one forwarded chunk costs: feeds realistic upstream events, one per chunk,
//! through `aloud::apis::stream::StreamInterpreter::feed` (and, separately, through
//! `aloud::sse::SseDecoder::feed` alone) and times every call with `std::time::Instant`.
//!
//! ```text
//! interpret_cost [--chunks N (200000)] [--format table|kv] [--detail]
//! ```
//!
//! Streams (the test fixtures in `tests/fixtures/streams/`, compiled in): OpenAI chat with
//! reasoning, Anthropic messages with thinking, OpenAI Responses, Ollama NDJSON. Each stream is
//! cut into its events (SSE: up to and including the blank line; NDJSON: one line each), and
//! replayed through a fresh interpreter until N chunks of that stream were fed; building the
//! interpreter is not timed. The timer's own cost (two `Instant::now()`, ~50 ns here) is
//! included, so the figures err high. One warm-up replay per stream is not counted.
//!
//! `--detail` also prints the median per event of each stream, on stderr. `--format kv` prints `NAME_n`, `NAME_p50_us`, `NAME_p99_us`, `NAME_max_us` lines (read by
//! `benches/heartbeats.sh`); NAME is openai_chat, anthropic, responses, ollama, sse_decoder, all.

use std::hint::black_box;
use std::time::Instant;

use aloud::apis::stream::{Dialect, Limits, StreamInterpreter};
use aloud::sse::SseDecoder;

const CHAT: &str = include_str!("../tests/fixtures/streams/openai_chat_reasoning.sse");
const ANTHROPIC: &str = include_str!("../tests/fixtures/streams/anthropic_thinking.sse");
const RESPONSES: &str = include_str!("../tests/fixtures/streams/openai_responses.sse");
const OLLAMA: &str = include_str!("../tests/fixtures/streams/ollama_chat.ndjson");

const MAX_CHUNKS: usize = 50_000_000;

/// SSE text cut into events, each with its terminating blank line (LF or CRLF line ends).
fn sse_events(text: &str) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        pos += line.len();
        if line.trim_end_matches(['\r', '\n']).is_empty() && pos > start {
            out.push(&text.as_bytes()[start..pos]);
            start = pos;
        }
    }
    if !text[start..].trim().is_empty() {
        out.push(&text.as_bytes()[start..]);
    }
    out
}

fn ndjson_lines(text: &str) -> Vec<&[u8]> {
    text.split_inclusive('\n')
        .filter(|l| !l.trim().is_empty())
        .map(str::as_bytes)
        .collect()
}

/// Nanoseconds per `feed`, `n` of them, replaying `chunks` through fresh interpreters. With
/// `detail`, prints the median per event of the stream (to find an expensive kind of event).
fn time_interpreter(dialect: Dialect, chunks: &[&[u8]], n: usize, detail: bool) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    let mut warm = StreamInterpreter::with_dialect(Some(dialect), Limits::default());
    for c in chunks {
        black_box(warm.feed(c));
    }
    while out.len() < n {
        let mut interp = StreamInterpreter::with_dialect(Some(dialect), Limits::default());
        for c in chunks {
            if out.len() >= n {
                break;
            }
            let t = Instant::now();
            let step = interp.feed(black_box(c));
            let ns = t.elapsed().as_nanos() as u64;
            black_box(step);
            out.push(ns);
        }
        black_box(interp.finish());
    }
    if detail {
        for (i, c) in chunks.iter().enumerate() {
            let mut v: Vec<u64> = out.iter().skip(i).step_by(chunks.len()).copied().collect();
            v.sort_unstable();
            let head = String::from_utf8_lossy(&c[..c.len().min(110)]).replace('\n', "|");
            eprintln!(
                "{dialect:?} #{i}: {} B, p50 {:.2} µs  {head}",
                c.len(),
                pct(&v, 0.5) as f64 / 1000.0
            );
        }
    }
    out
}

fn time_decoder(chunks: &[&[u8]], n: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut d = SseDecoder::default();
        for c in chunks {
            if out.len() >= n {
                break;
            }
            let t = Instant::now();
            let fed = d.feed(black_box(c));
            let ns = t.elapsed().as_nanos() as u64;
            black_box(fed);
            out.push(ns);
        }
    }
    out
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> std::process::ExitCode {
    let mut n = 200_000usize;
    let mut kv = false;
    let mut detail = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--chunks" => match it.next().and_then(|v| v.parse().ok()) {
                Some(v) if v > 0 && v <= MAX_CHUNKS => n = v,
                _ => {
                    eprintln!("interpret_cost: --chunks needs a number in 1..={MAX_CHUNKS}");
                    return std::process::ExitCode::from(2);
                }
            },
            "--format" => match it.next().as_deref() {
                Some("kv") => kv = true,
                Some("table") => kv = false,
                _ => {
                    eprintln!("interpret_cost: --format table|kv");
                    return std::process::ExitCode::from(2);
                }
            },
            "--detail" => detail = true,
            "-h" | "--help" => {
                println!(
                    "usage: interpret_cost [--chunks N (200000)] [--format table|kv] [--detail]"
                );
                return std::process::ExitCode::SUCCESS;
            }
            other => {
                eprintln!("interpret_cost: unknown argument {other:?}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let chat = sse_events(CHAT);
    let runs: Vec<(&str, Vec<u64>)> = vec![
        (
            "openai_chat",
            time_interpreter(Dialect::OpenAiChat, &chat, n, detail),
        ),
        (
            "anthropic",
            time_interpreter(Dialect::Anthropic, &sse_events(ANTHROPIC), n, detail),
        ),
        (
            "responses",
            time_interpreter(Dialect::OpenAiResponses, &sse_events(RESPONSES), n, detail),
        ),
        (
            "ollama",
            time_interpreter(Dialect::OllamaNdjson, &ndjson_lines(OLLAMA), n, detail),
        ),
    ];
    let decoder = time_decoder(&chat, n);
    let mut all: Vec<u64> = runs.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    all.sort_unstable();
    let mut rows = Vec::new();
    for (name, mut v) in runs.into_iter().chain([("sse_decoder", decoder)]) {
        v.sort_unstable();
        rows.push((name, v));
    }
    rows.push(("all", all));
    let us = |ns: u64| ns as f64 / 1000.0;
    if kv {
        for (name, v) in &rows {
            println!("{name}_n={}", v.len());
            println!("{name}_p50_us={:.2}", us(pct(v, 0.50)));
            println!("{name}_p99_us={:.2}", us(pct(v, 0.99)));
            println!("{name}_max_us={:.1}", us(*v.last().unwrap_or(&0)));
        }
    } else {
        println!("| stream | chunks | p50 µs | p99 µs | max µs |");
        println!("|---|---:|---:|---:|---:|");
        for (name, v) in &rows {
            println!(
                "| {name} | {} | {:.2} | {:.2} | {:.1} |",
                v.len(),
                us(pct(v, 0.50)),
                us(pct(v, 0.99)),
                us(*v.last().unwrap_or(&0))
            );
        }
    }
    std::process::ExitCode::SUCCESS
}
