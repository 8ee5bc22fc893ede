//! The ETA over real sockets, with the simulator as upstream: no fields before there is enough
//! history; once ok exchanges taught it, progress events (events tier and comments) carry
//! `eta_ms`, `fraction` and `eta_basis`, fractions never go back and stay below 1, failed
//! exchanges teach nothing, and the capture record keeps what the estimator said.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use aloud::progress::eta::estimate::MIN_BASIS;
use serde_json::Value;
use std::sync::Arc;
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
    aloud.stop().await;
}
