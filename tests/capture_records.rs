//! One capture record per exchange, for every api streamed and not, complete and cut short:
//! outcomes, statuses, timings as the user felt them, usage, reassembled output and deltas.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use aloud::capture::{CaptureRecord, DeltaKind, Outcome};
use http_body_util::BodyExt;
use std::sync::Arc;
use support::*;

const CONFIG: &str = "[progress]\nheartbeat = \"100ms\"\n\
[[routes]]\nname = \"oai\"\nprefix = \"/oai\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\nidle_timeout = \"2s\"\n\
[[routes]]\nname = \"ant\"\nprefix = \"/ant\"\nupstream = \"builtin:simulator\"\napi = \"anthropic\"\nmax_request_body = \"4KiB\"\n\
[[routes]]\nname = \"gem\"\nprefix = \"/gem\"\nupstream = \"builtin:simulator\"\napi = \"gemini\"\n\
[[routes]]\nname = \"oll\"\nprefix = \"/oll\"\nupstream = \"builtin:simulator\"\napi = \"ollama\"\n\
[[routes]]\nname = \"meta\"\nprefix = \"/meta\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\ncapture = \"metadata\"\n\
[[routes]]\nname = \"none\"\nprefix = \"/none\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\ncapture = \"off\"\n";

async fn start() -> (Aloud, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::default());
    let aloud =
        Aloud::start_with_sink(CONFIG, aloud::config::MapEnv::default(), Some(sink.clone())).await;
    (aloud, sink)
}

fn headers<'a>(id: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("content-type", "application/json"),
        ("aloud-request-id", id),
        ("x-sim-seed", "11"),
        ("x-sim-think-ms", "400"),
        ("x-sim-tokens", "6"),
        ("x-sim-token-ms", "5"),
    ];
    for (k, v) in extra {
        h.retain(|(name, _)| name != k);
        h.push((k, v));
    }
    h
}

/// (path, body) for each api, streamed or not.
fn call(api: &str, stream: bool) -> (String, String) {
    match api {
        "oai" => ("/oai/v1/chat/completions".into(), format!(r#"{{"model":"gpt-sim","stream":{stream},"stream_options":{{"include_usage":true}},"messages":[{{"role":"user","content":"hi"}}]}}"#).replace(r#","stream_options":{"include_usage":true}"#, if stream { r#","stream_options":{"include_usage":true}"# } else { "" })),
        "resp" => ("/oai/v1/responses".into(), format!(r#"{{"model":"gpt-sim","stream":{stream},"input":"hi","reasoning":{{"summary":"auto"}}}}"#)),
        "ant" => ("/ant/v1/messages".into(), format!(r#"{{"model":"claude-sim","stream":{stream},"max_tokens":100,"thinking":{{"type":"enabled","budget_tokens":50}},"messages":[{{"role":"user","content":"hi"}}]}}"#)),
        "gem" => (
            format!("/gem/v1beta/models/gemini-sim:{}", if stream { "streamGenerateContent?alt=sse" } else { "generateContent" }),
            r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"generationConfig":{"thinkingConfig":{"includeThoughts":true}}}"#.into(),
        ),
        "oll" => ("/oll/api/chat".into(), format!(r#"{{"model":"llama-sim","stream":{stream},"think":true,"messages":[{{"role":"user","content":"hi"}}]}}"#)),
        _ => unreachable!(),
    }
}

async fn exchange(
    aloud: &Aloud,
    sink: &MemorySink,
    id: &str,
    api: &str,
    stream: bool,
    extra: &[(&str, &str)],
) -> (Vec<u8>, CaptureRecord) {
    let (path, body) = call(api, stream);
    let r = post(&aloud.url(&path), &headers(id, extra), body).await;
    let (bytes, clean) = read_to_end(r).await;
    let rec = sink.wait_for(id).await;
    // A cut exchange must reach the client as a failed transfer, never as a clean end (the
    // events tier says so in an `aloud.error` event instead).
    if !extra.contains(&("aloud-progress", "events")) {
        assert_eq!(clean, !rec.partial, "{id}: clean end vs partial record");
    }
    (bytes, rec)
}

fn ordered(a: Option<f64>, b: Option<f64>, what: &str) {
    let (a, b) = (
        a.unwrap_or_else(|| panic!("{what}: first missing")),
        b.unwrap_or_else(|| panic!("{what}: second missing")),
    );
    assert!(a <= b, "{what}: {a} > {b}");
}

#[tokio::test]
async fn every_api_streamed_and_not_gives_a_complete_record() {
    let (aloud, sink) = start().await;
    for api in ["oai", "resp", "ant", "gem", "oll"] {
        let mut texts = Vec::new();
        for stream in [true, false] {
            let id = format!("capture-{api}-{stream}-000001");
            let (_, rec) = exchange(&aloud, &sink, &id, api, stream, &[]).await;
            let what = format!("{api} stream={stream}");
            assert_eq!(rec.outcome, Outcome::Ok, "{what}: {rec:?}");
            assert!(!rec.partial, "{what}");
            assert_eq!(
                (rec.client_status, rec.upstream_status),
                (Some(200), Some(200)),
                "{what}"
            );
            assert_eq!(rec.streamed, stream, "{what}");
            assert_eq!(rec.attempt, 1);
            assert_eq!(rec.tier, "comments");
            assert!(
                rec.model.as_deref().is_some_and(|m| m.ends_with("-sim")),
                "{what}: model {:?}",
                rec.model
            );
            assert!(
                rec.request.as_ref().is_some_and(|r| r.tree().is_object()),
                "{what}"
            );
            let response = rec.response.as_ref().unwrap();
            assert!(!response.text.is_empty(), "{what}: no text");
            assert!(response.finish_reason.is_some(), "{what}: no finish reason");
            let usage = rec.usage.unwrap_or_else(|| panic!("{what}: no usage"));
            assert!(usage.output.is_some_and(|n| n > 0), "{what}: {usage:?}");
            let t = rec.timings;
            ordered(
                t.upstream_headers_ms,
                t.done_ms,
                &format!("{what} headers<=done"),
            );
            ordered(t.first_token_ms, t.done_ms, &format!("{what} token<=done"));
            ordered(
                t.first_feedback_ms,
                t.first_token_ms,
                &format!("{what} feedback<=token"),
            );
            ordered(
                t.client_first_byte_ms,
                t.done_ms,
                &format!("{what} client byte<=done"),
            );
            assert!(
                t.overhead_ms.is_some_and(|o| o >= 0.0) && t.upstream_ms.is_some(),
                "{what}: {t:?}"
            );
            // A whole answer shows nothing until it arrives: the longest silence covers the
            // thinking. (A stream's is filled by comments or reasoning text, both feedback.)
            if !stream {
                assert!(t.longest_silence_ms.unwrap() >= 300.0, "{what}: {t:?}");
            }
            if stream {
                let answer: String = rec
                    .delta_texts()
                    .iter()
                    .filter(|d| d.kind == DeltaKind::Answer)
                    .map(|d| d.text)
                    .collect();
                assert_eq!(answer, response.text, "{what}: deltas rebuild the answer");
                assert!(
                    rec.deltas.windows(2).all(|w| w[0].at_ms <= w[1].at_ms),
                    "{what}: deltas in order"
                );
                assert!(
                    !response.reasoning.is_empty() || api == "oai",
                    "{what}: reasoning"
                );
            }
            texts.push(response.text.clone());
        }
        assert_eq!(
            texts[0], texts[1],
            "{api}: the same seed gives the same answer streamed and not"
        );
    }
    aloud.stop().await;
}

#[tokio::test]
async fn partial_streams_are_kept_and_marked() {
    let (aloud, sink) = start().await;
    // The upstream drops the connection after two tokens.
    let (_, rec) = exchange(
        &aloud,
        &sink,
        "capture-fail-after-0001",
        "oai",
        true,
        &[("x-sim-fail-after", "2")],
    )
    .await;
    assert_eq!(rec.outcome, Outcome::UpstreamError);
    assert!(rec.partial);
    assert_eq!(
        rec.deltas
            .iter()
            .filter(|d| d.kind == DeltaKind::Answer)
            .count(),
        2,
        "{:?}",
        rec.deltas
    );
    // The idle timeout (2 s) cuts a model that thinks for 5 s.
    let (_, rec) = exchange(
        &aloud,
        &sink,
        "capture-idle-timeout-01",
        "oai",
        true,
        &[("x-sim-think-ms", "5000")],
    )
    .await;
    assert_eq!(rec.outcome, Outcome::Timeout);
    assert!(rec.partial);
    // The client leaves after the first bytes.
    let (path, body) = call("ant", true);
    let r = post(
        &aloud.url(&path),
        &headers("capture-client-left-001", &[("x-sim-think-ms", "3000")]),
        body,
    )
    .await;
    let mut b = r.into_body();
    b.frame().await.unwrap().unwrap();
    drop(b);
    let rec = sink.wait_for("capture-client-left-001").await;
    assert_eq!(rec.outcome, Outcome::ClientDisconnected);
    assert!(rec.partial);
    aloud.stop().await;
}

#[tokio::test]
async fn refusals_and_upstream_errors_are_recorded_too() {
    let (aloud, sink) = start().await;
    let (_, rec) = exchange(
        &aloud,
        &sink,
        "capture-upstream-429-01",
        "ant",
        true,
        &[("x-sim-status", "429")],
    )
    .await;
    assert_eq!(rec.outcome, Outcome::UpstreamError);
    assert_eq!(
        (rec.client_status, rec.upstream_status),
        (Some(429), Some(429))
    );
    let r = post(
        &aloud.url("/ant/v1/messages"),
        &headers("capture-too-large-0001", &[]),
        vec![b'x'; 8192],
    )
    .await;
    assert_eq!(r.status(), 413);
    let rec = sink.wait_for("capture-too-large-0001").await;
    assert_eq!(rec.outcome, Outcome::ProxyError);
    assert_eq!((rec.client_status, rec.upstream_status), (Some(413), None));
    assert!(rec.error.as_deref().unwrap().contains("limit"));
    aloud.stop().await;
}

#[tokio::test]
async fn capture_levels_and_the_events_tier() {
    let (aloud, sink) = start().await;
    let r = post(
        &aloud.url("/meta/v1/chat/completions"),
        &headers("capture-metadata-00001", &[]),
        call("oai", true).1,
    )
    .await;
    body_bytes(r).await;
    let rec = sink.wait_for("capture-metadata-00001").await;
    assert!(rec.request.is_none() && rec.response.is_none() && rec.deltas.is_empty());
    assert!(rec.timings.first_token_ms.is_some() && rec.usage.is_some());
    let r = post(
        &aloud.url("/none/v1/chat/completions"),
        &headers("capture-off-0000000001", &[]),
        call("oai", true).1,
    )
    .await;
    body_bytes(r).await;
    // Events tier: progress events are feedback, so the first feedback comes long before the
    // first token and the longest silence is about a heartbeat, not the whole think.
    let (_, rec) = exchange(
        &aloud,
        &sink,
        "capture-events-tier-001",
        "oai",
        true,
        &[("aloud-progress", "events")],
    )
    .await;
    assert_eq!(rec.tier, "events");
    let t = rec.timings;
    assert!(t.first_feedback_ms.unwrap() < 50.0, "{t:?}");
    assert!(t.longest_silence_ms.unwrap() < 350.0, "{t:?}");
    assert!(
        !sink
            .records
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.id == "capture-off-0000000001")
    );
    aloud.stop().await;
}

#[tokio::test]
async fn beacons_attach_to_known_requests_and_refuse_the_rest() {
    let (aloud, sink) = start().await;
    let (_, _) = exchange(&aloud, &sink, "capture-beacon-000001", "oai", true, &[]).await;
    let url = |id: &str, kind: &str| aloud.url(&format!("/aloud/v1/requests/{id}/{kind}"));
    let r = post(
        &url("capture-beacon-000001", "timings"),
        &[
            ("content-type", "text/plain"),
            ("origin", "http://app.test"),
        ],
        r#"{"first_token_painted_ms": 512.5, "done_ms": 900}"#,
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://app.test"
    );
    let r = post(
        &url("capture-beacon-000001", "feedback"),
        &[],
        r#"{"score": 1, "label": "helpful"}"#,
    )
    .await;
    assert_eq!(r.status(), 204);
    let r = post(
        &url("capture-beacon-000001", "feedback"),
        &[],
        r#"{"score": "great"}"#,
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(
        body_json(r).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("feedback body is not valid")
    );
    let r = post(
        &url("never-seen-id-0000001", "timings"),
        &[],
        r#"{"done_ms": 1}"#,
    )
    .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        sink.timings.lock().unwrap()[0].1.first_token_painted_ms,
        Some(512.5)
    );
    assert_eq!(
        sink.feedback.lock().unwrap()[0].1.label.as_deref(),
        Some("helpful")
    );
    aloud.stop().await;
}

#[tokio::test]
async fn a_body_of_known_length_ends_ok_not_as_a_disconnect() {
    // Real providers answer non-streaming calls with Content-Length; hyper then never polls the
    // body for its end, which must still count as complete.
    let up = Upstream::start(|_req| async move {
        response(200, &[("content-type", "application/json")], full(r#"{"object":"chat.completion","choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#))
    })
    .await;
    let sink = Arc::new(MemorySink::default());
    let aloud = Aloud::start_with_sink(
        &route_config(up.addr, "openai", "", ""),
        aloud::config::MapEnv::default(),
        Some(sink.clone()),
    )
    .await;
    let r = post(
        &aloud.url("/up/v1/chat/completions"),
        &[("aloud-request-id", "known-length-body-0001")],
        call("oai", false).1,
    )
    .await;
    assert!(r.headers().contains_key("content-length"));
    assert_eq!(body_bytes(r).await.len(), 142);
    let rec = sink.wait_for("known-length-body-0001").await;
    assert_eq!(rec.outcome, Outcome::Ok, "{rec:?}");
    assert!(!rec.partial);
    assert_eq!(rec.response.unwrap().text, "hi");
    aloud.stop().await;
}
