//! Exactly one capture record per exchange attempt, in every tier and wherever it failed,
//! counted as rows in the real SQLite store (issue 7, Deliver 3).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use aloud::capture::{CaptureRecord, Outcome};
use aloud::config::MapEnv;
use std::net::SocketAddr;
use support::scripted::Scripted;
use support::stored::{Stored, describe};
use support::wire::Conn;
use support::{Aloud, route_config};

const TIERS: [&str; 3] = ["off", "comments", "events"];

/// The id of `case` in `tier` (valid `Aloud-Request-Id`s, distinct per request).
fn id(case: &str, tier: &str) -> String {
    format!("one-record-{case}-{tier}")
}

/// Sends one streaming chat request with `x-mock: mock` and reads the whole response.
async fn exchange(addr: SocketAddr, tier: &str, id: &str, mock: &str) {
    let conn = Conn::chat(
        addr,
        "/up/v1/chat/completions",
        tier,
        &[("Aloud-Request-Id", id), ("x-mock", mock)],
    )
    .await;
    conn.finish().await;
}

/// What one id's rows must look like: one row per attempt in `attempts` (or, when `any_of`,
/// a single row whose attempt is one of them), each with an allowed outcome.
struct Expect {
    id: String,
    outcomes: &'static [Outcome],
    attempts: &'static [u32],
    any_of: bool,
}

fn expect(id: String, outcomes: &'static [Outcome], attempts: &'static [u32]) -> Expect {
    Expect {
        id,
        outcomes,
        attempts,
        any_of: false,
    }
}

/// Each expected id has exactly its rows, with allowed outcomes, and no other rows exist.
fn check(rows: &[CaptureRecord], submitted: &[String], expected: &[Expect]) {
    let mut wrong = Vec::new();
    let wanted: usize = expected
        .iter()
        .map(|e| if e.any_of { 1 } else { e.attempts.len() })
        .sum();
    if rows.len() != wanted {
        wrong.push(format!("{} rows, expected {wanted}", rows.len()));
    }
    for e in expected {
        let mine: Vec<&CaptureRecord> = rows.iter().filter(|r| r.id == e.id).collect();
        let mut attempts: Vec<u32> = mine.iter().map(|r| r.attempt).collect();
        attempts.sort_unstable();
        let ok_attempts = if e.any_of {
            attempts.len() == 1 && e.attempts.contains(&attempts[0])
        } else {
            attempts == e.attempts
        };
        if !ok_attempts {
            wrong.push(format!(
                "{}: rows with attempts {attempts:?}, expected {} {:?}",
                e.id,
                if e.any_of {
                    "one row, attempt one of"
                } else {
                    "one row per attempt"
                },
                e.attempts
            ));
        }
        for r in &mine {
            if !e.outcomes.contains(&r.outcome) {
                wrong.push(format!(
                    "{} attempt {}: outcome {}, expected one of {:?}",
                    e.id,
                    r.attempt,
                    r.outcome.as_str(),
                    e.outcomes.iter().map(|o| o.as_str()).collect::<Vec<_>>()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\n--- rows in the store\n{}\n--- submitted to the sink\n{}",
        wrong.join("\n"),
        describe(rows),
        submitted.join("\n")
    );
}

/// Starts aloud in front of `upstream` with capture into a real store.
async fn start(upstream: SocketAddr, route_extra: &str, server_extra: &str) -> (Aloud, Stored) {
    let stored = Stored::new();
    let toml = route_config(upstream, "openai", route_extra, server_extra);
    let aloud = Aloud::start_with_sink(&toml, MapEnv::default(), stored.sink()).await;
    (aloud, stored)
}

/// Waits for `n` records, stops aloud (every connection drained), and returns the rows.
async fn rows_after(aloud: Aloud, stored: Stored, n: usize) -> (Vec<CaptureRecord>, Vec<String>) {
    stored.wait_submitted(n).await;
    aloud.stop().await;
    let submitted = stored.submitted();
    (stored.rows().await, submitted)
}

/// One request per tier with `x-mock: mock`; each must leave exactly one row.
async fn one_per_tier(case: &str, mock: &str, route_extra: &str, outcomes: &'static [Outcome]) {
    let up = Scripted::start().await;
    let (aloud, stored) = start(up.addr(), route_extra, "").await;
    for tier in TIERS {
        exchange(aloud.addr, tier, &id(case, tier), mock).await;
    }
    let (rows, submitted) = rows_after(aloud, stored, TIERS.len()).await;
    let expected: Vec<Expect> = TIERS
        .iter()
        .map(|t| expect(id(case, t), outcomes, &[1]))
        .collect();
    check(&rows, &submitted, &expected);
}

#[tokio::test]
async fn a_refused_upstream_gives_one_row_per_request_in_every_tier() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (aloud, stored) = start(closed, "", "").await;
    for tier in TIERS {
        exchange(aloud.addr, tier, &id("refused", tier), "sse-ok").await;
    }
    let (rows, submitted) = rows_after(aloud, stored, TIERS.len()).await;
    let expected: Vec<Expect> = TIERS
        .iter()
        .map(|t| expect(id("refused", t), &[Outcome::ProxyError], &[1]))
        .collect();
    check(&rows, &submitted, &expected);
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_gives_one_row_per_request() {
    let up = Scripted::start().await;
    let (aloud, stored) = start(up.addr(), "max_request_body = \"1KiB\"", "").await;
    for tier in TIERS {
        let rid = id("chunked-413", tier);
        let mut req = format!(
            "POST /up/v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Aloud-Progress: {tier}\r\nAloud-Request-Id: {rid}\r\nx-mock: stall-before-head\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        for _ in 0..4 {
            req.extend(support::scripted::chunk(&[b' '; 512]));
        }
        req.extend_from_slice(b"0\r\n\r\n");
        Conn::raw_request(aloud.addr, &req).await.finish().await;
    }
    let (rows, submitted) = rows_after(aloud, stored, TIERS.len()).await;
    let expected: Vec<Expect> = TIERS
        .iter()
        .map(|t| expect(id("chunked-413", t), &[Outcome::ProxyError], &[1]))
        .collect();
    check(&rows, &submitted, &expected);
}

#[tokio::test]
async fn a_declared_body_over_the_limit_gives_one_row_per_request() {
    let up = Scripted::start().await;
    let (aloud, stored) = start(up.addr(), "max_request_body = \"1KiB\"", "").await;
    let body = vec![b' '; 5000];
    for tier in TIERS {
        let rid = id("declared-413", tier);
        let conn = Conn::request(
            aloud.addr,
            "POST",
            "/up/v1/chat/completions",
            &[("Aloud-Progress", tier), ("Aloud-Request-Id", &rid)],
            &body,
        )
        .await;
        assert_eq!(conn.status(), 413, "{tier}");
        conn.finish().await;
    }
    let (rows, submitted) = rows_after(aloud, stored, TIERS.len()).await;
    // Refused before any attempt began: attempt 0 or 1, but one row.
    let expected: Vec<Expect> = TIERS
        .iter()
        .map(|t| Expect {
            any_of: true,
            ..expect(id("declared-413", t), &[Outcome::ProxyError], &[0, 1])
        })
        .collect();
    check(&rows, &submitted, &expected);
}

#[tokio::test]
async fn a_headers_timeout_gives_one_row_per_request() {
    one_per_tier(
        "headers-timeout",
        "stall-before-head",
        "headers_timeout = \"300ms\"",
        &[Outcome::Timeout],
    )
    .await;
}

#[tokio::test]
async fn a_headers_timeout_after_an_early_commit_gives_one_row() {
    let up = Scripted::start().await;
    let (aloud, stored) = start(
        up.addr(),
        "headers_timeout = \"400ms\"",
        "[progress]\nhold = \"100ms\"",
    )
    .await;
    let rid = id("committed-timeout", "comments");
    let conn = Conn::chat(
        aloud.addr,
        "/up/v1/chat/completions",
        "comments",
        &[("Aloud-Request-Id", &rid), ("x-mock", "stall-before-head")],
    )
    .await;
    assert_eq!(conn.status(), 200, "committed after the hold");
    conn.finish().await;
    let (rows, submitted) = rows_after(aloud, stored, 1).await;
    check(&rows, &submitted, &[expect(rid, &[Outcome::Timeout], &[1])]);
}

#[tokio::test]
async fn a_reset_before_the_head_gives_one_row_per_request() {
    one_per_tier(
        "reset-before-head",
        "reset-before-head",
        "",
        &[Outcome::UpstreamError, Outcome::ProxyError],
    )
    .await;
}

#[tokio::test]
async fn a_reset_mid_body_gives_one_row_per_request() {
    let up = Scripted::start().await;
    let (aloud, stored) = start(up.addr(), "", "").await;
    for tier in TIERS {
        let mut conn = Conn::chat(
            aloud.addr,
            "/up/v1/chat/completions",
            tier,
            &[
                ("Aloud-Request-Id", &id("reset-mid-body", tier)),
                ("x-mock", "reset-on-go"),
            ],
        )
        .await;
        conn.until_contains("\"Hel\"").await;
        up.go();
        conn.finish().await;
    }
    let (rows, submitted) = rows_after(aloud, stored, TIERS.len()).await;
    let expected: Vec<Expect> = TIERS
        .iter()
        .map(|t| expect(id("reset-mid-body", t), &[Outcome::UpstreamError], &[1]))
        .collect();
    check(&rows, &submitted, &expected);
}

#[tokio::test]
async fn an_idle_timeout_gives_one_row_per_request() {
    one_per_tier(
        "idle-timeout",
        "stall-after-event",
        "idle_timeout = \"300ms\"",
        &[Outcome::Timeout],
    )
    .await;
}

#[tokio::test]
async fn a_client_leaving_mid_stream_gives_one_row_per_request() {
    let up = Scripted::start().await;
    let (aloud, stored) = start(up.addr(), "", "").await;
    for (n, tier) in TIERS.into_iter().enumerate() {
        let mut conn = Conn::chat(
            aloud.addr,
            "/up/v1/chat/completions",
            tier,
            &[
                ("Aloud-Request-Id", &id("client-gone", tier)),
                ("x-mock", "stall-after-event"),
            ],
        )
        .await;
        conn.until_contains("\"Hel\"").await;
        drop(conn);
        // The record is written when aloud notices; wait for it, never sleep.
        stored.wait_submitted(n + 1).await;
    }
    let (rows, submitted) = rows_after(aloud, stored, TIERS.len()).await;
    let expected: Vec<Expect> = TIERS
        .iter()
        .map(|t| expect(id("client-gone", t), &[Outcome::ClientDisconnected], &[1]))
        .collect();
    check(&rows, &submitted, &expected);
}

#[tokio::test]
async fn success_gives_one_row_per_request_in_every_tier() {
    let up = Scripted::start().await;
    let (aloud, stored) = start(up.addr(), "", "").await;
    let mut expected = Vec::new();
    for tier in TIERS {
        exchange(aloud.addr, tier, &id("ok-stream", tier), "sse-ok").await;
        expected.push(expect(id("ok-stream", tier), &[Outcome::Ok], &[1]));
        // A non-streaming answer (wrapped as `aloud.result` in the events tier).
        let rid = id("ok-json", tier);
        let conn = Conn::request(
            aloud.addr,
            "POST",
            "/up/v1/chat/completions",
            &[
                ("Aloud-Progress", tier),
                ("Aloud-Request-Id", &rid),
                ("x-mock", "json-ok"),
            ],
            br#"{"model":"m","messages":[]}"#,
        )
        .await;
        conn.finish().await;
        expected.push(expect(rid, &[Outcome::Ok], &[1]));
    }
    let (rows, submitted) = rows_after(aloud, stored, expected.len()).await;
    check(&rows, &submitted, &expected);
}

#[tokio::test]
async fn a_retry_with_the_same_id_is_a_second_attempt_and_a_second_row() {
    let up = Scripted::start().await;
    let (aloud, stored) = start(up.addr(), "", "").await;
    let mut expected = Vec::new();
    for tier in TIERS {
        let rid = id("retried", tier);
        exchange(aloud.addr, tier, &rid, "sse-ok").await;
        exchange(aloud.addr, tier, &rid, "sse-ok").await;
        expected.push(expect(rid, &[Outcome::Ok], &[1, 2]));
    }
    let (rows, submitted) = rows_after(aloud, stored, 2 * TIERS.len()).await;
    check(&rows, &submitted, &expected);
}
