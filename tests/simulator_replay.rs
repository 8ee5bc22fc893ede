//! Replay over real sockets: a hand-built capture served again through the Responses and
//! Anthropic endpoints, streamed and whole, with a recorded error and `x-sim-*` headers.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns: a failed unwrap is a failed test"
)]

use aloud::capture::{
    CaptureLevel, CaptureRecord, Delta, DeltaKind, Outcome, Reassembled, Timings, TokenUsage,
};
use aloud::simulator::serve_replay;
use serde_json::{Value, json};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ANSWER: &str = "The answer is forty-two.";

/// One recorded piece; `Delta::from_pieces` turns them into the stored form.
fn delta(at_ms: f64, kind: DeltaKind, text: &str) -> (f64, DeltaKind, &str) {
    (at_ms, kind, text)
}

/// An Anthropic capture: a labelled thinking step, then the answer; short offsets keep tests fast.
fn record() -> CaptureRecord {
    use DeltaKind::{Answer, Label, Reasoning};
    CaptureRecord {
        id: "01JREPLAY".to_owned(),
        attempt: 1,
        owner: None,
        started_at_ms: 1_767_225_600_000,
        route: "anthropic".to_owned(),
        api: "anthropic".to_owned(),
        model: Some("claude-recorded".to_owned()),
        method: "POST".to_owned(),
        path: "/v1/messages".to_owned(),
        client_status: Some(200),
        upstream_status: Some(200),
        streamed: true,
        tier: "events".to_owned(),
        outcome: Outcome::Ok,
        partial: false,
        capture: CaptureLevel::Full,
        timings: Timings {
            upstream_headers_ms: Some(20.0),
            upstream_first_byte_ms: Some(21.0),
            client_first_byte_ms: Some(21.5),
            first_feedback_ms: Some(22.0),
            first_reasoning_ms: Some(25.0),
            first_token_ms: Some(60.0),
            done_ms: Some(90.0),
            longest_silence_ms: Some(20.0),
            overhead_ms: Some(0.5),
            upstream_ms: Some(19.0),
        },
        usage: Some(TokenUsage {
            input: Some(11),
            output: Some(40),
            reasoning: None,
        }),
        upstream_timings: None,
        eta: None,
        request: Some(json!({"model": "claude-recorded", "stream": true, "messages": []}).into()),
        response: Some(Reassembled {
            text: ANSWER.to_owned(),
            reasoning: "Reading the question\nIt asks for a number.".to_owned(),
            tool_calls: Vec::new(),
            finish_reason: Some("end_turn".to_owned()),
            body: None,
        }),
        deltas: Delta::from_pieces(&[
            delta(25.0, Reasoning, "Reading the question\n"),
            delta(25.0, Label, "Reading the question"),
            delta(30.0, Reasoning, "It asks"),
            delta(40.0, Reasoning, " for a number."),
            delta(60.0, Answer, "The answer"),
            delta(70.0, Answer, " is forty"),
            delta(80.0, Answer, "-two."),
        ]),
        error: None,
        truncated: false,
        disconnect: None,
    }
}

/// Serves `record` on a fresh port while `client` runs.
async fn with_replay<F, Fut, T>(record: CaptureRecord, client: F) -> T
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve_replay(listener, record, std::future::pending());
    tokio::select! {
        result = server => panic!("server ended early: {result:?}"),
        out = client(addr) => out,
    }
}

/// POSTs `body` and returns the status and the de-chunked body.
async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, String) {
    let body = body.to_string();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: sim\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return (status, rest.to_owned());
    }
    let (mut out, mut rest) = (String::new(), rest);
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&tail[..size]);
        rest = &tail[size + 2..];
    }
    (status, out)
}

/// The `data:` payloads of an SSE body, parsed.
fn data(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// Named `simulator_replay::*` so `cargo test simulator` selects them.
mod simulator_replay {
    use super::*;

    #[tokio::test]
    async fn anthropic_stream_replays_thinking_and_answer() {
        with_replay(record(), |addr| async move {
            let req = json!({"model": "x", "stream": true, "thinking": {"type": "enabled"}});
            let (status, body) = post(addr, "/v1/messages", &[], req).await;
            assert_eq!(status, 200);
            let events = data(&body);
            let thinking: String = events
                .iter()
                .filter_map(|e| e["delta"]["thinking"].as_str())
                .collect();
            assert_eq!(thinking, "Reading the question\nIt asks for a number.");
            let answer: String = events
                .iter()
                .filter_map(|e| e["delta"]["text"].as_str())
                .collect();
            assert_eq!(answer, ANSWER);
            assert_eq!(events[0]["message"]["model"], "claude-recorded");
            assert_eq!(events[0]["message"]["usage"]["input_tokens"], 11);
            let last = events.iter().rev().find(|e| e["type"] == "message_delta");
            assert_eq!(last.unwrap()["usage"]["output_tokens"], 40);
        })
        .await;
    }

    #[tokio::test]
    async fn responses_stream_replays_in_its_own_shape() {
        with_replay(record(), |addr| async move {
            let req = json!({"model": "x", "stream": true, "reasoning": {"summary": "auto"}});
            let (status, body) = post(addr, "/v1/responses", &[("x-sim-sse-ids", "1")], req).await;
            assert_eq!(status, 200);
            assert!(body.starts_with("id: 1\n"), "{body}");
            let events = data(&body);
            let answer: String = events
                .iter()
                .filter(|e| e["type"] == "response.output_text.delta")
                .map(|e| e["delta"].as_str().unwrap())
                .collect();
            assert_eq!(answer, ANSWER);
            let parts: Vec<&str> = events
                .iter()
                .filter(|e| e["type"] == "response.reasoning_summary_text.done")
                .map(|e| e["text"].as_str().unwrap())
                .collect();
            assert_eq!(parts, ["**Reading the question**\n\nIt asks for a number."]);
        })
        .await;
    }

    #[tokio::test]
    async fn whole_answer_is_the_recorded_text() {
        with_replay(record(), |addr| async move {
            let (status, body) = post(addr, "/v1/responses", &[], json!({"input": "hi"})).await;
            assert_eq!(status, 200);
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["output"][1]["content"][0]["text"], ANSWER);
            let req = json!({"messages": [], "max_tokens": 10});
            let (_, body) = post(addr, "/v1/messages", &[], req).await;
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["content"][0]["text"], ANSWER);
        })
        .await;
    }

    #[tokio::test]
    async fn errors_replay_as_recorded_and_on_request() {
        let mut failed = record();
        failed.upstream_status = Some(529);
        failed.outcome = Outcome::UpstreamError;
        failed.deltas.clear();
        with_replay(failed, |addr| async move {
            let (status, body) = post(addr, "/v1/messages", &[], json!({})).await;
            assert_eq!(status, 529);
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"]["type"], "overloaded_error");
        })
        .await;
        with_replay(record(), |addr| async move {
            let headers = [("x-sim-status", "429")];
            let (status, _) = post(addr, "/v1/chat/completions", &headers, json!({})).await;
            assert_eq!(status, 429);
            let (status, _) = post(addr, "/v1/messages", &[("x-sim-speed", "x")], json!({})).await;
            assert_eq!(status, 400);
        })
        .await;
    }
}
