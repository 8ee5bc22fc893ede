//! The events tier always ends with whole `aloud.*` events a client's SSE parser can read: after
//! an upstream cut in the middle of an event, after a last event without its blank line, and
//! after the upstream's own in-stream error (issue 7 review findings), and after a stream that
//! ended cleanly before its end marker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::scripted::Scripted;
use support::wire::{CHAT_STREAM, Conn, SseEvent, parse_sse};
use support::*;

const PATH: &str = "/up/v1/chat/completions";

async fn events(up: &Scripted, aloud: &Aloud, mode: &str) -> Vec<SseEvent> {
    let conn = Conn::chat(aloud.addr, PATH, "events", &[("x-mock", mode)]).await;
    assert_eq!(conn.status(), 200);
    let reply = conn.finish().await;
    let _ = up;
    parse_sse(&reply.text())
}

fn names(events: &[SseEvent]) -> Vec<&str> {
    events.iter().filter_map(|e| e.event.as_deref()).collect()
}

#[tokio::test]
async fn a_cut_in_the_middle_of_an_event_still_ends_with_aloud_error_and_done() {
    let up = Scripted::start().await;
    let aloud = Aloud::start(&route_config(up.addr(), "openai", "", "")).await;
    let ev = events(&up, &aloud, "partial-then-reset").await;
    let n = names(&ev);
    let error = ev
        .iter()
        .find(|e| e.event.as_deref() == Some("aloud.error"))
        .unwrap_or_else(|| panic!("no aloud.error event: {n:?}"));
    assert_eq!(error.json()["code"], "upstream_error");
    assert_eq!(n.last(), Some(&"aloud.done"), "{n:?}");
    aloud.stop().await;
}

#[tokio::test]
async fn a_last_event_without_its_blank_line_still_gets_aloud_done() {
    let up = Scripted::start().await;
    let aloud = Aloud::start(&route_config(up.addr(), "openai", "", "")).await;
    let ev = events(&up, &aloud, "done-without-blank").await;
    let n = names(&ev);
    assert_eq!(n.last(), Some(&"aloud.done"), "{n:?}");
    let done = ev.last().unwrap().json();
    assert_eq!(done["phase"], "done", "{done}");
    aloud.stop().await;
}

#[tokio::test]
async fn the_upstreams_own_error_event_ends_with_aloud_error() {
    let up = Scripted::start().await;
    let aloud = Aloud::start(&route_config(up.addr(), "openai", "", "")).await;
    let ev = events(&up, &aloud, "stream-error").await;
    let n = names(&ev);
    let error = ev
        .iter()
        .find(|e| e.event.as_deref() == Some("aloud.error"))
        .unwrap_or_else(|| panic!("no aloud.error event: {n:?}"));
    assert_eq!(error.json()["code"], "upstream_stream_error");
    assert_eq!(n.last(), Some(&"aloud.done"), "{n:?}");
    let _ = CHAT_STREAM;
    aloud.stop().await;
}

#[tokio::test]
async fn a_whole_answer_that_is_not_the_gzip_it_says_ends_with_aloud_error() {
    let up = Scripted::start().await;
    let sink = std::sync::Arc::new(MemorySink::default());
    let aloud = Aloud::start_with_sink(
        &route_config(up.addr(), "openai", "", ""),
        aloud::config::MapEnv::default(),
        Some(sink.clone()),
    )
    .await;
    let modes = ["bad-gzip-json", "cut-gzip-json", "bad-xgzip-json"];
    for (i, mode) in modes.into_iter().enumerate() {
        let id = format!("events-gzip-{i:08}");
        let conn = Conn::chat(
            aloud.addr,
            PATH,
            "events",
            &[("x-mock", mode), ("aloud-request-id", &id)],
        )
        .await;
        assert_eq!(conn.status(), 200);
        let ev = parse_sse(&conn.finish().await.text());
        let n = names(&ev);
        assert!(
            !n.contains(&"aloud.result"),
            "{mode}: the raw bytes as a result: {n:?}"
        );
        let error = ev
            .iter()
            .find(|e| e.event.as_deref() == Some("aloud.error"))
            .unwrap_or_else(|| panic!("{mode}: no aloud.error event: {n:?}"));
        assert_eq!(error.json()["code"], "upstream_error", "{mode}");
        assert_eq!(n.last(), Some(&"aloud.done"), "{mode}: {n:?}");
        assert_eq!(ev.last().unwrap().json()["phase"], "error", "{mode}");
        let record = sink.wait_for(&id).await;
        assert_eq!(
            record.outcome,
            aloud::capture::Outcome::UpstreamError,
            "{mode}"
        );
    }
    aloud.stop().await;
}

#[tokio::test]
async fn a_whole_gzip_answer_that_decodes_past_the_bound_ends_with_aloud_error() {
    let up = Scripted::start().await;
    let config = route_config(
        up.addr(),
        "openai",
        "",
        "[progress]\nmax_wrap_body = \"64KiB\"",
    );
    let aloud = Aloud::start(&config).await;
    let ev = events(&up, &aloud, "big-gzip-json").await;
    let n = names(&ev);
    assert!(!n.contains(&"aloud.result"), "{n:?}");
    let error = ev
        .iter()
        .find(|e| e.event.as_deref() == Some("aloud.error"))
        .unwrap_or_else(|| panic!("no aloud.error event: {n:?}"));
    assert_eq!(error.json()["code"], "wrap_body_too_large");
    assert_eq!(n.last(), Some(&"aloud.done"), "{n:?}");
    aloud.stop().await;
}

#[tokio::test]
async fn an_empty_answer_declared_gzip_is_an_empty_result() {
    let up = Scripted::start().await;
    let aloud = Aloud::start(&route_config(up.addr(), "openai", "", "")).await;
    let ev = events(&up, &aloud, "empty-gzip-json").await;
    let n = names(&ev);
    assert!(!n.contains(&"aloud.error"), "{n:?}");
    let result = ev
        .iter()
        .find(|e| e.event.as_deref() == Some("aloud.result"))
        .unwrap_or_else(|| panic!("no aloud.result: {n:?}"));
    assert_eq!(result.json()["status"], 200);
    assert_eq!(n.last(), Some(&"aloud.done"), "{n:?}");
    aloud.stop().await;
}

/// Gemini's stream has no end marker: its `done` is known when the stream closes. The events
/// tier still sends that `aloud.progress` (`phase: done`), so `seq` has no gap, in both framings.
#[tokio::test]
async fn a_gemini_stream_gets_its_done_progress_event_and_no_seq_gap() {
    let config = "[[routes]]\nname = \"g\"\nprefix = \"/g\"\nupstream = \"builtin:simulator\"\napi = \"gemini\"\n";
    let aloud = Aloud::start(config).await;
    let body = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    for path in [
        "/g/v1beta/models/gem:streamGenerateContent?alt=sse",
        "/g/v1beta/models/gem:streamGenerateContent",
    ] {
        let h = [
            ("content-type", "application/json"),
            ("aloud-progress", "events"),
            ("x-sim-seed", "5"),
            ("x-sim-think-ms", "300"),
            ("x-sim-tokens", "3"),
        ];
        let r = post(&aloud.url(path), &h, body).await;
        assert_eq!(r.status(), 200, "{path}");
        let text = String::from_utf8(body_bytes(r).await.to_vec()).unwrap();
        let ours: Vec<serde_json::Value> = parse_sse(&text)
            .iter()
            .filter(|e| e.event.as_deref().is_some_and(|n| n.starts_with("aloud.")))
            .map(SseEvent::json)
            .collect();
        let seqs: Vec<u64> = ours.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{path}: {text}"
        );
        assert!(
            ours.iter()
                .any(|v| v["phase"] == "done" && v["label"].is_string()),
            "{path}: no done progress event: {text}"
        );
    }
    aloud.stop().await;
}

/// A Gemini stream cut after its finish reason is not done: the events tier says `error`, and
/// no `phase: done` event comes before the `aloud.error`.
#[tokio::test]
async fn a_gemini_stream_cut_after_its_finish_reason_is_not_done() {
    let up = Scripted::start().await;
    let aloud = Aloud::start(&route_config(up.addr(), "gemini", "", "")).await;
    let path = "/up/v1beta/models/gem:streamGenerateContent?alt=sse";
    let h = [("x-mock", "gemini-stop-then-reset")];
    let conn = Conn::request(
        aloud.addr,
        "POST",
        path,
        &[("Aloud-Progress", "events"), h[0]],
        b"{}",
    )
    .await;
    assert_eq!(conn.status(), 200);
    let ev = parse_sse(&conn.finish().await.text());
    let n = names(&ev);
    let phases: Vec<String> = ev
        .iter()
        .filter(|e| e.event.as_deref() == Some("aloud.progress"))
        .map(|e| e.json()["phase"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(!phases.iter().any(|p| p == "done"), "{phases:?}");
    assert!(n.contains(&"aloud.error"), "{n:?}");
    assert_eq!(ev.last().unwrap().json()["phase"], "error", "{n:?}");
    aloud.stop().await;
}

/// A chat stream that ends cleanly after an answer chunk, with no finish reason and no `[DONE]`,
/// was cut: the record says so and the events tier ends with `aloud.error`; the off and comments
/// tiers pass the clean end the upstream sent, byte for byte (docs/streams.md, "End of a
/// stream").
#[tokio::test]
async fn a_stream_that_ends_before_its_end_marker_is_no_success() {
    use support::wire::E1;
    let up = Scripted::start().await;
    let sink = std::sync::Arc::new(support::MemorySink::default());
    let aloud = Aloud::start_with_sink(
        &route_config(up.addr(), "openai", "", ""),
        aloud::config::MapEnv::default(),
        Some(sink.clone()),
    )
    .await;
    for tier in ["events", "comments", "off"] {
        let id = format!("unterminated-{tier}-000001");
        let h = [("x-mock", "no-done"), ("aloud-request-id", id.as_str())];
        let conn = Conn::chat(aloud.addr, PATH, tier, &h).await;
        assert_eq!(conn.status(), 200, "{tier}");
        let reply = conn.finish().await;
        let text = reply.text();
        if tier == "events" {
            let ev = parse_sse(&text);
            let n = names(&ev);
            let error = ev
                .iter()
                .find(|e| e.event.as_deref() == Some("aloud.error"))
                .unwrap_or_else(|| panic!("no aloud.error event: {n:?}"));
            assert_eq!(error.json()["code"], "upstream_unterminated", "{text}");
            assert_eq!(n.last(), Some(&"aloud.done"), "{n:?}");
            assert_eq!(ev.last().unwrap().json()["phase"], "error", "{text}");
        } else {
            assert!(
                matches!(reply.end, support::wire::End::Clean),
                "{tier}: the upstream's clean end, passed on"
            );
            if tier == "off" {
                assert_eq!(text, E1, "{tier}: the upstream's bytes");
            } else {
                assert!(
                    text.ends_with(E1),
                    "{tier}: the upstream's bytes last:\n{text}"
                );
            }
        }
        let record = sink.wait_for(&id).await;
        assert_eq!(
            record.outcome,
            aloud::capture::Outcome::UpstreamError,
            "{tier}"
        );
        assert!(record.partial, "{tier}");
        assert_eq!(
            record.error.as_deref(),
            Some("the upstream's stream ended before its end marker"),
            "{tier}"
        );
    }
    aloud.stop().await;
}
