//! The three progress tiers over real sockets, with the simulator as upstream.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use http_body_util::BodyExt;
use serde_json::Value;
use support::*;

const SIM: &str = "[progress]\nheartbeat = \"200ms\"\nhold = \"1s\"\n[[routes]]\nname = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\n[[routes]]\nname = \"simant\"\nprefix = \"/ant\"\nupstream = \"builtin:simulator\"\napi = \"anthropic\"\n[[routes]]\nname = \"simgem\"\nprefix = \"/gem\"\nupstream = \"builtin:simulator\"\napi = \"gemini\"\n[[routes]]\nname = \"simoll\"\nprefix = \"/oll\"\nupstream = \"builtin:simulator\"\napi = \"ollama\"\n";

const CHAT: &str = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

/// Reads the body frame by frame, returning the whole text.
async fn text(r: http::Response<hyper::body::Incoming>) -> String {
    let mut body = r.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.unwrap().into_data() {
            out.extend_from_slice(&d);
        }
    }
    String::from_utf8(out).unwrap()
}

fn comments(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix(": aloud "))
        .map(|j| serde_json::from_str(j).unwrap())
        .collect()
}

#[tokio::test]
async fn comments_appear_while_the_upstream_is_silent_and_only_between_events() {
    let aloud = Aloud::start(SIM).await;
    let h = [
        ("content-type", "application/json"),
        ("x-sim-seed", "3"),
        ("x-sim-think-ms", "900"),
        ("x-sim-tokens", "3"),
        ("x-sim-token-ms", "1"),
    ];
    let r = post(&aloud.url("/sim/v1/chat/completions"), &h, CHAT).await;
    assert_eq!(r.status(), 200);
    let body = text(r).await;
    let found = comments(&body);
    assert!(!found.is_empty(), "no comments in:\n{body}");
    for c in &found {
        assert_eq!(c["v"], 1);
        assert!(c["phase"].is_string());
    }
    assert_between_events(&body);
    aloud.stop().await;
}

/// Every comment starts the body or follows a blank line (or another comment), and none is
/// followed by a blank line of its own.
fn assert_between_events(body: &str) {
    let lines: Vec<&str> = body.split('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with(": aloud") {
            let prev_ok = i == 0 || lines[i - 1].is_empty() || lines[i - 1].starts_with(": aloud");
            assert!(prev_ok, "comment mid-event at line {i}:\n{body}");
            assert!(
                lines.get(i + 1).is_none_or(|next| !next.is_empty()),
                "blank line after a comment at line {i}:\n{body}"
            );
        }
    }
}
