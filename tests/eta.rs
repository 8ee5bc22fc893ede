//! The ETA over real sockets, with the simulator as upstream: no fields before there is enough
//! history; once ok exchanges taught it, progress events (events tier and comments) carry
//! `eta_ms`, `fraction` and `eta_basis`, fractions never go back and stay below 1, failed
//! exchanges teach nothing, and the capture record keeps what the estimator said.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

#[path = "support/records.rs"]
mod records;
mod support;

use aloud::progress::eta::estimate::MIN_BASIS;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::*;

const CONFIG: &str = "[progress]\nheartbeat = \"100ms\"\nhold = \"50ms\"\n[[routes]]\nname = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\n";
const CHAT: &str = r#"{"model":"m","stream":true,"reasoning_effort":"low","messages":[{"role":"user","content":"hi"}]}"#;

async fn call(aloud: &Aloud, id: &str, tier: &str, extra: &[(&str, &str)]) -> String {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("aloud-request-id", id),
        ("aloud-progress", tier),
        ("x-sim-think-ms", "400"),
        ("x-sim-tokens", "3"),
        ("x-sim-token-ms", "20"),
        ("x-sim-seed", "5"),
    ];
    headers.extend_from_slice(extra);
    let r = post(&aloud.url("/sim/v1/chat/completions"), &headers, CHAT).await;
    let (bytes, clean) = read_to_end(r).await;
    assert!(clean);
    String::from_utf8(bytes).unwrap()
}

/// The `aloud.progress` payloads of an events-tier body.
fn progress_events(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut name = "";
    for line in text.lines() {
        if line.is_empty() {
            name = "";
        } else if let Some(n) = line.strip_prefix("event: ") {
            name = n;
        } else if let Some(d) = line.strip_prefix("data: ")
            && name == "aloud.progress"
        {
            out.push(serde_json::from_str(d).unwrap());
        }
    }
    out
}

fn comments(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix(": aloud "))
        .map(|j| serde_json::from_str(j).unwrap())
        .collect()
}

#[tokio::test]
async fn progress_carries_an_eta_once_ok_exchanges_taught_it() {
    let sink = Arc::new(MemorySink::default());
    let aloud =
        Aloud::start_with_sink(CONFIG, aloud::config::MapEnv::default(), Some(sink.clone())).await;

    // No history: events, but no ETA fields.
    let first = call(&aloud, "eta-00000000000000", "events", &[]).await;
    let events = progress_events(&first);
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e.get("eta_ms").is_none()), "{first}");
    let record = sink.wait_for("eta-00000000000000").await;
    assert_eq!(record.eta, None, "nothing to say without history");

    // Failed exchanges teach nothing.
    for i in 0..MIN_BASIS {
        let id = format!("eta-fail-{i:010}");
        call(&aloud, &id, "off", &[("x-sim-status", "500")]).await;
        sink.wait_for(&id).await;
    }
    let still = call(&aloud, "eta-00000000000001", "events", &[]).await;
    assert!(
        progress_events(&still)
            .iter()
            .all(|e| e.get("eta_ms").is_none())
    );
    sink.wait_for("eta-00000000000001").await;

    // Ok exchanges (nobody watching) teach it: with the two above, the basis is reached.
    for i in 0..(MIN_BASIS - 2) {
        let id = format!("eta-ok-{i:012}");
        call(&aloud, &id, "off", &[]).await;
        sink.wait_for(&id).await;
    }
    let watched = call(&aloud, "eta-00000000000002", "events", &[]).await;
    let events = progress_events(&watched);
    let with_eta: Vec<&Value> = events
        .iter()
        .filter(|e| e.get("eta_ms").is_some())
        .collect();
    assert!(with_eta.len() >= 2, "{watched}");
    let mut last = 0.0;
    for e in &with_eta {
        let f = e["fraction"].as_f64().unwrap();
        assert!(f >= last && f < 1.0, "fraction {f} after {last}");
        last = f;
        assert_eq!(e["eta_basis"], MIN_BASIS);
        assert!(e["eta_ms"].as_u64().unwrap() < 2000);
    }
    assert!(last > 0.0, "the fraction moved");
    // The exchange's end has no time left to estimate.
    let ended: Vec<&Value> = events
        .iter()
        .filter(|e| e["phase"] == "done" || e["phase"] == "error")
        .collect();
    assert!(!ended.is_empty(), "{watched}");
    assert!(ended.iter().all(|e| e.get("eta_ms").is_none()), "{watched}");
    let record = sink.wait_for("eta-00000000000002").await;
    let eta = record
        .eta
        .expect("the record keeps what the estimator said");
    assert_eq!(eta.basis, MIN_BASIS as u32);
    assert!(eta.issued_ms.is_some() && eta.eta_ms.is_some());
    assert!(eta.error_at_25.is_some());

    // Comments carry the same fields.
    let commented = call(
        &aloud,
        "eta-00000000000003",
        "comments",
        &[("x-sim-headers-ms", "300")],
    )
    .await;
    assert!(
        comments(&commented)
            .iter()
            .any(|c| c.get("fraction").is_some()),
        "{commented}"
    );
    sink.wait_for("eta-00000000000003").await;
    assert!(
        progress_events(&watched)
            .iter()
            .all(|e| !e["label"].as_str().unwrap().contains("left")),
        "too few scores for the label to name a time"
    );

    // Steady durations, scored: once the key has enough good scores the label names the time.
    let more: Vec<_> = (0..10)
        .map(|i| {
            let aloud = &aloud;
            async move {
                let id = format!("eta-more-{i:010}");
                call(aloud, &id, "off", &[]).await;
                id
            }
        })
        .collect();
    for id in futures_util::future::join_all(more).await {
        sink.wait_for(&id).await;
    }
    let trusted = call(&aloud, "eta-00000000000004", "events", &[]).await;
    let labels: Vec<String> = progress_events(&trusted)
        .iter()
        .filter(|e| e.get("eta_ms").is_some())
        .map(|e| e["label"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        labels.iter().any(|l| l.ends_with("a few seconds left")),
        "{labels:?}"
    );
    aloud.stop().await;
}

/// aloud started with a capture database that already holds ok exchanges of the route: the
/// history is seeded from them (on a background task), so the first watched request has an ETA.
#[tokio::test]
async fn the_history_is_seeded_from_captures_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("aloud.db");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let past: Vec<_> = (0..10)
        .map(|i| {
            let mut r = records::record(&format!("seeded-{i:010}"), 1, now - 60_000 + i, 2000);
            r.route = "sim".into();
            r.api = "openai".into();
            r.request = Some(serde_json::from_str(CHAT).unwrap());
            r.timings.done_ms = Some(700.0);
            r.timings.first_token_ms = Some(500.0);
            r
        })
        .collect();
    let mut store = aloud::store::SqliteStore::open(&db).unwrap();
    aloud::store::Store::insert_batch(&mut store, &past).unwrap();
    drop(store);

    let toml = format!(
        "[capture]\ndatabase = \"{}\"\nspill_dir = \"{}\"\n{CONFIG}",
        db.display(),
        dir.path().join("spill").display()
    );
    let config = aloud::config::Config::parse(
        &toml,
        std::path::Path::new("t.toml"),
        &aloud::config::MapEnv::default(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    #[expect(clippy::disallowed_methods, reason = "the test joins it below")]
    let server = tokio::spawn(aloud::server::serve(
        config,
        aloud::server::Listeners {
            proxy: listener,
            admin: None,
        },
        async move {
            let _ = stopped.await;
        },
    ));
    let url = format!("http://{addr}/sim/v1/chat/completions");
    // The seed runs beside serving: poll with a deadline until a watched request has an ETA.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut attempt = 0;
    let basis = loop {
        attempt += 1;
        let id = format!("eta-seeded-{attempt:08}");
        let r = post(
            &url,
            &[
                ("content-type", "application/json"),
                ("aloud-request-id", &id),
                ("aloud-progress", "events"),
                ("x-sim-think-ms", "400"),
                ("x-sim-tokens", "3"),
            ],
            CHAT,
        )
        .await;
        let text = String::from_utf8(read_to_end(r).await.0).unwrap();
        if let Some(b) = progress_events(&text)
            .iter()
            .find_map(|e| e.get("eta_basis").and_then(Value::as_u64))
        {
            break b;
        }
        assert!(Instant::now() < deadline, "no ETA after the seed: {text}");
    };
    // The seeded ten (plus any request of this loop that ended before).
    assert!(basis >= 10, "basis {basis}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// `[progress] eta = false`: however much history, no estimate.
#[tokio::test]
async fn with_eta_off_no_estimate_is_given() {
    let sink = Arc::new(MemorySink::default());
    let config = CONFIG.replace("[progress]\n", "[progress]\neta = false\n");
    let aloud = Aloud::start_with_sink(
        &config,
        aloud::config::MapEnv::default(),
        Some(sink.clone()),
    )
    .await;
    for i in 0..=MIN_BASIS {
        let id = format!("eta-off-{i:011}");
        call(&aloud, &id, "off", &[]).await;
        sink.wait_for(&id).await;
    }
    let watched = call(&aloud, "eta-off-watched-0000", "events", &[]).await;
    let events = progress_events(&watched);
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e.get("eta_ms").is_none()),
        "{watched}"
    );
    assert_eq!(sink.wait_for("eta-off-watched-0000").await.eta, None);
    aloud.stop().await;
}
