//! The three progress tiers over real sockets, with the simulator as upstream.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "test upstream drivers end with the test"
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

/// Parses an SSE body into (event name, data) pairs (comments dropped), as a browser would.
fn events(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for block in body.replace("\r\n", "\n").split("\n\n") {
        let mut name = String::from("message");
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                name = v.to_owned();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push(v);
            }
        }
        if !data.is_empty() {
            out.push((name, data.join("\n")));
        }
    }
    out
}

#[tokio::test]
async fn comments_are_never_added_to_gemini_or_ollama_streams() {
    let aloud = Aloud::start(SIM).await;
    let h = [
        ("content-type", "application/json"),
        ("x-sim-seed", "3"),
        ("x-sim-think-ms", "700"),
        ("x-sim-tokens", "2"),
        ("x-sim-token-ms", "1"),
    ];
    let gem = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    let r = post(
        &aloud.url("/gem/v1beta/models/m:streamGenerateContent?alt=sse"),
        &h,
        gem,
    )
    .await;
    let body = text(r).await;
    assert!(
        !body.contains(": aloud") && body.contains("\"candidates\""),
        "{body}"
    );
    let oll = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let r = post(&aloud.url("/oll/api/chat"), &h, oll).await;
    let body = text(r).await;
    assert!(
        !body.contains(": aloud") && body.contains("\"done\":true"),
        "{body}"
    );
    aloud.stop().await;
}

#[tokio::test]
async fn nor_to_the_openai_compatible_endpoints_of_gemini_and_ollama_routes() {
    use support::scripted::Scripted;
    use support::wire::Conn;
    let up = Scripted::start().await;
    let mut toml = String::from("[progress]\nheartbeat = \"100ms\"\n");
    for (name, api) in [("oai", "openai"), ("gem", "gemini"), ("oll", "ollama")] {
        toml.push_str(&format!(
            "[[routes]]\nname = \"{name}\"\nprefix = \"/{name}\"\nupstream = \"http://{}\"\napi = \"{api}\"\n",
            up.addr()
        ));
    }
    let aloud = Aloud::start(&toml).await;
    let mock = [("x-mock", "close-on-go")];
    // Both answer OpenAI SSE; the route's api decides, as the docs say.
    let gem = Conn::chat(
        aloud.addr,
        "/gem/v1beta/openai/chat/completions",
        "comments",
        &mock,
    )
    .await;
    let oll = Conn::chat(aloud.addr, "/oll/v1/chat/completions", "comments", &mock).await;
    let mut oai = Conn::chat(aloud.addr, "/oai/v1/chat/completions", "comments", &mock).await;
    // The OpenAI route's comment shows a silence past the heartbeat; the others, which
    // started first, were as silent for longer.
    oai.until_contains(": aloud").await;
    for _ in 0..3 {
        up.go();
    }
    for (path, conn) in [("gemini", gem), ("ollama", oll)] {
        let text = conn.finish().await.text();
        assert!(text.contains("\"Hel\""), "{path}: {text}");
        assert!(!text.contains(": aloud"), "{path}: {text}");
    }
    drop(oai);
    aloud.stop().await;
}

#[tokio::test]
async fn a_non_streaming_call_stays_plain_json_however_long_it_takes() {
    let aloud = Aloud::start(SIM).await;
    let h = [
        ("content-type", "application/json"),
        ("x-sim-seed", "3"),
        ("x-sim-think-ms", "1500"),
        ("x-sim-tokens", "2"),
        ("x-sim-token-ms", "1"),
    ];
    let r = post(
        &aloud.url("/sim/v1/chat/completions"),
        &h,
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = serde_json::from_str(&text(r).await).unwrap();
    assert_eq!(v["object"], "chat.completion");
    aloud.stop().await;
}

#[tokio::test]
async fn fast_failures_keep_their_status_and_slow_ones_take_the_streams_error_shape() {
    let aloud = Aloud::start(SIM).await;
    let fast = [
        ("content-type", "application/json"),
        ("x-sim-status", "429"),
    ];
    let r = post(&aloud.url("/sim/v1/chat/completions"), &fast, CHAT).await;
    assert_eq!(r.status(), 429);
    let slow = [
        ("content-type", "application/json"),
        ("x-sim-status", "529"),
        ("x-sim-headers-ms", "1500"),
    ];
    let ant =
        r#"{"model":"m","stream":true,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = post(&aloud.url("/ant/v1/messages"), &slow, ant).await;
    assert_eq!(r.status(), 200, "committed after the hold");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = text(r).await;
    let ev = events(&body);
    let (name, data) = ev.last().unwrap();
    assert_eq!(name, "error", "{body}");
    let v: Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "overloaded_error");
    let status_note = comments(&body)
        .into_iter()
        .find(|c| c.get("upstream_status").is_some())
        .unwrap();
    assert_eq!(status_note["upstream_status"], 529);
    let r = post(
        &aloud.url("/sim/v1/chat/completions"),
        &[
            ("content-type", "application/json"),
            ("x-sim-status", "500"),
            ("x-sim-headers-ms", "1500"),
        ],
        CHAT,
    )
    .await;
    let body = text(r).await;
    let (name, data) = events(&body).pop().unwrap();
    assert_eq!(name, "message");
    assert!(
        serde_json::from_str::<Value>(&data).unwrap()["error"]["message"].is_string(),
        "{body}"
    );
    aloud.stop().await;
}

#[tokio::test]
async fn the_events_tier_wraps_the_stream_in_progress_events() {
    let aloud = Aloud::start(SIM).await;
    let h = [
        ("content-type", "application/json"),
        ("aloud-progress", "events"),
        ("x-sim-seed", "3"),
        ("x-sim-think-ms", "500"),
        ("x-sim-tokens", "3"),
        ("x-sim-token-ms", "1"),
    ];
    let responses = r#"{"model":"m","stream":true,"input":"hi","reasoning":{"summary":"auto"}}"#;
    let r = post(&aloud.url("/sim/v1/responses"), &h, responses).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let id = r.headers()["aloud-request-id"].to_str().unwrap().to_owned();
    let body = text(r).await;
    let ev = events(&body);
    assert_eq!(ev[0].0, "aloud.progress");
    let first: Value = serde_json::from_str(&ev[0].1).unwrap();
    assert_eq!(first["phase"], "accepted");
    assert_eq!(first["request_id"], id.as_str());
    let progress: Vec<Value> = ev
        .iter()
        .filter(|e| e.0 == "aloud.progress")
        .map(|e| serde_json::from_str(&e.1).unwrap())
        .collect();
    let phases: Vec<&str> = progress
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    for want in ["accepted", "connecting", "thinking", "generating", "done"] {
        assert!(phases.contains(&want), "{want} missing from {phases:?}");
    }
    let seqs: Vec<u64> = progress
        .iter()
        .map(|p| p["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(
        progress
            .iter()
            .any(|p| p["label"].as_str().unwrap().len() > 3 && p["phase"] == "thinking")
    );
    // Upstream events are there unchanged, with their own names.
    assert!(ev.iter().any(|e| e.0 == "response.output_text.delta"));
    assert!(body.contains("event: response.completed\ndata: {"));
    let (name, done) = ev.last().unwrap();
    assert_eq!(name, "aloud.done");
    let done: Value = serde_json::from_str(done).unwrap();
    assert!(
        done["timings"]["first_token_ms"].as_f64().unwrap()
            >= done["timings"]["upstream_headers_ms"].as_f64().unwrap()
    );
    assert!(done["timings"]["total_ms"].as_f64().unwrap() > 400.0);
    aloud.stop().await;
}

#[tokio::test]
async fn the_events_tier_carries_ndjson_as_data_events_and_wraps_plain_json() {
    let aloud = Aloud::start(SIM).await;
    let h = [
        ("content-type", "application/json"),
        ("aloud-progress", "events"),
        ("x-sim-seed", "3"),
        ("x-sim-think-ms", "50"),
        ("x-sim-tokens", "3"),
        ("x-sim-token-ms", "1"),
    ];
    let oll = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let body = text(post(&aloud.url("/oll/api/chat"), &h, oll).await).await;
    let lines: Vec<Value> = events(&body)
        .into_iter()
        .filter(|e| e.0 == "message")
        .map(|e| serde_json::from_str(&e.1).unwrap())
        .collect();
    assert!(lines.len() >= 4, "{body}");
    assert_eq!(lines.last().unwrap()["done"], true);
    let plain = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let body = text(post(&aloud.url("/sim/v1/chat/completions"), &h, plain).await).await;
    let ev = events(&body);
    let result = ev.iter().find(|e| e.0 == "aloud.result").unwrap();
    let v: Value = serde_json::from_str(&result.1).unwrap();
    assert_eq!(v["status"], 200);
    assert_eq!(v["body"]["object"], "chat.completion");
    assert_eq!(v["headers"]["content-type"], "application/json");
    assert_eq!(ev.last().unwrap().0, "aloud.done");
    let err = [
        ("content-type", "application/json"),
        ("aloud-progress", "events"),
        ("x-sim-status", "401"),
    ];
    let body = text(post(&aloud.url("/sim/v1/chat/completions"), &err, plain).await).await;
    let e = events(&body)
        .into_iter()
        .find(|e| e.0 == "aloud.error")
        .unwrap();
    let v: Value = serde_json::from_str(&e.1).unwrap();
    assert_eq!(v["status"], 401);
    assert!(v["body"]["error"]["message"].is_string());
    aloud.stop().await;
}

#[tokio::test]
async fn errors_before_the_upstream_keep_their_status_in_the_events_tier() {
    let aloud = Aloud::start(
        &(SIM.to_owned().replace(
            "api = \"openai\"\n[[routes]]\nname = \"simant\"",
            "api = \"openai\"\nmax_request_body = \"1KiB\"\n[[routes]]\nname = \"simant\"",
        )),
    )
    .await;
    let ev = [("aloud-progress", "events")];
    assert_eq!(post(&aloud.url("/nowhere"), &ev, "{}").await.status(), 404);
    assert_eq!(
        post(
            &aloud.url("/sim/v1/chat/completions"),
            &ev,
            vec![b'x'; 4096]
        )
        .await
        .status(),
        413
    );
    assert_eq!(
        post(
            &aloud.url("/sim/v1/chat/completions"),
            &[("aloud-progress", "events"), ("aloud-request-id", "bad")],
            "{}"
        )
        .await
        .status(),
        400
    );
    let r = post(
        &aloud.url("/sim/v1/chat/completions"),
        &[("aloud-progress", "loud")],
        "{}",
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(text(r).await.contains("Aloud-Progress must be one of"));
    aloud.stop().await;
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn compressed_upstreams_are_read_but_never_injected_into() {
    let sse =
        b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n".to_vec();
    let zipped = gzip(&sse);
    let json = gzip(br#"{"object":"chat.completion","choices":[{"message":{"content":"hi"}}]}"#);
    let asked_identity = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let seen = asked_identity.clone();
    let up = Upstream::start(move |req: http::Request<hyper::body::Incoming>| {
        let (zipped, json, seen) = (zipped.clone(), json.clone(), seen.clone());
        async move {
            if req
                .headers()
                .get("accept-encoding")
                .is_none_or(|v| v != "identity")
            {
                seen.store(false, std::sync::atomic::Ordering::SeqCst);
            }
            if req.uri().path().ends_with("plain") {
                return response(
                    200,
                    &[
                        ("content-type", "application/json"),
                        ("content-encoding", "gzip"),
                    ],
                    full(json),
                );
            }
            // Half the body, a silence long enough for several heartbeats, then the rest.
            let (tx, body) = channel_body();
            let (a, b) = zipped.split_at(zipped.len() / 2);
            let (a, b) = (
                bytes::Bytes::copy_from_slice(a),
                bytes::Bytes::copy_from_slice(b),
            );
            tokio::spawn(async move {
                tx.send(a).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(700)).await;
                tx.send(b).await.unwrap();
            });
            response(
                200,
                &[
                    ("content-type", "text/event-stream"),
                    ("content-encoding", "gzip"),
                ],
                body,
            )
        }
    })
    .await;
    let toml = route_config(up.addr, "openai", "", "").replace(
        "[server]\n",
        "[progress]\nheartbeat = \"100ms\"\n[server]\n",
    );
    let aloud = Aloud::start(&toml).await;
    let r = post(
        &aloud.url("/up/v1/chat/completions"),
        &[("accept-encoding", "gzip")],
        CHAT,
    )
    .await;
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        bytes.to_vec(),
        gzip_again_check(&bytes, &sse),
        "compressed bytes pass through unchanged, nothing injected"
    );
    let body = text(
        post(
            &aloud.url("/up/v1/plain"),
            &[("aloud-progress", "events")],
            CHAT,
        )
        .await,
    )
    .await;
    let result = events(&body)
        .into_iter()
        .find(|e| e.0 == "aloud.result")
        .unwrap();
    let v: Value = serde_json::from_str(&result.1).unwrap();
    assert_eq!(
        v["body"]["choices"][0]["message"]["content"], "hi",
        "decoded before wrapping"
    );
    assert!(
        asked_identity.load(std::sync::atomic::Ordering::SeqCst),
        "aloud asks upstreams for identity"
    );
    aloud.stop().await;
}

/// The relayed bytes must be exactly the upstream's gzip stream: decoding them gives the SSE.
fn gzip_again_check(relayed: &[u8], sse: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(relayed)
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, sse);
    relayed.to_vec()
}

#[tokio::test]
async fn configured_label_ladders_replace_the_defaults() {
    let toml = SIM.replace(
        "hold = \"1s\"\n",
        "hold = \"1s\"\n[progress.labels]\nwaiting = [{ after = \"0s\", text = \"Hang on\" }, { after = \"300ms\", text = \"Still going\" }]\n",
    );
    let aloud = Aloud::start(&toml).await;
    let h = [
        ("content-type", "application/json"),
        ("aloud-progress", "events"),
        ("x-sim-seed", "3"),
        ("x-sim-think-ms", "700"),
        ("x-sim-tokens", "2"),
        ("x-sim-token-ms", "1"),
    ];
    let body = text(post(&aloud.url("/sim/v1/chat/completions"), &h, CHAT).await).await;
    let labels: Vec<String> = events(&body)
        .into_iter()
        .filter(|e| e.0 == "aloud.progress")
        .map(|e| serde_json::from_str::<Value>(&e.1).unwrap())
        .filter(|p| p["phase"] == "waiting")
        .map(|p| p["label"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        labels.first().map(String::as_str),
        Some("Hang on"),
        "{labels:?}"
    );
    assert!(labels.iter().any(|l| l == "Still going"), "{labels:?}");
    aloud.stop().await;
}
