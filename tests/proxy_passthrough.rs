//! Pass-through over real sockets: bytes, headers, chunk-by-chunk streaming, ids, routing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use std::sync::{Arc, Mutex};
use support::*;

const SSE: &str = "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"h\\u00e9\"}}]}\n\n: keep\r\n\r\nevent: x\ndata: 2\n\ndata: [DONE]\n\n";
const NDJSON: &str =
    "{\"message\":{\"content\":\"a\"},\"done\":false}\n{\"done\":true,\"eval_count\":3}\n";
const JSON: &str = "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"choices\":[]}";

async fn echo_upstream() -> Upstream {
    Upstream::start(|req: Request<hyper::body::Incoming>| async move {
        let (ct, body) = match req.uri().path() {
            "/v1/sse" => ("text/event-stream", SSE),
            "/v1/ndjson" => ("application/x-ndjson", NDJSON),
            _ => ("application/json", JSON),
        };
        response(
            200,
            &[
                ("content-type", ct),
                ("x-upstream", "yes"),
                ("connection", "x-drop-me"),
                ("x-drop-me", "1"),
            ],
            full(body),
        )
    })
    .await
}

#[tokio::test]
async fn json_sse_and_ndjson_bodies_pass_byte_for_byte() {
    let up = echo_upstream().await;
    let aloud = Aloud::start(&route_config(up.addr, "openai", "", "")).await;
    for (path, expected) in [
        ("/up/v1/json", JSON),
        ("/up/v1/sse", SSE),
        ("/up/v1/ndjson", NDJSON),
    ] {
        let r = post(
            &aloud.url(path),
            &[("content-type", "application/json")],
            "{}",
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-upstream"], "yes");
        assert!(
            !r.headers().contains_key("x-drop-me"),
            "connection-named header must not pass"
        );
        assert!(r.headers().contains_key("aloud-request-id"));
        let is_sse = path.ends_with("sse");
        assert_eq!(
            r.headers()
                .get("cache-control")
                .is_some_and(|v| v == "no-cache"),
            is_sse
        );
        assert_eq!(
            r.headers()
                .get("x-accel-buffering")
                .is_some_and(|v| v == "no"),
            is_sse
        );
        assert_eq!(body_bytes(r).await, Bytes::from(expected), "{path}");
    }
    aloud.stop().await;
}

#[tokio::test]
async fn a_lockstep_upstream_proves_nothing_is_buffered() {
    // The upstream sends chunk N+1 only after the client has read chunk N.
    let (next_tx, next_rx) = tokio::sync::mpsc::channel::<()>(1);
    let next_rx = Arc::new(tokio::sync::Mutex::new(next_rx));
    let up = Upstream::start(move |_req| {
        let next_rx = Arc::clone(&next_rx);
        async move {
            let (tx, body) = channel_body();
            #[expect(clippy::disallowed_methods, reason = "test upstream driver")]
            tokio::spawn(async move {
                let mut next = next_rx.lock().await;
                for i in 0..20 {
                    tx.send(Bytes::from(format!("data: {i}\n\n")))
                        .await
                        .unwrap();
                    if next.recv().await.is_none() {
                        return;
                    }
                }
            });
            response(200, &[("content-type", "text/event-stream")], body)
        }
    })
    .await;
    // The default (comments) tier with a heartbeat no step of a slow run reaches: the frames
    // are compared byte for byte.
    let slow_heartbeat = "\n[progress]\nheartbeat = \"1h\"";
    let aloud = Aloud::start(&route_config(up.addr, "openai", "", slow_heartbeat)).await;
    let r = post(&aloud.url("/up/stream"), &[], "{}").await;
    let mut body = r.into_body();
    for i in 0..20 {
        let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(frame, Bytes::from(format!("data: {i}\n\n")));
        next_tx.send(()).await.unwrap();
    }
    drop(next_tx);
    assert!(body.frame().await.is_none());
    aloud.stop().await;
}

#[derive(Default, Clone)]
struct Seen {
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn recording_upstream() -> (Upstream, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = Arc::clone(&seen);
    let up = Upstream::start(move |req: Request<hyper::body::Incoming>| {
        let s = Arc::clone(&s);
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            *s.lock().unwrap() = Seen {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
                    .collect(),
                body: body.to_vec(),
            };
            response(200, &[("content-type", "application/json")], full("{}"))
        }
    })
    .await;
    (up, seen)
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn request_headers_are_cleaned_and_the_body_and_query_kept() {
    let (up, seen) = recording_upstream().await;
    let aloud = Aloud::start(&route_config(up.addr, "openai", "", "")).await;
    let body = vec![b'x'; 300_000];
    let req = Request::patch(aloud.url("/up/v1/things/7?a=1&b=%20two"))
        .header("host", "evil.example")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic Zm9v")
        .header("aloud-progress", "off")
        .header("x-custom", "kept")
        .header("authorization", "Bearer sk-client")
        .body(full(body.clone()))
        .unwrap();
    let r = send(req).await;
    assert_eq!(r.status(), 200);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.method, "PATCH");
    assert_eq!(seen.uri, "/v1/things/7?a=1&b=%20two");
    assert_eq!(header(&seen, "host"), Some(up.addr.to_string().as_str()));
    for gone in [
        "x-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "aloud-progress",
    ] {
        assert_eq!(header(&seen, gone), None, "{gone} must not go upstream");
    }
    assert_eq!(header(&seen, "x-custom"), Some("kept"));
    assert_eq!(header(&seen, "authorization"), Some("Bearer sk-client"));
    assert_eq!(seen.body, body);
    aloud.stop().await;
}

#[tokio::test]
async fn absolute_uris_cannot_reach_another_host() {
    let (up, seen) = recording_upstream().await;
    let aloud = Aloud::start(&route_config(up.addr, "openai", "", "")).await;
    let raw = String::from(
        "GET http://169.254.169.254/up/v1/x HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n",
    );
    let out = String::from_utf8_lossy(&raw_exchange(aloud.addr, raw.as_bytes()).await).to_string();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(seen.lock().unwrap().uri, "/v1/x");
    aloud.stop().await;
}

#[tokio::test]
async fn routes_match_on_segment_boundaries_and_unknown_paths_get_404() {
    let (up, _seen) = recording_upstream().await;
    let aloud = Aloud::start(&route_config(up.addr, "openai", "", "")).await;
    assert_eq!(get(&aloud.url("/up")).await.status(), 200);
    assert_eq!(get(&aloud.url("/up/x")).await.status(), 200);
    let r = get(&aloud.url("/upx")).await;
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("aloud-request-id"));
    let body = body_json(r).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no route matches /upx")
    );
    let r = get(&aloud.url("/")).await;
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["location"], "/aloud/");
    let r = get(&aloud.url("/healthz")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(body_json(r).await["status"], "ok");
    aloud.stop().await;
}

#[tokio::test]
async fn request_ids_are_echoed_generated_or_refused() {
    let (up, seen) = recording_upstream().await;
    let aloud = Aloud::start(&route_config(up.addr, "anthropic", "", "")).await;
    let r = post(
        &aloud.url("/up/v1/messages"),
        &[("aloud-request-id", "my-client-id_000001")],
        "{}",
    )
    .await;
    assert_eq!(r.headers()["aloud-request-id"], "my-client-id_000001");
    assert_eq!(header(&seen.lock().unwrap(), "aloud-request-id"), None);
    let r = post(&aloud.url("/up/v1/messages"), &[], "{}").await;
    let id = r.headers()["aloud-request-id"].to_str().unwrap().to_owned();
    let parsed = uuid::Uuid::parse_str(&id).unwrap();
    assert_eq!(parsed.get_version_num(), 7);
    for bad in ["short", "has a space in it!!", &"x".repeat(65)] {
        let r = post(
            &aloud.url("/up/v1/messages"),
            &[("aloud-request-id", bad)],
            "{}",
        )
        .await;
        assert_eq!(r.status(), 400, "{bad}");
        assert_ne!(r.headers()["aloud-request-id"], bad);
        let body = body_json(r).await;
        assert_eq!(body["type"], "error", "anthropic envelope");
        assert!(body["error"]["message"].as_str().unwrap().contains("16-64"));
    }
    aloud.stop().await;
}

#[tokio::test]
async fn credentials_pass_through_or_are_injected_per_api() {
    let (up, seen) = recording_upstream().await;
    for (api, header_name, expected) in [
        ("openai", "authorization", "Bearer sk-env"),
        ("anthropic", "x-api-key", "sk-env"),
        ("gemini", "x-goog-api-key", "sk-env"),
        ("ollama", "authorization", "Bearer sk-env"),
    ] {
        let env = aloud::config::MapEnv::default().with("UP_KEY", "sk-env");
        let aloud = Aloud::start_with_env(
            &route_config(up.addr, api, "api_key_env = \"UP_KEY\"", ""),
            env,
        )
        .await;
        post(&aloud.url("/up/v1/x"), &[], "{}").await;
        assert_eq!(
            header(&seen.lock().unwrap(), header_name),
            Some(expected),
            "{api}"
        );
        // A client credential wins, in any of the credential headers.
        post(&aloud.url("/up/v1/x"), &[("api-key", "client")], "{}").await;
        assert_eq!(header(&seen.lock().unwrap(), header_name), None, "{api}");
        assert_eq!(header(&seen.lock().unwrap(), "api-key"), Some("client"));
        // Gemini's key query parameter counts as a credential.
        post(&aloud.url("/up/v1/x?key=client"), &[], "{}").await;
        assert_eq!(header(&seen.lock().unwrap(), header_name), None, "{api}");
        assert_eq!(seen.lock().unwrap().uri, "/v1/x?key=client");
        aloud.stop().await;
    }
}

#[tokio::test]
async fn client_tokens_gate_use_and_are_never_forwarded() {
    let (up, seen) = recording_upstream().await;
    let env = aloud::config::MapEnv::default()
        .with("UP_KEY", "sk-env")
        .with("TOKENS", "tok-a-0123456789abcdef, tok-b-0123456789abcdef");
    let toml = route_config(
        up.addr,
        "openai",
        "api_key_env = \"UP_KEY\"",
        "client_tokens_env = \"TOKENS\"",
    );
    let aloud = Aloud::start_with_env(&toml, env).await;
    let r = post(&aloud.url("/up/v1/x"), &[], "{}").await;
    assert_eq!(r.status(), 401);
    let text = String::from_utf8(body_bytes(r).await.to_vec()).unwrap();
    assert!(text.contains("client token") && !text.contains("sk-env"));
    let r = post(
        &aloud.url("/up/v1/x"),
        &[("authorization", "Bearer tok-b-0123456789abcdef")],
        "{}",
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&seen.lock().unwrap(), "authorization"),
        Some("Bearer sk-env")
    );
    let r = post(
        &aloud.url("/up/v1/x"),
        &[
            ("aloud-token", "tok-a-0123456789abcdef"),
            ("authorization", "Bearer own"),
        ],
        "{}",
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&seen.lock().unwrap(), "authorization"),
        Some("Bearer own")
    );
    assert_eq!(header(&seen.lock().unwrap(), "aloud-token"), None);
    aloud.stop().await;
}
