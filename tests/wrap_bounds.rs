//! Bounded memory in the events tier (issue 7, Deliver 6): a non-streaming answer collected for
//! `aloud.result` is bounded by `[progress] max_wrap_body`, past which the client gets
//! `aloud.error` with code `wrap_body_too_large` (never a cut result, never a silent 200). An
//! Ollama NDJSON line or a Gemini array element over the per-record limit (1 MiB) is passed on
//! whole or ends the stream with `aloud.error` code `event_too_large`, never dropped.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use serde_json::{Value, json};
use support::wire::{SseEvent, parse_sse};
use support::*;

/// An upstream answering every request with `status`, `content_type` and `body`.
async fn fixed(content_type: &'static str, body: Vec<u8>) -> Upstream {
    let body = bytes::Bytes::from(body);
    Upstream::start(move |_req| {
        let body = body.clone();
        async move { response(200, &[("content-type", content_type)], full(body)) }
    })
    .await
}

/// POSTs `body` to `path` in the events tier and parses the SSE that comes back.
async fn events(aloud: &Aloud, path: &str, body: &str) -> Vec<SseEvent> {
    let r = post(
        &aloud.url(path),
        &[
            ("content-type", "application/json"),
            ("aloud-progress", "events"),
        ],
        body.to_owned(),
    )
    .await;
    assert_eq!(r.status(), 200);
    let bytes = r.into_body().collect_lossy().await;
    parse_sse(&String::from_utf8_lossy(&bytes))
}

/// Reads a body to its end; a cut body yields what arrived (the events carry the verdict).
trait CollectLossy {
    async fn collect_lossy(self) -> Vec<u8>;
}

impl CollectLossy for hyper::body::Incoming {
    async fn collect_lossy(mut self) -> Vec<u8> {
        use http_body_util::BodyExt;
        let mut out = Vec::new();
        while let Some(Ok(frame)) = self.frame().await {
            if let Ok(data) = frame.into_data() {
                out.extend_from_slice(&data);
            }
        }
        out
    }
}

fn named<'a>(events: &'a [SseEvent], name: &str) -> Vec<&'a SseEvent> {
    events
        .iter()
        .filter(|e| e.event.as_deref() == Some(name))
        .collect()
}

fn summary(events: &[SseEvent]) -> String {
    events
        .iter()
        .map(|e| format!("{:?}: {:.160}", e.event, e.data))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A non-streaming chat answer whose serialized size is about `size` bytes.
fn answer(size: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "c1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "x".repeat(size)}, "finish_reason": "stop"}],
    }))
    .unwrap()
}

const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

/// The answer is over the bound: `aloud.error` with `wrap_body_too_large`, and no result.
fn assert_too_large(what: &str, events: &[SseEvent]) {
    assert!(
        named(events, "aloud.result").is_empty(),
        "{what}: an aloud.result for a body over max_wrap_body:\n{}",
        summary(events)
    );
    let errors = named(events, "aloud.error");
    assert!(
        errors
            .iter()
            .any(|e| e.json()["code"] == "wrap_body_too_large"),
        "{what}: no aloud.error with code wrap_body_too_large:\n{}",
        summary(events)
    );
}

#[tokio::test]
async fn an_answer_over_max_wrap_body_ends_with_wrap_body_too_large() {
    let big = answer(200 << 10);
    let small = answer(32 << 10);
    let up_big = fixed("application/json", big).await;
    let toml = route_config(up_big.addr, "openai", "", "").replace(
        "[server]\n",
        "[progress]\nmax_wrap_body = \"64KiB\"\n[server]\n",
    );
    let aloud = Aloud::start(&toml).await;
    assert_too_large(
        "200 KiB answer, max_wrap_body 64 KiB",
        &events(&aloud, "/up/v1/chat/completions", CHAT).await,
    );
    aloud.stop().await;

    // Under the bound, the answer is still wrapped whole.
    let up_small = fixed("application/json", small.clone()).await;
    let toml = route_config(up_small.addr, "openai", "", "").replace(
        "[server]\n",
        "[progress]\nmax_wrap_body = \"64KiB\"\n[server]\n",
    );
    let aloud = Aloud::start(&toml).await;
    let ev = events(&aloud, "/up/v1/chat/completions", CHAT).await;
    let result = named(&ev, "aloud.result");
    assert_eq!(result.len(), 1, "{}", summary(&ev));
    let expected: Value = serde_json::from_slice(&small).unwrap();
    assert_eq!(result[0].json()["body"], expected);
    aloud.stop().await;
}

#[tokio::test]
async fn the_default_max_wrap_body_is_8_mib() {
    let up = fixed("application/json", answer((8 << 20) + (64 << 10))).await;
    let aloud = Aloud::start(&route_config(up.addr, "openai", "", "")).await;
    assert_too_large(
        "8 MiB + 64 KiB answer, default max_wrap_body",
        &events(&aloud, "/up/v1/chat/completions", CHAT).await,
    );
    aloud.stop().await;
}

/// The upstream records, in order, with a huge one in the middle: it arrives whole among the
/// unnamed `data:` events, or the stream ends with `aloud.error` `event_too_large` and carries
/// no upstream record after it. Never dropped while the stream goes on.
fn assert_whole_or_error(what: &str, events: &[SseEvent], records: &[Value]) {
    let huge = &records[1];
    let data: Vec<(usize, Value)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.event.is_none())
        .filter_map(|(i, e)| serde_json::from_str(&e.data).ok().map(|v| (i, v)))
        .collect();
    if data.iter().any(|(_, v)| v == huge) {
        let got: Vec<&Value> = data.iter().map(|(_, v)| v).collect();
        assert_eq!(
            got,
            records.iter().collect::<Vec<_>>(),
            "{what}: records out of order"
        );
        return;
    }
    let error = events.iter().position(|e| {
        e.event.as_deref() == Some("aloud.error") && e.json()["code"] == "event_too_large"
    });
    let Some(error) = error else {
        panic!(
            "{what}: the oversized record was dropped silently (neither passed whole nor an \
             aloud.error with code event_too_large):\n{}",
            summary(events)
        );
    };
    assert!(
        data.iter().all(|(i, _)| *i < error),
        "{what}: upstream records continue after event_too_large:\n{}",
        summary(events)
    );
}

/// About 1.5 MiB of text: over the events tier's 1 MiB per-record limit.
fn huge_text() -> String {
    "y".repeat(3 << 19)
}

#[tokio::test]
async fn an_oversized_ollama_line_is_passed_whole_or_ends_with_event_too_large() {
    let records = vec![
        json!({"model": "m", "message": {"role": "assistant", "content": "He"}, "done": false}),
        json!({"model": "m", "message": {"role": "assistant", "content": huge_text()}, "done": false}),
        json!({"model": "m", "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop"}),
    ];
    let mut body = Vec::new();
    for r in &records {
        body.extend(serde_json::to_vec(r).unwrap());
        body.push(b'\n');
    }
    let up = fixed("application/x-ndjson", body).await;
    let aloud = Aloud::start(&route_config(up.addr, "ollama", "", "")).await;
    let ev = events(&aloud, "/up/api/chat", CHAT).await;
    assert_whole_or_error("ollama NDJSON, 1.5 MiB line", &ev, &records);
    aloud.stop().await;
}

#[tokio::test]
async fn an_oversized_gemini_array_element_is_passed_whole_or_ends_with_event_too_large() {
    let part = |text: &str| json!({"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}]});
    let records = vec![part("He"), part(&huge_text()), part("llo")];
    let body = format!("[{},\r\n{},\r\n{}]", records[0], records[1], records[2]);
    let up = fixed("application/json", body.into_bytes()).await;
    let aloud = Aloud::start(&route_config(up.addr, "gemini", "", "")).await;
    let ev = events(
        &aloud,
        "/up/v1beta/models/m:streamGenerateContent",
        r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#,
    )
    .await;
    assert_whole_or_error("gemini JSON array, 1.5 MiB element", &ev, &records);
    aloud.stop().await;
}
