//! The events tier always ends with whole `aloud.*` events a client's SSE parser can read: after
//! an upstream cut in the middle of an event, after a last event without its blank line, and
//! after the upstream's own in-stream error (issue 7 review findings).
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
