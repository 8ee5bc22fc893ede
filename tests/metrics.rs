//! The admin listener over real sockets: `/metrics` there and not on the proxy's port, the
//! bearer token, readiness while draining, and the counts and labels known traffic leaves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use aloud::config::MapEnv;
use bytes::Bytes;
use http::{Request, Response};
use std::time::Duration;
use support::*;

const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

/// An OpenAI chat stream naming its model and usage.
const SSE: &str = "data: {\"model\":\"gpt-test\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n\
data: {\"model\":\"gpt-test\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":7}}\n\n\
data: [DONE]\n\n";

async fn upstream() -> Upstream {
    Upstream::start(|req: Request<hyper::body::Incoming>| async move {
        let streams = req.uri().path().ends_with("/stream");
        if req.uri().path().ends_with("/fail") {
            return Response::builder().status(500).body(full("{}")).unwrap();
        }
        let (kind, body) = if streams {
            ("text/event-stream", SSE)
        } else {
            (
                "application/json",
                "{\"model\":\"gpt-test\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3}}",
            )
        };
        Response::builder()
            .header("content-type", kind)
            .body(full(body))
            .unwrap()
    })
    .await
}

async fn scrape(aloud: &Aloud, accept: Option<&str>) -> (u16, String, String) {
    let mut req = Request::get(aloud.admin_url("/metrics"));
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let r = send(req.body(full("")).unwrap()).await;
    let status = r.status().as_u16();
    let kind = r.headers()["content-type"].to_str().unwrap().to_owned();
    let body = String::from_utf8(body_bytes(r).await.to_vec()).unwrap();
    (status, kind, body)
}

/// Scrapes until `n` proxied requests are counted in `aloud_request_duration_seconds`. An
/// exchange's finish step (which updates the metrics) runs on the serving thread that served
/// it just after its response's last bytes went out, so a scrape sent the moment the client
/// has read them may arrive on another thread first.
async fn scrape_after(aloud: &Aloud, accept: Option<&str>, n: u64) -> (u16, String, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let scraped = scrape(aloud, accept).await;
        let counted: u64 = scraped
            .2
            .lines()
            .filter(|l| l.starts_with("aloud_request_duration_seconds_count{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        if counted >= n || tokio::time::Instant::now() >= deadline {
            return scraped;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn every_admin_response_carries_a_request_id() {
    let config = route_config("127.0.0.1:9".parse().unwrap(), "openai", "", "") + ADMIN;
    let aloud = Aloud::start(&config).await;
    for path in ["/healthz", "/readyz", "/metrics", "/nope", "/dashboard"] {
        let r = get(&aloud.admin_url(path)).await;
        let id = r
            .headers()
            .get("aloud-request-id")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(
            id.as_deref().is_some_and(|id| id.len() >= 16),
            "{path}: {id:?}"
        );
    }
    let mine = "admin-probe-0123456789abcdef";
    let r = send(
        Request::get(aloud.admin_url("/healthz"))
            .header("aloud-request-id", mine)
            .body(full(""))
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.headers()["aloud-request-id"],
        mine,
        "a valid id is echoed"
    );
    let r = send(
        Request::get(aloud.admin_url("/healthz"))
            .header("aloud-request-id", "bad id")
            .body(full(""))
            .unwrap(),
    )
    .await;
    assert_ne!(
        r.headers()["aloud-request-id"],
        "bad id",
        "an invalid one is replaced"
    );
}

#[tokio::test]
async fn metrics_live_on_the_admin_port_only_and_count_what_passed() {
    let up = upstream().await;
    let config = route_config(up.addr, "openai", "progress = \"off\"", "") + ADMIN;
    let aloud = Aloud::start(&config).await;
    assert_ne!(aloud.admin, Some(aloud.addr));
    assert_eq!(get(&aloud.url("/metrics")).await.status(), 404);
    assert_eq!(get(&aloud.url("/readyz")).await.status(), 404);
    assert_eq!(get(&aloud.admin_url("/healthz")).await.status(), 200);
    assert_eq!(get(&aloud.admin_url("/readyz")).await.status(), 200);
    assert_eq!(get(&aloud.admin_url("/nope")).await.status(), 404);

    for path in [
        "/up/v1/stream",
        "/up/v1/stream",
        "/up/v1/json",
        "/up/v1/fail",
    ] {
        let r = post(
            &aloud.url(path),
            &[("content-type", "application/json")],
            "{}",
        )
        .await;
        let _ = body_bytes(r).await;
    }
    // A refusal before any route: no route matches.
    let _ = body_bytes(get(&aloud.url("/elsewhere")).await).await;

    let (status, kind, om) = scrape_after(
        &aloud,
        Some("application/openmetrics-text;version=1.0.0"),
        4,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        kind,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.ends_with("# EOF\n"));
    let want = [
        "aloud_requests_total{route=\"up\",api=\"openai\",tier=\"off\",streamed=\"true\",status_class=\"2xx\",outcome=\"ok\"} 2",
        "aloud_requests_total{route=\"up\",api=\"openai\",tier=\"off\",streamed=\"false\",status_class=\"2xx\",outcome=\"ok\"} 1",
        "aloud_requests_total{route=\"up\",api=\"openai\",tier=\"off\",streamed=\"false\",status_class=\"5xx\",outcome=\"upstream_error\"} 1",
        "aloud_requests_in_flight{route=\"up\"} 0",
        // `/metrics`, `/readyz` on the proxy's port, and `/elsewhere`.
        "aloud_refused_total{reason=\"no_route\"} 3",
        "aloud_refused_total{reason=\"overload\"} 0",
        // The streams and the whole 2xx answer name their model and tokens; the 500 does not.
        "aloud_request_duration_seconds_count{route=\"up\",model=\"gpt-test\"} 3",
        "aloud_request_duration_seconds_count{route=\"up\",model=\"unknown\"} 1",
        "aloud_first_token_seconds_count{route=\"up\",model=\"gpt-test\"} 3",
        "aloud_tokens_total{route=\"up\",model=\"gpt-test\",kind=\"input\"} 27",
        "aloud_tokens_total{route=\"up\",model=\"gpt-test\",kind=\"output\"} 17",
        "aloud_side_channel_subscribers 0",
    ];
    for line in want {
        assert!(om.contains(line), "missing {line:?} in\n{om}");
    }
    assert!(om.contains("aloud_open_connections "), "{om}");
    assert!(om.contains("process_resident_memory_bytes "), "{om}");

    let (_, kind, text) = scrape(&aloud, None).await;
    assert_eq!(kind, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        text.contains("# TYPE aloud_requests_total counter"),
        "{text}"
    );
    assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
    aloud.stop().await;
}

#[tokio::test]
async fn a_token_is_required_on_every_admin_endpoint_when_configured() {
    let up = upstream().await;
    let config = route_config(up.addr, "openai", "", "") + ADMIN + "token_env = \"ADMIN_TOKEN\"\n";
    let env = MapEnv::default().with("ADMIN_TOKEN", "s3cret-admin-token");
    let aloud = Aloud::start_with_env(&config, env).await;
    for path in ["/metrics", "/healthz", "/readyz"] {
        let r = get(&aloud.admin_url(path)).await;
        assert_eq!(r.status(), 401, "{path} without a token");
        assert!(r.headers().contains_key("www-authenticate"));
        for bad in ["Bearer wrong", "Bearer s3cret-admin-toke", "s3cret"] {
            let req = Request::get(aloud.admin_url(path))
                .header("authorization", bad)
                .body(full(""))
                .unwrap();
            assert_eq!(send(req).await.status(), 401, "{path} with {bad:?}");
        }
        let req = Request::get(aloud.admin_url(path))
            .header("authorization", "Bearer s3cret-admin-token")
            .body(full(""))
            .unwrap();
        assert_eq!(send(req).await.status(), 200, "{path} with the token");
    }
    aloud.stop().await;
}

#[tokio::test]
async fn an_unset_token_variable_is_a_config_error() {
    let config = route_config("127.0.0.1:9".parse().unwrap(), "openai", "", "")
        + ADMIN
        + "token_env = \"NOT_SET_ANYWHERE\"\n";
    let err =
        aloud::config::Config::parse(&config, std::path::Path::new("t.toml"), &MapEnv::default())
            .unwrap_err();
    assert_eq!(err.key, "admin.token_env");
}

#[tokio::test]
async fn readyz_turns_503_while_draining_and_the_in_flight_gauge_sees_the_stream() {
    let (tx, rx) = tokio::sync::oneshot::channel::<tokio::sync::mpsc::Sender<Bytes>>();
    let tx = std::sync::Mutex::new(Some(tx));
    let up = Upstream::start(move |_req| {
        let (chunks, body) = channel_body();
        if let Some(tx) = tx.lock().unwrap().take() {
            let _ = tx.send(chunks);
        }
        async move {
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(body)
                .unwrap()
        }
    })
    .await;
    let config = route_config(
        up.addr,
        "openai",
        "progress = \"off\"",
        "shutdown_grace = \"30s\"",
    ) + ADMIN;
    let mut aloud = Aloud::start(&config).await;
    let admin = aloud.admin_url("/readyz");
    assert_eq!(get(&admin).await.status(), 200);
    let response = post(
        &aloud.url("/up/v1/chat/completions"),
        &[],
        "{\"stream\":true}",
    )
    .await;
    let chunks = rx.await.unwrap();
    chunks
        .send(Bytes::from_static(b"data: {\"choices\":[]}\n\n"))
        .await
        .unwrap();
    let (_, _, om) = scrape(&aloud, Some("application/openmetrics-text")).await;
    assert!(
        om.contains("aloud_requests_in_flight{route=\"up\"} 1"),
        "{om}"
    );

    aloud.begin_shutdown();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if get(&admin).await.status() == 503 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never turned 503"
        );
        tokio::task::yield_now().await;
    }
    // Still draining: the stream is open, and the admin still answers.
    assert_eq!(get(&aloud.admin_url("/healthz")).await.status(), 200);
    chunks
        .send(Bytes::from_static(b"data: [DONE]\n\n"))
        .await
        .unwrap();
    drop(chunks);
    let (bytes, clean) = read_to_end(response).await;
    assert!(clean && bytes.ends_with(b"[DONE]\n\n"));
    aloud.stop().await;
}

/// A client cannot fill a route's capped `model` labels with names the upstream refuses:
/// only a model the upstream answered 2xx for takes a slot.
#[tokio::test]
async fn models_the_upstream_refused_take_no_label() {
    let up = Upstream::start(|req: Request<hyper::body::Incoming>| async move {
        let status = if req.uri().path().contains("junk") {
            404
        } else {
            200
        };
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(full("{\"candidates\":[]}"))
            .unwrap()
    })
    .await;
    let admin = "[admin]\nlisten = \"127.0.0.1:0\"\nmax_model_labels = 2\n";
    let config = route_config(up.addr, "gemini", "progress = \"off\"", "") + admin;
    let aloud = Aloud::start(&config).await;
    for i in 0..4 {
        let url = aloud.url(&format!("/up/v1beta/models/junk{i}:generateContent"));
        let r = post(&url, &[], "{}").await;
        assert_eq!(r.status(), 404);
        body_bytes(r).await;
    }
    let url = aloud.url("/up/v1beta/models/gem-real:generateContent");
    let r = post(&url, &[], "{}").await;
    assert_eq!(r.status(), 200);
    body_bytes(r).await;
    let (_, _, text) = scrape_after(&aloud, None, 5).await;
    assert!(
        text.contains("aloud_request_duration_seconds_count{route=\"up\",model=\"gem-real\"} 1"),
        "{text}"
    );
    assert!(!text.contains("junk"), "{text}");
    assert!(
        text.contains("aloud_request_duration_seconds_count{route=\"up\",model=\"unknown\"} 4"),
        "{text}"
    );
    aloud.stop().await;
}
