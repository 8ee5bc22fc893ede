//! The access log (issue 8, Deliver 5), from the real binary's JSON log: one line per exchange,
//! also for requests that fail before a head (refused upstream, 413, 401, overload), each with
//! its id and route, numbers as JSON numbers, times in whole milliseconds, and absent times
//! absent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use serde_json::Value;
use std::time::Duration;
use support::binary::{Binary, access_lines};
use support::scripted::Scripted;
use support::wire::Conn;

const TOKEN: &str = "tok-access-log-test-0001";

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn send(b: &Binary, path: &str, id: &str, extra: &[(&str, &str)], body: &[u8]) -> u16 {
    let mut h = vec![
        ("Content-Type", "application/json"),
        ("Aloud-Progress", "off"),
        ("Aloud-Request-Id", id),
    ];
    h.extend_from_slice(extra);
    Conn::request(b.addr, "POST", path, &h, body).await.status()
}

fn is_whole(v: &Value) -> bool {
    v.is_u64()
}

#[tokio::test]
async fn every_exchange_gets_one_line_with_whole_milliseconds_even_without_a_head() {
    let up = Scripted::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nmax_concurrent_requests = 1\nclient_tokens_env = \"ALOUD_TEST_TOKENS\"\n\
             [[routes]]\nname = \"up\"\nprefix = \"/up\"\nupstream = \"http://{up}\"\napi = \"openai\"\n\
             [[routes]]\nname = \"small\"\nprefix = \"/small\"\nupstream = \"http://{up}\"\napi = \"openai\"\nmax_request_body = \"16B\"\n\
             [[routes]]\nname = \"gone\"\nprefix = \"/gone\"\nupstream = \"http://127.0.0.1:{port}\"\napi = \"openai\"\n",
            up = up.addr(),
            port = closed_port(),
        ),
    )
    .unwrap();
    let mut b = Binary::start(&config, &[("ALOUD_TEST_TOKENS", TOKEN)]).await;
    let auth = [("Aloud-Token", TOKEN), ("x-mock", "json-ok")];
    let path = "/up/v1/chat/completions";

    assert_eq!(
        send(&b, path, "access-ok-00000001", &auth, b"{}").await,
        200
    );
    assert_eq!(
        send(
            &b,
            path,
            "access-401-0000001",
            &[("x-mock", "json-ok")],
            b"{}"
        )
        .await,
        401
    );
    assert_eq!(
        send(
            &b,
            "/small/v1/chat/completions",
            "access-413-0000001",
            &auth,
            &[b'x'; 64]
        )
        .await,
        413
    );
    assert_eq!(
        send(
            &b,
            "/gone/v1/chat/completions",
            "access-502-0000001",
            &auth,
            b"{}"
        )
        .await,
        502
    );
    // One slot: a stream holds it, the next request is refused as overload.
    let mut held = Conn::chat(
        b.addr,
        path,
        "off",
        &[
            ("Aloud-Token", TOKEN),
            ("Aloud-Request-Id", "access-held-000001"),
            ("x-mock", "stall-after-event"),
        ],
    )
    .await;
    held.until_contains("\"Hel\"").await;
    assert_eq!(
        send(&b, path, "access-503-0000001", &auth, b"{}").await,
        503
    );
    drop(held);
    b.wait_json(|v| v["id"] == "access-held-000001" && v["outcome"].is_string())
        .await;

    let lines = b.json();
    for (id, route, status, outcome, end) in [
        ("access-ok-00000001", "up", 200, "ok", "complete"),
        (
            "access-401-0000001",
            "up",
            401,
            "proxy_error",
            "client_token_missing",
        ),
        (
            "access-413-0000001",
            "small",
            413,
            "proxy_error",
            "body_too_large",
        ),
        (
            "access-502-0000001",
            "gone",
            502,
            "proxy_error",
            "upstream_connect",
        ),
        ("access-503-0000001", "up", 503, "proxy_error", "overloaded"),
    ] {
        let access = access_lines(&lines, id);
        assert_eq!(access.len(), 1, "{id}: one line: {access:?}");
        let l = access[0];
        assert_eq!(l["route"], route, "{l}");
        assert_eq!(l["method"], "POST", "{l}");
        assert_eq!(l["path"], path.replace("/up", &format!("/{route}")), "{l}");
        assert_eq!(l["status"], status, "{l}");
        assert_eq!(l["outcome"], outcome, "{l}");
        assert_eq!(l["end"], end, "{l}");
        // A 401 is refused before the tier header is read: the route's default.
        let tier = if status == 401 { "comments" } else { "off" };
        assert_eq!(l["tier"], tier, "{l}");
        for field in ["bytes_in", "bytes_out", "total_ms"] {
            assert!(is_whole(&l[field]), "{id}: {field} is a whole number: {l}");
        }
        for field in ["headers_ms", "first_byte_ms", "overhead_us"] {
            assert!(
                l.get(field).is_none() || is_whole(&l[field]),
                "{id}: {field} is absent or a whole number: {l}"
            );
        }
        assert_ne!(l["headers_ms"], -1, "{l}");
    }
    let ok = access_lines(&lines, "access-ok-00000001")[0];
    assert_eq!(ok["bytes_in"], 2, "{ok}");
    assert!(ok["bytes_out"].as_u64().unwrap() > 0, "{ok}");
    for field in ["headers_ms", "first_byte_ms", "overhead_us"] {
        assert!(is_whole(&ok[field]), "{field} of a success: {ok}");
    }
    // Refused before any upstream head: no upstream time to speak of.
    for id in [
        "access-401-0000001",
        "access-413-0000001",
        "access-503-0000001",
    ] {
        let l = access_lines(&lines, id)[0];
        assert!(l.get("headers_ms").is_none(), "{l}");
    }
    // A failed exchange is a warning, and every warning names its id and route.
    let warnings: Vec<&Value> = lines
        .iter()
        .filter(|v| v["level"] == "WARN" || v["level"] == "ERROR")
        .collect();
    assert!(warnings.len() >= 4, "{warnings:?}");
    for l in warnings {
        assert!(
            l["id"].is_string() && l["route"].is_string(),
            "a warning without its id and route: {l}"
        );
    }
    // A refusal before routing is one `refused request` line, its reason under `detail` (a
    // second `message` key would hide the line's own message from JSON readers).
    assert_eq!(
        send(&b, "/nowhere/x", "access-404-0000001", &auth, b"{}").await,
        404
    );
    let refused = b
        .wait_json(|v| v["id"] == "access-404-0000001" && v["label"] == "no_route")
        .await;
    assert_eq!(refused["message"], "refused request", "{refused}");
    assert!(refused["detail"].is_string(), "{refused}");
    let raw = b.log();
    let line = raw
        .iter()
        .find(|l| l.contains("access-404-0000001"))
        .unwrap();
    assert_eq!(line.matches("\"message\"").count(), 1, "{line}");
    b.signal("TERM");
    b.wait_exit(Duration::from_secs(20)).await;
}
