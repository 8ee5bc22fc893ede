//! The ETA accuracy benchmark's harness (run by `benches/eta_accuracy.sh`): replays corpora of
//! exchanges through the estimator and prints the median and p90 absolute percentage error of
//! the remaining time at 25%, 50% and 75% of each call's duration, how often the fraction went
//! backwards or reached 1 early, and what an update and a query cost.
//!
//! ```text
//! cargo run --release --example eta_accuracy -- [--calls N] [--db PATH_OR_URL] [--smoke]
//! ```
//!
//! Corpora: `sim-default` (the simulator answering any request: the seed alone picks a 10–25 s
//! call), `sim-mix` (three models × three efforts × three prompt sizes with seeded spreads; see
//! `aloud::simulator::workload`), and `captures` when `--db` names a capture database (its ok
//! exchanges in order; a llama.cpp run in the script lands there too).

use aloud::apis::Api;
use aloud::progress::eta::replay::{self, SHARES, Scores};
use aloud::progress::eta::{History, Key, Sample, input_bucket};
use aloud::simulator::workload::{self, Call};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn key_of(route: &str, call: &Call) -> Key {
    let t = aloud::apis::traits::read(
        Api::OpenAi,
        "POST",
        call.path,
        None,
        Some(call.body.as_bytes()),
    );
    Key {
        route: Arc::from(route),
        model: t.model.map(Arc::from),
        streams: t.streams,
        effort: t.effort.map(Arc::from),
        input: input_bucket(call.body.len() as u64),
    }
}

fn sim(route: &str, calls: u64, make: fn(u64) -> Call) -> Vec<(Key, Sample)> {
    (1..=calls)
        .map(|seed| {
            let c = make(seed);
            let sample = Sample {
                total_ms: c.total_ms as f32,
                first_token_ms: Some(c.first_token_ms as f32),
            };
            (key_of(route, &c), sample)
        })
        .collect()
}

fn captures(db: &str) -> Result<Vec<(Key, Sample)>, String> {
    let database = aloud::config::Database::parse(db).map_err(|e| e.to_string())?;
    let store = aloud::store::open_reader(&database).map_err(|e| e.to_string())?;
    let filter = aloud::store::Filter {
        outcome: Some("ok".to_owned()),
        ..Default::default()
    };
    let mut out = Vec::new();
    for r in store.query(&filter).map_err(|e| e.to_string())? {
        let r = r.map_err(|e| e.to_string())?;
        if let Some((key, sample, _)) = aloud::server::seed::from_record(&r) {
            out.push((key, sample));
        }
    }
    Ok(out)
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |x| format!("{:.1}%", x * 100.0))
}

fn row(name: &str, s: &Scores) -> String {
    let mut cells = vec![name.to_owned(), s.calls.to_string()];
    for e in &s.errors {
        cells.push(format!(
            "{} / {} (n={})",
            pct(replay::quantile(e, 0.5)),
            pct(replay::quantile(e, 0.9)),
            e.len()
        ));
    }
    cells.push(format!("{} of {}", s.backwards, s.updates));
    cells.push(format!("{} of {}", s.early_full, s.updates));
    format!("| {} |", cells.join(" | "))
}

/// ns per call of `f`, over `n` calls.
fn time_ns(n: u32, mut f: impl FnMut(u32)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

fn cost() -> Vec<String> {
    // A realistic history: 500 keys (each at its four levels), every ring full.
    let history = History::new();
    let keys: Vec<Key> = (0..500)
        .map(|i| Key {
            route: Arc::from(format!("route{}", i % 5)),
            model: Some(Arc::from(format!("model{}", i % 50))),
            streams: i % 2 == 0,
            effort: Some(Arc::from(["low", "medium", "high"][i % 3])),
            input: (i % 4) as u8,
        })
        .collect();
    for round in 0..80u32 {
        for k in &keys {
            let s = Sample {
                total_ms: 5_000.0 + (round * 97 % 1000) as f32 * 10.0,
                first_token_ms: Some(2_000.0),
            };
            history.record(k, s);
        }
    }
    let n = 200_000;
    let update = time_ns(n, |i| {
        let s = Sample {
            total_ms: 5_000.0 + (i % 1000) as f32 * 10.0,
            first_token_ms: Some(2_000.0),
        };
        std::hint::black_box(history.record(&keys[i as usize % keys.len()], s));
    });
    let query = time_ns(n, |i| {
        let t = f64::from(i % 10_000);
        std::hint::black_box(history.estimate(&keys[i as usize % keys.len()], t, false));
    });
    let small = workload::mix_call(1);
    let big = format!(
        "{{\"model\":\"m\",\"stream\":true,\"reasoning_effort\":\"high\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
        "word ".repeat(13_000)
    );
    let read = |body: &str| {
        time_ns(20_000, |_| {
            std::hint::black_box(aloud::apis::traits::read(
                Api::OpenAi,
                "POST",
                "/v1/chat/completions",
                None,
                Some(body.as_bytes()),
            ));
        })
    };
    vec![
        format!(
            "| history update (4 levels, rings of 64, {} keys) | {update:.0} ns |",
            history.keys()
        ),
        format!("| estimate query (end, first token, fraction input) | {query:.0} ns |"),
        format!(
            "| request traits, {} B body | {:.0} ns |",
            small.body.len(),
            read(&small.body)
        ),
        format!(
            "| request traits, {} B body | {:.0} ns |",
            big.len(),
            read(&big)
        ),
    ]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let calls: u64 = value("--calls")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 3_000 } else { 5_000 });
    let beat = Duration::from_secs(1);
    let mut lines = vec![
        "# ETA accuracy".to_owned(),
        String::new(),
        format!(
            "Absolute percentage error of the remaining time, median / p90, at {} of each call's duration; fraction checked every {} s.",
            SHARES.map(|s| format!("{:.0}%", s * 100.0)).join(", "),
            beat.as_secs()
        ),
        String::new(),
        "| corpus | calls | at 25% | at 50% | at 75% | fraction backwards | fraction 1 early |"
            .to_owned(),
        "|---|---|---|---|---|---|---|".to_owned(),
    ];
    let mut failed = false;
    let mut run = |name: &str, corpus: Vec<(Key, Sample)>, target: bool| {
        let s = replay::replay(&History::new(), corpus, beat);
        let median_25 = replay::quantile(&s.errors[0], 0.5);
        if s.backwards > 0 || s.early_full > 0 || (target && median_25.is_none_or(|m| m > 0.20)) {
            failed = true;
        }
        row(name, &s)
    };
    lines.push(run(
        "sim-default",
        sim("sim", calls, workload::default_call),
        false,
    ));
    lines.push(run("sim-mix", sim("sim", calls, workload::mix_call), true));
    match value("--db") {
        Some(db) => match captures(&db) {
            Ok(c) => lines.push(run("captures", c, false)),
            Err(e) => {
                eprintln!("eta_accuracy: cannot read {db}: {e}");
                failed = true;
            }
        },
        None => eprintln!("eta_accuracy: no --db given: the captures corpus is skipped"),
    }
    lines.push(String::new());
    lines.push(
        "Target: median error at 25% ≤ 20% on sim-mix; never backwards, never 1 early.".to_owned(),
    );
    lines.push(String::new());
    lines.push("| cost | per call |".to_owned());
    lines.push("|---|---|".to_owned());
    lines.extend(cost());
    println!("{}", lines.join("\n"));
    if failed {
        eprintln!("eta_accuracy: target missed, or the fraction misbehaved");
        std::process::exit(1);
    }
}
