//! `Server-Timing` (issue 8, Deliver 4): every proxied response and refusal carries aloud's
//! own line; the upstream's own `Server-Timing` passes untouched next to it; an allowed CORS
//! origin may read it (`Access-Control-Expose-Headers`, `Timing-Allow-Origin`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use std::time::Duration;
use support::{Aloud, Upstream, body_bytes, full, post, response, route_config};

const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

/// The `dur` of metric `name` in a `Server-Timing` value.
fn dur(value: &str, name: &str) -> Option<f64> {
    value.split(',').find_map(|metric| {
        let mut parts = metric.trim().split(';');
        (parts.next()? == name).then_some(())?;
        parts.find_map(|p| p.trim().strip_prefix("dur=")?.parse().ok())
    })
}

/// An upstream that waits 50 ms before its head and sends a `Server-Timing` of its own.
async fn slow_upstream() -> Upstream {
    Upstream::start(|_req| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        response(
            200,
            &[
                ("content-type", "application/json"),
                ("server-timing", "model;dur=49"),
            ],
            full(r#"{"id":"x","choices":[]}"#),
        )
    })
    .await
}

#[tokio::test]
async fn a_proxied_response_keeps_the_upstreams_line_and_adds_alouds() {
    let up = slow_upstream().await;
    let aloud = Aloud::start(&route_config(up.addr, "openai", "progress = \"off\"", "")).await;
    let r = post(
        &aloud.url("/up/v1/chat/completions"),
        &[("content-type", "application/json")],
        CHAT,
    )
    .await;
    assert_eq!(r.status(), 200);
    let lines: Vec<String> = r
        .headers()
        .get_all("server-timing")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[0], "model;dur=49",
        "the upstream's own line, untouched"
    );
    let ours = &lines[1];
    let upstream = dur(ours, "upstream").expect("upstream metric");
    let own = dur(ours, "aloud").expect("aloud metric");
    assert!(
        (50.0..5_000.0).contains(&upstream),
        "the upstream's time to headers: {ours}"
    );
    assert!(own < upstream, "aloud's own time is apart: {ours}");
    assert!(ours.contains("desc=\"upstream headers\""), "{ours}");
    body_bytes(r).await;
    aloud.stop().await;
}

#[tokio::test]
async fn refusals_and_early_commits_carry_alouds_time() {
    let up = slow_upstream().await;
    let aloud = Aloud::start(&route_config(
        up.addr,
        "openai",
        "max_request_body = \"8B\"",
        "",
    ))
    .await;
    // Refused before any upstream attempt: aloud's time alone.
    let r = post(
        &aloud.url("/up/v1/chat/completions"),
        &[("content-type", "application/json")],
        CHAT,
    )
    .await;
    assert_eq!(r.status(), 413);
    let v = r.headers()["server-timing"].to_str().unwrap().to_owned();
    assert!(
        dur(&v, "aloud").is_some() && dur(&v, "upstream").is_none(),
        "{v}"
    );

    // Refused on a route before its exchange (a bad request id, a dot-segment path): aloud's
    // time too; a path no route takes has none.
    for (path, id, status) in [
        ("/up/v1/chat/completions", "bad!", 400),
        ("/up/v1/../chat/completions", "timing-path-000001", 400),
        ("/nowhere/v1/chat/completions", "timing-none-000001", 404),
    ] {
        let r = post(
            &aloud.url(path),
            &[
                ("content-type", "application/json"),
                ("aloud-request-id", id),
            ],
            CHAT,
        )
        .await;
        assert_eq!(r.status(), status, "{path} {id}");
        let v = r
            .headers()
            .get("server-timing")
            .map(|v| v.to_str().unwrap().to_owned());
        match status {
            404 => assert_eq!(v, None, "{path}"),
            _ => assert!(
                v.as_deref().and_then(|v| dur(v, "aloud")).is_some(),
                "{path} {id}: {v:?}"
            ),
        }
    }

    // The events tier commits its head before the upstream answers: it says so.
    let aloud2 = Aloud::start(&route_config(up.addr, "openai", "", "")).await;
    let r = post(
        &aloud2.url("/up/v1/chat/completions"),
        &[
            ("content-type", "application/json"),
            ("aloud-progress", "events"),
        ],
        r#"{"model":"m","messages":[],"stream":true}"#,
    )
    .await;
    assert_eq!(r.status(), 200);
    let v = r.headers()["server-timing"].to_str().unwrap().to_owned();
    assert!(v.contains("desc=\"no upstream headers\""), "{v}");
    assert!(dur(&v, "aloud").is_some(), "{v}");
    body_bytes(r).await;
    aloud.stop().await;
    aloud2.stop().await;
}

#[tokio::test]
async fn an_allowed_origin_may_read_server_timing() {
    let up = slow_upstream().await;
    let aloud = Aloud::start(&format!(
        "{}\n[cors]\norigins = [\"http://app.test\"]\n",
        route_config(up.addr, "openai", "progress = \"off\"", "")
    ))
    .await;
    let r = post(
        &aloud.url("/up/v1/chat/completions"),
        &[
            ("content-type", "application/json"),
            ("origin", "http://app.test"),
        ],
        CHAT,
    )
    .await;
    assert_eq!(r.headers()["timing-allow-origin"], "http://app.test");
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("server-timing"), "{exposed}");
    body_bytes(r).await;
    aloud.stop().await;
}
