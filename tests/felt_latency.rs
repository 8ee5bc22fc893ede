//! Latency as the user felt it, through the real proxy for every api (issue 10 §3): reasoning
//! text is first feedback; a whole answer with reasoning has `first_reasoning_ms`; an answer
//! whose first content is a tool call has `first_token_ms`; an error after a 2xx status is
//! `partial`. And `aloud.error` carries the upstream's own status, message and type (§2).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use aloud::capture::{CaptureRecord, Outcome};
use hyper::body::Incoming;
use std::sync::Arc;
use support::wire::parse_sse;
use support::*;

/// One simulator route per api, plus `[[routes]]` in `extra`.
fn config(extra: &str) -> String {
    let mut toml = String::from("[progress]\nheartbeat = \"100ms\"\n");
    for (name, api) in [
        ("oai", "openai"),
        ("ant", "anthropic"),
        ("gem", "gemini"),
        ("oll", "ollama"),
    ] {
        toml.push_str(&format!(
            "[[routes]]\nname = \"{name}\"\nprefix = \"/{name}\"\nupstream = \"builtin:simulator\"\napi = \"{api}\"\n"
        ));
    }
    toml + extra
}

async fn start(extra: &str) -> (Aloud, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::default());
    let aloud = Aloud::start_with_sink(
        &config(extra),
        aloud::config::MapEnv::default(),
        Some(sink.clone()),
    )
    .await;
    (aloud, sink)
}

/// (path, body) on the simulator routes, with reasoning asked for where the api needs it.
fn call(api: &str, stream: bool) -> (String, String) {
    match api {
        "chat" => ("/oai/v1/chat/completions".into(), format!(r#"{{"model":"gpt-sim","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#)),
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

const APIS: [&str; 5] = ["chat", "resp", "ant", "gem", "oll"];

async fn exchange(
    aloud: &Aloud,
    sink: &MemorySink,
    id: &str,
    (path, body): (String, String),
    extra: &[(&str, &str)],
) -> (String, CaptureRecord) {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("aloud-request-id", id),
        ("x-sim-seed", "5"),
        ("x-sim-think-ms", "300"),
        ("x-sim-tokens", "4"),
        ("x-sim-token-ms", "5"),
        ("x-sim-reasoning-content", "1"),
    ];
    headers.extend_from_slice(extra);
    let r = post(&aloud.url(&path), &headers, body).await;
    let (bytes, _) = read_to_end(r).await;
    let rec = sink.wait_for(id).await;
    (String::from_utf8_lossy(&bytes).into_owned(), rec)
}

#[tokio::test]
async fn streamed_reasoning_is_the_first_feedback_in_every_api() {
    let (aloud, sink) = start("").await;
    for api in APIS {
        // The off tier: no aloud event comes first, so the reasoning text is what the user saw.
        let id = format!("felt-reasoning-{api}-0001");
        let (_, rec) = exchange(
            &aloud,
            &sink,
            &id,
            call(api, true),
            &[("aloud-progress", "off")],
        )
        .await;
        let t = rec.timings;
        assert_eq!(rec.outcome, Outcome::Ok, "{api}: {rec:?}");
        let reasoning = t
            .first_reasoning_ms
            .unwrap_or_else(|| panic!("{api}: {t:?}"));
        assert_eq!(t.first_feedback_ms, Some(reasoning), "{api}: {t:?}");
        // The simulator thinks 300 ms before its first answer token.
        assert!(
            t.first_token_ms.unwrap() >= reasoning + 100.0,
            "{api}: {t:?}"
        );
    }
    aloud.stop().await;
}

#[tokio::test]
async fn a_whole_answer_with_reasoning_has_its_first_reasoning_in_every_api_and_tier() {
    let (aloud, sink) = start("").await;
    for api in APIS {
        for tier in ["off", "events"] {
            let id = format!("felt-whole-{api}-{tier}-0001");
            let (_, rec) = exchange(
                &aloud,
                &sink,
                &id,
                call(api, false),
                &[("aloud-progress", tier)],
            )
            .await;
            let what = format!("{api} {tier}");
            assert_eq!(rec.outcome, Outcome::Ok, "{what}: {rec:?}");
            assert!(!rec.streamed, "{what}");
            let response = rec.response.as_ref().unwrap();
            assert!(!response.reasoning.is_empty(), "{what}: {response:?}");
            let t = rec.timings;
            let reasoning = t
                .first_reasoning_ms
                .unwrap_or_else(|| panic!("{what}: no first_reasoning_ms: {t:?}"));
            // At body completion: after the head and the first byte, no later than the end.
            assert!(
                t.upstream_headers_ms.unwrap() <= reasoning && reasoning <= t.done_ms.unwrap(),
                "{what}: {t:?}"
            );
        }
    }
    aloud.stop().await;
}

/// An answer whose only content is a tool call, in each api's shape, streamed or whole.
fn tool_call_body(path: &str, stream: bool) -> (&'static str, &'static str) {
    const SSE: &str = "text/event-stream";
    const JSON: &str = "application/json";
    match (path, stream) {
        (p, true) if p.ends_with("/chat/completions") => (
            SSE,
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}\n\n\
             data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n\
             data: [DONE]\n\n",
        ),
        (p, false) if p.ends_with("/chat/completions") => (
            JSON,
            r#"{"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#,
        ),
        (p, true) if p.ends_with("/responses") => (
            SSE,
            "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"type\":\"function_call\",\"id\":\"fc1\",\"call_id\":\"c1\",\"name\":\"get_weather\",\"arguments\":\"\"}}\n\n\
             event: response.function_call_arguments.delta\ndata: {\"type\":\"response.function_call_arguments.delta\",\"item_id\":\"fc1\",\"output_index\":0,\"delta\":\"{}\"}\n\n\
             event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r1\",\"status\":\"completed\",\"output\":[]}}\n\n",
        ),
        (p, false) if p.ends_with("/responses") => (
            JSON,
            r#"{"object":"response","status":"completed","output":[{"type":"function_call","call_id":"c1","name":"get_weather","arguments":"{}"}]}"#,
        ),
        (p, true) if p.ends_with("/messages") => (
            SSE,
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m1\",\"model\":\"c\",\"usage\":{\"input_tokens\":1}}}\n\n\
             event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"get_weather\",\"input\":{}}}\n\n\
             event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n\
             event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
             event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":5}}\n\n\
             event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        ),
        (p, false) if p.ends_with("/messages") => (
            JSON,
            r#"{"type":"message","role":"assistant","content":[{"type":"tool_use","id":"t1","name":"get_weather","input":{}}],"stop_reason":"tool_use"}"#,
        ),
        (p, true) if p.contains(":streamGenerateContent") => (
            SSE,
            "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":\"get_weather\",\"args\":{}}}]},\"finishReason\":\"STOP\"}]}\n\n",
        ),
        (p, false) if p.contains(":generateContent") => (
            JSON,
            r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"get_weather","args":{}}}]},"finishReason":"STOP"}]}"#,
        ),
        (_, true) => (
            "application/x-ndjson",
            "{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"get_weather\",\"arguments\":{}}}]},\"done\":false}\n\
             {\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\"}\n",
        ),
        (_, false) => (
            JSON,
            r#"{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{}}}]},"done":true,"done_reason":"stop"}"#,
        ),
    }
}

/// A mock upstream answering with [`tool_call_body`]; `x-mock-stream: 1` asks for the stream.
async fn tool_upstream() -> Upstream {
    Upstream::start(|req: http::Request<Incoming>| async move {
        let path = req.uri().path().to_owned();
        let stream = req.headers().contains_key("x-mock-stream");
        let (ct, body) = tool_call_body(&path, stream);
        response(200, &[("content-type", ct)], full(body))
    })
    .await
}

#[tokio::test]
async fn an_answer_that_starts_with_a_tool_call_has_its_first_token_in_every_api() {
    let up = tool_upstream().await;
    let mut routes = String::new();
    for (name, api) in [
        ("toai", "openai"),
        ("tant", "anthropic"),
        ("tgem", "gemini"),
        ("toll", "ollama"),
    ] {
        routes.push_str(&format!(
            "[[routes]]\nname = \"{name}\"\nprefix = \"/{name}\"\nupstream = \"http://{}\"\napi = \"{api}\"\n",
            up.addr
        ));
    }
    let (aloud, sink) = start(&routes).await;
    let paths = [
        ("/toai/v1/chat/completions", "/toai/v1/chat/completions"),
        ("/toai/v1/responses", "/toai/v1/responses"),
        ("/tant/v1/messages", "/tant/v1/messages"),
        (
            "/tgem/v1beta/models/g:streamGenerateContent?alt=sse",
            "/tgem/v1beta/models/g:generateContent",
        ),
        ("/toll/api/chat", "/toll/api/chat"),
    ];
    for (n, (streamed, whole)) in paths.into_iter().enumerate() {
        for stream in [true, false] {
            let id = format!("felt-tool-{n}-{stream}-0001");
            let path = if stream { streamed } else { whole };
            let mut extra = vec![("aloud-progress", "off")];
            if stream {
                extra.push(("x-mock-stream", "1"));
            }
            let (_, rec) = exchange(&aloud, &sink, &id, (path.into(), "{}".into()), &extra).await;
            let what = format!("{path} stream={stream}");
            assert_eq!(rec.outcome, Outcome::Ok, "{what}: {rec:?}");
            assert_eq!(rec.streamed, stream, "{what}");
            let calls = &rec.response.as_ref().unwrap().tool_calls;
            assert_eq!(calls.len(), 1, "{what}: {calls:?}");
            let t = rec.timings;
            assert!(
                t.first_token_ms.is_some(),
                "{what}: no first_token_ms: {t:?}"
            );
            assert_eq!(t.first_feedback_ms, t.first_token_ms, "{what}: {t:?}");
        }
    }
    aloud.stop().await;
}

#[tokio::test]
async fn an_error_after_a_2xx_status_is_partial() {
    // The upstream says 200, then its stream carries an error and ends.
    let up = Upstream::start(|_req: http::Request<Incoming>| async move {
        let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                    data: {\"error\":{\"message\":\"The server is overloaded\",\"type\":\"server_error\"}}\n\n";
        response(200, &[("content-type", "text/event-stream")], full(body))
    })
    .await;
    let route = format!(
        "[[routes]]\nname = \"up\"\nprefix = \"/up\"\nupstream = \"http://{}\"\napi = \"openai\"\n",
        up.addr
    );
    let (aloud, sink) = start(&route).await;
    let chat = || ("/up/v1/chat/completions".to_owned(), "{}".to_owned());
    for tier in ["off", "comments", "events"] {
        let id = format!("felt-midstream-{tier}-0001");
        let (_, rec) = exchange(&aloud, &sink, &id, chat(), &[("aloud-progress", tier)]).await;
        assert_eq!(rec.outcome, Outcome::UpstreamError, "{tier}: {rec:?}");
        assert_eq!(rec.client_status, Some(200), "{tier}");
        assert!(rec.partial, "{tier}: an error after 200 is partial");
    }
    // The events tier commits 200 before the upstream answers 429: partial too.
    let (_, rec) = exchange(
        &aloud,
        &sink,
        "felt-committed-429-0001",
        call("chat", true),
        &[("aloud-progress", "events"), ("x-sim-status", "429")],
    )
    .await;
    assert_eq!(
        (rec.client_status, rec.upstream_status),
        (Some(200), Some(429))
    );
    assert!(rec.partial, "{rec:?}");
    // Without aloud's commit the client gets the 429 itself: not partial.
    let (_, rec) = exchange(
        &aloud,
        &sink,
        "felt-plain-429-00001",
        call("chat", true),
        &[("aloud-progress", "off"), ("x-sim-status", "429")],
    )
    .await;
    assert_eq!(rec.client_status, Some(429));
    assert!(!rec.partial, "{rec:?}");
    aloud.stop().await;
}

#[tokio::test]
async fn aloud_error_carries_the_upstreams_status_message_and_type_in_every_api() {
    let (aloud, sink) = start("").await;
    for (api, kind) in [
        ("chat", Some("rate_limit_error")),
        ("ant", Some("rate_limit_error")),
        ("gem", Some("RESOURCE_EXHAUSTED")),
        ("oll", None),
    ] {
        for stream in [true, false] {
            let id = format!("felt-error-{api}-{stream}-0001");
            let (text, _) = exchange(
                &aloud,
                &sink,
                &id,
                call(api, stream),
                &[("aloud-progress", "events"), ("x-sim-status", "429")],
            )
            .await;
            let events = parse_sse(&text);
            let error = events
                .iter()
                .find(|e| e.event.as_deref() == Some("aloud.error"))
                .unwrap_or_else(|| panic!("{api}: no aloud.error in {text}"))
                .json();
            assert_eq!(error["status"], 429, "{api}: {error}");
            assert_eq!(error["code"], "upstream_status", "{api}: {error}");
            assert_eq!(
                error["message"], "simulated 429 error (x-sim-status)",
                "{api}: {error}"
            );
            assert_eq!(error["type"].as_str(), kind, "{api}: {error}");
            assert!(error.get("body").is_some(), "{api}: {error}");
            // The side channel replays the same event.
            let replay =
                body_bytes(get(&aloud.url(&format!("/aloud/v1/progress/{id}"))).await).await;
            let replayed = parse_sse(&String::from_utf8_lossy(&replay));
            let side = replayed
                .iter()
                .find(|e| e.event.as_deref() == Some("aloud.error"))
                .unwrap_or_else(|| panic!("{api}: no aloud.error replayed"))
                .json();
            assert_eq!(side, error, "{api}");
        }
    }
    aloud.stop().await;
}
