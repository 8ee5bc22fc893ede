//! The side channel `GET /aloud/v1/progress/{id}` and CORS, over real sockets.
#![allow(
    clippy::disallowed_methods,
    reason = "test tasks are joined before the test ends"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use http::Request;
use http_body_util::BodyExt;
use serde_json::Value;
use support::*;

const SIM: &str = "[progress]\nheartbeat = \"200ms\"\nawait_request = \"300ms\"\n[cors]\norigins = [\"http://app.test\"]\n[[routes]]\nname = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\nprogress = \"off\"\n";
const CHAT: &str = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

/// Reads SSE frames as (id, event, data) until the stream ends.
async fn sse(r: http::Response<hyper::body::Incoming>) -> Vec<(Option<u64>, String, Value)> {
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut id, mut name, mut data) = (None, String::from("message"), None);
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.parse().ok();
            } else if let Some(v) = line.strip_prefix("event: ") {
                name = v.to_owned();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(v).unwrap());
            }
        }
        if let Some(d) = data {
            out.push((id, name, d));
        }
    }
    out
}

fn sim_headers(id: &str) -> Vec<(&str, &str)> {
    vec![
        ("content-type", "application/json"),
        ("aloud-request-id", id),
        ("x-sim-seed", "5"),
        ("x-sim-think-ms", "500"),
        ("x-sim-tokens", "3"),
        ("x-sim-token-ms", "1"),
    ]
}

#[tokio::test]
async fn a_subscriber_that_comes_first_sees_the_whole_request_and_the_stream_closes() {
    let aloud = Aloud::start(SIM).await;
    let id = "side-channel-test-0001";
    let sub = get(&aloud.url(&format!("/aloud/v1/progress/{id}"))).await;
    assert_eq!(sub.status(), 200);
    assert!(
        sub.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let reader = tokio::spawn(sse(sub));
    let r = post(
        &aloud.url("/sim/v1/chat/completions"),
        &sim_headers(id),
        CHAT,
    )
    .await;
    assert_eq!(r.status(), 200);
    let answer = String::from_utf8(body_bytes(r).await.to_vec()).unwrap();
    assert!(
        !answer.contains("aloud"),
        "the off tier adds nothing: {answer}"
    );
    let events = reader.await.unwrap();
    let ids: Vec<u64> = events.iter().map(|e| e.0.unwrap()).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "id is the seq"
    );
    for (seq, _, data) in &events {
        assert_eq!(data["seq"].as_u64(), *seq);
        assert_eq!(data["request_id"], id);
    }
    assert_eq!(events[0].2["phase"], "accepted");
    assert_eq!(events.last().unwrap().1, "aloud.done");
    assert!(events.iter().any(|e| e.2["phase"] == "generating"));
    // A reconnect at the final seq gets 204; an earlier one replays the rest.
    let last = *ids.last().unwrap();
    let again = send(
        Request::get(aloud.url(&format!("/aloud/v1/progress/{id}")))
            .header("last-event-id", last.to_string())
            .body(full(""))
            .unwrap(),
    )
    .await;
    assert_eq!(again.status(), 204);
    let replay = get(&aloud.url(&format!("/aloud/v1/progress/{id}?after={}", last - 2))).await;
    let replayed = sse(replay).await;
    assert_eq!(
        replayed.iter().map(|e| e.0.unwrap()).collect::<Vec<_>>(),
        vec![last - 1, last]
    );
    aloud.stop().await;
}

#[tokio::test]
async fn in_flight_ids_conflict_and_retries_continue_the_sequence() {
    let aloud = Aloud::start(SIM).await;
    let id = "side-channel-test-0002";
    let first = post(
        &aloud.url("/sim/v1/chat/completions"),
        &sim_headers(id),
        CHAT,
    )
    .await;
    assert_eq!(first.status(), 200);
    let second = post(
        &aloud.url("/sim/v1/chat/completions"),
        &sim_headers(id),
        CHAT,
    )
    .await;
    assert_eq!(second.status(), 409);
    body_bytes(first).await;
    let events = sse(get(&aloud.url(&format!("/aloud/v1/progress/{id}"))).await).await;
    let last = events.last().unwrap().0.unwrap();
    let retry = post(
        &aloud.url("/sim/v1/chat/completions"),
        &sim_headers(id),
        CHAT,
    )
    .await;
    assert_eq!(retry.status(), 200);
    body_bytes(retry).await;
    let more = sse(get(&aloud.url(&format!("/aloud/v1/progress/{id}?after={last}"))).await).await;
    // The retry continues the sequence. Nobody watched it, so what it kept for replay is its
    // final event (subscribe before sending to get every event).
    assert_eq!(more[0].0, Some(last + 1));
    assert_eq!(more.last().unwrap().1, "aloud.done");
    aloud.stop().await;
}

#[tokio::test]
async fn a_request_that_never_arrives_ends_with_an_error_and_unknown_reconnects_get_204() {
    let aloud = Aloud::start(SIM).await;
    let events = sse(get(&aloud.url("/aloud/v1/progress/never-arrives-000001")).await).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1, "aloud.error");
    let r = send(
        Request::get(aloud.url("/aloud/v1/progress/expired-id-00000001"))
            .header("last-event-id", "7")
            .body(full(""))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        get(&aloud.url("/aloud/v1/progress/bad")).await.status(),
        400
    );
    aloud.stop().await;
}

#[tokio::test]
async fn cors_preflights_and_responses_for_allowed_origins() {
    let aloud = Aloud::start(SIM).await;
    let pre = Request::options(aloud.url("/sim/v1/chat/completions"))
        .header("origin", "http://app.test")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, aloud-progress, x-stainless-os, anthropic-version, x-evil",
        )
        .body(full(""))
        .unwrap();
    let r = send(pre).await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://app.test"
    );
    let allowed = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap();
    assert_eq!(
        allowed,
        "content-type, aloud-progress, x-stainless-os, anthropic-version"
    );
    // An origin not in the list is refused in aloud's error shape.
    let pre = Request::options(aloud.url("/sim/v1/chat/completions"))
        .header("origin", "http://other.test")
        .header("access-control-request-method", "POST")
        .body(full(""))
        .unwrap();
    let r = send(pre).await;
    assert_eq!(r.status(), 403);
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    assert_eq!(r.headers()["aloud-error-code"], "cors_origin_not_allowed");
    assert!(r.headers().contains_key("aloud-request-id"));
    assert!(body_json(r).await["error"]["message"].is_string());
    let r = post(
        &aloud.url("/sim/v1/chat/completions"),
        &[("origin", "http://app.test"), ("x-sim-status", "400")],
        CHAT,
    )
    .await;
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://app.test"
    );
    assert_eq!(
        r.headers()["access-control-expose-headers"],
        "Aloud-Request-Id, Server-Timing, Aloud-On-Disconnect, Aloud-Error-Code"
    );
    assert_eq!(r.headers()["timing-allow-origin"], "http://app.test");
    let r = post(
        &aloud.url("/sim/v1/chat/completions"),
        &[("origin", "http://other.test"), ("x-sim-status", "400")],
        CHAT,
    )
    .await;
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    aloud.stop().await;
}

#[tokio::test]
async fn a_bad_id_or_after_is_refused_in_alouds_error_shape() {
    let aloud = Aloud::start(SIM).await;
    for (path, code) in [
        ("/aloud/v1/progress/short", "bad_request_id"),
        (
            "/aloud/v1/progress/side-channel-shape-01?after=x",
            "bad_after",
        ),
    ] {
        let r = get(&aloud.url(path)).await;
        assert_eq!(r.status(), 400, "{path}");
        assert_eq!(r.headers()["aloud-error-code"], code, "{path}");
        assert!(r.headers().contains_key("aloud-request-id"), "{path}");
        let body = body_json(r).await;
        let e = body["error"].as_object().unwrap();
        for key in ["message", "type", "param", "code"] {
            assert!(e.contains_key(key), "{path}: no {key} in {body}");
        }
    }
    aloud.stop().await;
}
