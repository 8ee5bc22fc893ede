//! Edges of a request that are not about bodies: paths that try to leave a route, CORS
//! preflights and their request id, absurd configured durations. Real sockets throughout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use http::Request;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use support::*;
use tokio::sync::mpsc;

/// An upstream that answers 200 and reports every path (with query) it is asked for.
async fn recording_upstream() -> (Upstream, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let up = Upstream::start(move |req: Request<hyper::body::Incoming>| {
        let tx = tx.clone();
        async move {
            let pq = req.uri().path_and_query().unwrap().as_str().to_owned();
            let _ = tx.send(pq);
            let _ = req.into_body().collect().await;
            response(200, &[("content-type", "application/json")], full("{}"))
        }
    })
    .await;
    (up, rx)
}

/// A route `/up` whose upstream sits under the base path `/base`, injecting a key.
fn base_path_config(up: SocketAddr, api: &str) -> String {
    format!(
        "[[routes]]\nname = \"up\"\nprefix = \"/up\"\nupstream = \"http://{up}/base\"\napi = \"{api}\"\napi_key_env = \"KEY\"\nprogress = \"off\"\n"
    )
}

async fn start(config: &str) -> Aloud {
    let env = aloud::config::MapEnv::default().with("KEY", "sk-secret");
    Aloud::start_with_env(config, env).await
}

fn status_of(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .split("\r\n")
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn paths_that_climb_out_of_a_route_never_reach_the_upstream() {
    let (up, mut seen) = recording_upstream().await;
    let aloud = start(&base_path_config(up.addr, "openai")).await;
    for path in [
        "/up/../../admin/keys",
        "/up/v1/../../admin/keys",
        "/up/./v1/models",
        "/up/%2e%2e/%2e%2e/admin/keys",
        "/up/%2E%2E/admin/keys",
        "/up/.%2e/admin/keys",
        "/up/..;/admin/keys",
        "/up//admin/keys",
        "/up/v1//models",
        "/up/..%2fadmin/keys",
        "/up/..%5Cadmin/keys",
        "/up/..\\admin/keys",
    ] {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let out = raw_exchange(aloud.addr, raw.as_bytes()).await;
        assert_eq!(status_of(&out), "HTTP/1.1 400 Bad Request", "{path}");
        let text = String::from_utf8_lossy(&out).to_lowercase();
        // Ours, in the route's envelope (hyper's own 400 for an unparsable line has no body).
        if !path.contains('\\') {
            assert!(text.contains("aloud-request-id"), "{path}: {text}");
            assert!(text.contains("invalid_request_error"), "{path}: {text}");
        }
    }
    // The first path the upstream ever sees is the legitimate one sent last, byte for byte.
    let gemini = "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse";
    let r = get(&aloud.url(&format!("/up{gemini}"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(seen.recv().await.unwrap(), format!("/base{gemini}"));
    for legit in ["/v1/models/", "/v1/files/file-abc.jsonl", "/v1/a%2eb"] {
        let r = get(&aloud.url(&format!("/up{legit}"))).await;
        assert_eq!(r.status(), 200, "{legit}");
        assert_eq!(seen.recv().await.unwrap(), format!("/base{legit}"));
    }
    aloud.stop().await;
    drop(up);
    assert!(seen.recv().await.is_none(), "the upstream saw more paths");
}

#[tokio::test]
async fn a_refused_path_uses_its_routes_envelope() {
    let (up, _seen) = recording_upstream().await;
    let aloud = start(&base_path_config(up.addr, "anthropic")).await;
    let r = get(&aloud.url("/up/v1/../../admin")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-should-retry"], "false");
    assert!(r.headers().contains_key("aloud-request-id"));
    let body = body_json(r).await;
    assert_eq!(body["type"], "error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("dot-segment"),
        "{body}"
    );
    aloud.stop().await;
}

#[tokio::test]
async fn a_cors_preflight_carries_a_request_id() {
    let (up, _seen) = recording_upstream().await;
    let config = format!(
        "[cors]\norigins = [\"http://app.test\"]\n[[routes]]\nname = \"up\"\nprefix = \"/up\"\nupstream = \"http://{}\"\napi = \"openai\"\n",
        up.addr
    );
    let aloud = Aloud::start(&config).await;
    for origin in ["http://app.test", "http://evil.test"] {
        let req = Request::options(aloud.url("/up/v1/chat/completions"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .body(full(""))
            .unwrap();
        let r = send(req).await;
        let id = r.headers().get("aloud-request-id");
        assert!(id.is_some_and(|v| !v.is_empty()), "{origin}: {r:?}");
    }
    aloud.stop().await;
}

#[tokio::test]
async fn absurd_configured_durations_do_not_break_requests() {
    let (up, mut seen) = recording_upstream().await;
    // Each of these overflows an `Instant` if added to one as written.
    let huge = "\"500000000000y\"";
    let config = route_config(
        up.addr,
        "openai",
        &format!("total_timeout = {huge}\nheaders_timeout = {huge}\nidle_timeout = {huge}"),
        &format!("write_stall_timeout = {huge}"),
    );
    let config = format!("{config}[progress]\nhold = {huge}\nheartbeat = {huge}\n");
    let aloud = Aloud::start(&config).await;
    for tier in ["off", "comments", "events"] {
        let r = post(
            &aloud.url("/up/v1/chat/completions"),
            &[("aloud-progress", tier)],
            r#"{"stream":false}"#,
        )
        .await;
        assert_eq!(r.status(), 200, "{tier}");
        body_bytes(r).await;
        assert_eq!(seen.recv().await.unwrap(), "/v1/chat/completions");
    }
    aloud.stop().await;
}

#[tokio::test]
async fn a_request_with_two_hosts_is_refused_with_an_id() {
    let up = Upstream::start(|_req| async { response(200, &[], full("up")) }).await;
    let aloud = Aloud::start(&route_config(up.addr, "openai", "", "")).await;
    let head = "GET /up/x HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n";
    let out = String::from_utf8_lossy(&raw_exchange(aloud.addr, head.as_bytes()).await)
        .to_ascii_lowercase();
    assert!(out.starts_with("http/1.1 400"), "{out}");
    assert!(out.contains("aloud-error-code: bad_host"), "{out}");
    assert!(out.contains("aloud-request-id: "), "{out}");
    // None at all is served, as HTTP/1.0 and some client libraries send.
    for head in [
        "GET /up/x HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /up/x HTTP/1.0\r\n\r\n",
    ] {
        let out = raw_exchange(aloud.addr, head.as_bytes()).await;
        let out = String::from_utf8_lossy(&out);
        assert!(
            out.contains(" 200 ") && out.ends_with("up"),
            "{head:?}: {out}"
        );
    }
    aloud.stop().await;
}
