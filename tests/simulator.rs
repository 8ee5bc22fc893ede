//! The simulator over real sockets: every api streamed and not, seeds, errors, drops and timing.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers outside #[test] fns: a failed unwrap is a failed test"
)]

use aloud::simulator::{router, serve};

use serde_json::{Value, json};
use std::future::Future;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Fast pacing so tests finish in milliseconds.
const FAST: &[(&str, &str)] = &[
    ("x-sim-think-ms", "3"),
    ("x-sim-token-ms", "1"),
    ("x-sim-tokens", "12"),
];

/// Runs `client` against a simulator on a fresh port; the server stops when the client is done.
async fn with_server<F, Fut, T>(client: F) -> T
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: Future<Output = T>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve(listener, std::future::pending());
    tokio::select! {
        result = server => panic!("server ended early: {result:?}"),
        out = client(addr) => out,
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Whether a chunked body ended with its terminating chunk.
    complete: bool,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    /// SSE events as (event name, id, data) in order.
    fn events(&self) -> Vec<(Option<String>, Option<String>, String)> {
        let text = self.text().replace("\r\n", "\n");
        text.split("\n\n")
            .filter(|block| !block.trim().is_empty())
            .map(|block| {
                let (mut event, mut id, mut data) = (None, None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    } else {
                        panic!("unexpected SSE line {line:?}");
                    }
                }
                (event, id, data)
            })
            .collect()
    }

    fn data_json(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|(_, _, d)| d != "[DONE]")
            .map(|(_, _, d)| serde_json::from_str(&d).unwrap())
            .collect()
    }
}

/// A minimal HTTP/1.1 client that keeps the exact bytes and notices a cut-off chunked body.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: sim\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // A dropped connection may end in a reset; keep whatever arrived.
    let _ = stream.read_to_end(&mut raw).await;
    parse(&raw)
}

fn parse(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked");
    if !chunked {
        return Reply {
            status,
            headers,
            body: rest.to_vec(),
            complete: true,
        };
    }
    let (mut body, mut pos, mut complete) = (Vec::new(), 0, false);
    while let Some(eol) = rest[pos..].windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[pos..pos + eol]).unwrap(), 16).unwrap();
        pos += eol + 2;
        if size == 0 {
            complete = true;
            break;
        }
        if rest.len() < pos + size + 2 {
            break;
        }
        body.extend_from_slice(&rest[pos..pos + size]);
        pos += size + 2;
    }
    Reply {
        status,
        headers,
        body,
        complete,
    }
}

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    FAST.iter().chain(extra).copied().collect()
}

async fn post(
    addr: SocketAddr,
    path: &str,
    extra: &[(&'static str, &'static str)],
    body: Value,
) -> Reply {
    request(addr, "POST", path, &with(extra), &body.to_string()).await
}

/// Named `simulator::*` so `cargo test simulator` selects them.
mod simulator {
    use super::*;

    #[tokio::test]
    async fn chat_completions_whole() {
        with_server(|addr| async move {
            let r = post(
                addr,
                "/v1/chat/completions",
                &[],
                json!({"model": "o-sim", "messages": []}),
            )
            .await;
            assert_eq!(r.status, 200);
            assert_eq!(r.header("content-type"), Some("application/json"));
            let v = r.json();
            assert_eq!(v["object"], "chat.completion");
            assert_eq!(v["model"], "o-sim");
            assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
            assert_eq!(v["choices"][0]["finish_reason"], "stop");
            assert!(
                v["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .contains("o-sim")
            );
            let u = &v["usage"];
            let reasoning = u["completion_tokens_details"]["reasoning_tokens"]
                .as_u64()
                .unwrap();
            assert!(reasoning > 0);
            assert_eq!(u["completion_tokens"].as_u64().unwrap(), 12 + reasoning);
            assert_eq!(
                u["total_tokens"],
                u["prompt_tokens"].as_u64().unwrap() + 12 + reasoning
            );
        })
        .await;
    }

    #[tokio::test]
    async fn chat_completions_stream_with_and_without_usage() {
        with_server(|addr| async move {
            for include in [false, true] {
                let body = json!({"stream": true, "stream_options": {"include_usage": include}});
                let r = post(addr, "/chat/completions", &[], body).await;
                assert!(r.complete);
                assert!(
                    r.header("content-type")
                        .unwrap()
                        .starts_with("text/event-stream")
                );
                assert!(r.text().ends_with("data: [DONE]\n\n"));
                let events = r.events();
                assert!(events.iter().all(|(e, id, _)| e.is_none() && id.is_none()));
                let chunks = r.data_json();
                assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
                assert_eq!(chunks[0]["model"], "sim-reasoner");
                let content: String = chunks
                    .iter()
                    .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
                    .collect();
                assert!(content.contains("sim-reasoner"));
                let finish: Vec<&Value> = chunks
                    .iter()
                    .filter(|c| c["choices"][0]["finish_reason"] == "stop")
                    .collect();
                assert_eq!(finish.len(), 1);
                let usage: Vec<&Value> = chunks.iter().filter(|c| c["usage"].is_object()).collect();
                if include {
                    assert_eq!(usage.len(), 1);
                    assert_eq!(usage[0]["choices"], json!([]));
                    assert!(std::ptr::eq(usage[0], chunks.last().unwrap()));
                } else {
                    assert!(usage.is_empty());
                    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
                }
                assert!(
                    chunks
                        .iter()
                        .all(|c| c["choices"][0]["delta"].get("reasoning_content").is_none())
                );
            }
            let r = post(
                addr,
                "/v1/chat/completions",
                &[("x-sim-reasoning-content", "1")],
                json!({"stream": true}),
            )
            .await;
            let reasoning: String = r
                .data_json()
                .iter()
                .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
                .collect();
            assert!(!reasoning.is_empty());
        })
        .await;
    }

    #[tokio::test]
    async fn responses_stream_with_summaries() {
        with_server(|addr| async move {
            let body = json!({"model": "r-sim", "stream": true, "reasoning": {"summary": "auto"}});
            let r = post(addr, "/v1/responses", &[], body).await;
            assert!(r.complete);
            let events = r.events();
            let mut kinds = Vec::new();
            for (i, (event, _, data)) in events.iter().enumerate() {
                let v: Value = serde_json::from_str(data).unwrap();
                assert_eq!(event.as_deref(), v["type"].as_str());
                assert_eq!(v["sequence_number"], i as u64);
                kinds.push(v["type"].as_str().unwrap().to_owned());
            }
            assert_eq!(
                &kinds[..4],
                [
                    "response.created",
                    "response.in_progress",
                    "response.output_item.added",
                    "response.reasoning_summary_part.added"
                ]
            );
            assert_eq!(kinds.last().unwrap(), "response.completed");
            for needed in [
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
            ] {
                assert!(kinds.iter().any(|k| k == needed), "{needed} missing");
            }
            let datas = r.data_json();
            let first_summary = datas
                .iter()
                .find(|v| v["type"] == "response.reasoning_summary_text.delta")
                .unwrap();
            assert!(first_summary["delta"].as_str().unwrap().starts_with("**"));
            let deltas: String = datas
                .iter()
                .filter(|v| v["type"] == "response.output_text.delta")
                .map(|v| v["delta"].as_str().unwrap())
                .collect();
            let done = datas
                .iter()
                .find(|v| v["type"] == "response.output_text.done")
                .unwrap();
            assert_eq!(done["text"], deltas);
            assert!(
                datas
                    .iter()
                    .filter(|v| v["type"] == "response.output_text.delta")
                    .all(|v| v["logprobs"] == json!([]) && v["item_id"].is_string())
            );
            let completed = &datas.last().unwrap()["response"];
            assert_eq!(completed["status"], "completed");
            assert_eq!(completed["model"], "r-sim");
            assert_eq!(completed["output"][0]["type"], "reasoning");
            assert!(
                completed["output"][0]["summary"][0]["text"]
                    .as_str()
                    .unwrap()
                    .starts_with("**")
            );
            assert_eq!(completed["output"][1]["content"][0]["text"], deltas);
            let u = &completed["usage"];
            let reasoning = u["output_tokens_details"]["reasoning_tokens"]
                .as_u64()
                .unwrap();
            assert_eq!(u["output_tokens"].as_u64().unwrap(), 12 + reasoning);
        })
        .await;
    }

    #[tokio::test]
    async fn responses_whole_and_without_summary() {
        with_server(|addr| async move {
            let v = post(addr, "/responses", &[], json!({"input": "hi"}))
                .await
                .json();
            assert_eq!(
                (v["object"].as_str(), v["status"].as_str()),
                (Some("response"), Some("completed"))
            );
            assert_eq!(v["output"][0]["summary"], json!([]));
            assert_eq!(v["output"][1]["content"][0]["type"], "output_text");
            assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 12);
            let r = post(addr, "/v1/responses", &[], json!({"stream": true})).await;
            assert!(
                r.data_json()
                    .iter()
                    .all(|v| !v["type"].as_str().unwrap().contains("summary"))
            );
        })
        .await;
    }

    #[tokio::test]
    async fn anthropic_messages_stream_and_whole() {
        with_server(|addr| async move {
            let body = json!({"model": "claude-sim", "stream": true, "thinking": {"type": "enabled", "budget_tokens": 2000}});
            let r = post(addr, "/v1/messages", &[], body.clone()).await;
            assert!(r.complete);
            let names: Vec<String> = r.events().into_iter().map(|(e, _, _)| e.unwrap()).collect();
            assert_eq!(&names[..3], ["message_start", "ping", "content_block_start"]);
            assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
            let datas = r.data_json();
            for ((name, _, _), v) in r.events().iter().zip(&datas) {
                assert_eq!(name.as_deref(), v["type"].as_str());
            }
            assert_eq!(datas[0]["message"]["model"], "claude-sim");
            assert_eq!(datas[2]["content_block"]["type"], "thinking");
            let thinking: String = datas.iter().filter_map(|v| v["delta"]["thinking"].as_str()).collect();
            let first_line = thinking.lines().next().unwrap();
            assert!(first_line.split(' ').count() <= 5, "{first_line}");
            let kinds: Vec<&str> = datas.iter().filter_map(|v| v["delta"]["type"].as_str()).collect();
            let sig = kinds.iter().position(|k| *k == "signature_delta").unwrap();
            assert_eq!(kinds[sig - 1], "thinking_delta");
            assert_eq!(kinds[sig + 1], "text_delta");
            let delta = &datas[datas.len() - 2];
            assert_eq!(delta["delta"]["stop_reason"], "end_turn");
            assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 12);

            let mut whole = body;
            whole["stream"] = json!(false);
            let v = post(addr, "/v1/messages", &[], whole).await.json();
            assert_eq!(v["type"], "message");
            assert_eq!(v["content"][0]["type"], "thinking");
            assert!(v["content"][0]["signature"].is_string());
            assert_eq!(v["content"][1]["type"], "text");
            assert_eq!(v["stop_reason"], "end_turn");
            let v = post(addr, "/v1/messages", &[], json!({"model": "c"})).await.json();
            assert_eq!(v["content"][0]["type"], "text");
            assert_eq!(v["usage"]["output_tokens"], 12);
        })
        .await;
    }

    #[tokio::test]
    async fn gemini_three_framings() {
        with_server(|addr| async move {
            let body = json!({"contents": [], "generationConfig": {"thinkingConfig": {"includeThoughts": true}}});
            let r = post(addr, "/v1beta/models/gemini-sim:streamGenerateContent?alt=sse", &[], body.clone()).await;
            assert!(r.complete);
            assert!(r.text().contains("\r\n\r\n"));
            assert!(r.events().iter().all(|(e, id, _)| e.is_none() && id.is_none()));
            let chunks = r.data_json();
            let first = &chunks[0]["candidates"][0]["content"]["parts"][0];
            assert_eq!(first["thought"], true);
            assert!(first["text"].as_str().unwrap().starts_with("**"));
            let last = chunks.last().unwrap();
            assert_eq!(last["candidates"][0]["finishReason"], "STOP");
            assert_eq!(last["modelVersion"], "gemini-sim");
            let u = &last["usageMetadata"];
            assert_eq!(u["candidatesTokenCount"], 12);
            let total = u["promptTokenCount"].as_u64().unwrap() + 12 + u["thoughtsTokenCount"].as_u64().unwrap();
            assert_eq!(u["totalTokenCount"], total);

            let r = post(addr, "/v1beta/models/gemini-sim:streamGenerateContent", &[], body.clone()).await;
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert!(r.json().as_array().unwrap().len() > 12);

            let v = post(addr, "/v1beta/models/gemini-sim:generateContent", &[], json!({})).await.json();
            assert_eq!(v["candidates"][0]["content"]["parts"].as_array().unwrap().len(), 1);
            assert_eq!(v["candidates"][0]["finishReason"], "STOP");

            let r = post(addr, "/v1beta/models/gemini-sim:countTokens", &[], json!({})).await;
            assert_eq!(r.status, 404);
            assert_eq!(r.json()["error"]["status"], "NOT_FOUND");
        })
        .await;
    }

    #[tokio::test]
    async fn ollama_chat_generate_tags() {
        with_server(|addr| async move {
            let r = post(
                addr,
                "/api/chat",
                &[],
                json!({"model": "llama-sim", "think": true}),
            )
            .await;
            assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
            let lines: Vec<Value> = r
                .text()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert!(lines[0]["message"]["thinking"].is_string());
            assert_eq!(lines[0]["done"], false);
            let last = lines.last().unwrap();
            assert_eq!(
                (last["done"].as_bool(), last["done_reason"].as_str()),
                (Some(true), Some("stop"))
            );
            for field in [
                "total_duration",
                "load_duration",
                "prompt_eval_count",
                "prompt_eval_duration",
                "eval_count",
                "eval_duration",
            ] {
                assert!(last[field].is_u64(), "{field}");
            }
            let content: String = lines
                .iter()
                .filter_map(|l| l["message"]["content"].as_str())
                .collect();
            assert!(content.contains("llama-sim"));

            let v = post(
                addr,
                "/api/generate",
                &[],
                json!({"model": "g", "stream": false}),
            )
            .await
            .json();
            assert_eq!(v["done"], true);
            assert!(v["response"].as_str().unwrap().contains('g'));
            assert!(v.get("thinking").is_none());

            let r = request(addr, "GET", "/api/tags", &[], "").await;
            assert!(r.json()["models"].is_array());
        })
        .await;
    }

    #[tokio::test]
    async fn same_seed_same_bytes_everywhere() {
        with_server(|addr| async move {
            let cases: &[(&str, Value)] = &[
                (
                    "/v1/chat/completions",
                    json!({"stream": true, "stream_options": {"include_usage": true}}),
                ),
                ("/v1/chat/completions", json!({})),
                (
                    "/v1/responses",
                    json!({"stream": true, "reasoning": {"summary": "detailed"}}),
                ),
                (
                    "/v1/messages",
                    json!({"stream": true, "thinking": {"type": "enabled"}}),
                ),
                ("/v1beta/models/g:streamGenerateContent?alt=sse", json!({})),
                ("/api/chat", json!({"think": true})),
            ];
            for (path, body) in cases {
                let a = post(addr, path, &[("x-sim-seed", "77")], body.clone()).await;
                let b = post(addr, path, &[("x-sim-seed", "77")], body.clone()).await;
                let c = post(addr, path, &[("x-sim-seed", "78")], body.clone()).await;
                assert_eq!(a.body, b.body, "{path}");
                assert_ne!(a.body, c.body, "{path}");
            }
            let a = post(addr, "/v1/chat/completions", &[], json!({}))
                .await
                .json();
            let b = post(addr, "/v1/chat/completions", &[], json!({}))
                .await
                .json();
            assert_ne!(a["id"], b["id"]);
        })
        .await;
    }

    #[tokio::test]
    async fn x_sim_status_uses_each_envelope() {
        with_server(|addr| async move {
            let r = post(addr, "/v1/messages", &[("x-sim-status", "529")], json!({"stream": true})).await;
            assert_eq!(r.status, 529);
            assert_eq!(r.json(), json!({"type": "error", "error": {"type": "overloaded_error", "message": "simulated 529 error (x-sim-status)"}}));
            let r = post(addr, "/v1/chat/completions", &[("x-sim-status", "429")], json!({})).await;
            assert_eq!(r.status, 429);
            assert_eq!(r.json()["error"]["type"], "rate_limit_error");
            let r = post(addr, "/v1beta/models/g:generateContent", &[("x-sim-status", "503")], json!({})).await;
            assert_eq!(r.json()["error"]["status"], "UNAVAILABLE");
            let r = post(addr, "/api/chat", &[("x-sim-status", "500")], json!({})).await;
            assert!(r.json()["error"].is_string());
        })
        .await;
    }

    #[tokio::test]
    async fn fail_after_drops_the_connection() {
        with_server(|addr| async move {
            let r = post(
                addr,
                "/v1/chat/completions",
                &[("x-sim-fail-after", "4")],
                json!({"stream": true}),
            )
            .await;
            assert_eq!(r.status, 200);
            assert!(!r.complete, "the terminating chunk must not be sent");
            let tokens = r
                .data_json()
                .iter()
                .filter(|c| {
                    c["choices"][0]["delta"]["content"]
                        .as_str()
                        .is_some_and(|t| !t.is_empty())
                })
                .count();
            assert_eq!(tokens, 4);
            assert!(!r.text().contains("[DONE]"));
            let r = post(
                addr,
                "/v1/messages",
                &[("x-sim-fail-after", "0")],
                json!({}),
            )
            .await;
            assert!(!r.complete);
            assert!(r.body.is_empty());
        })
        .await;
    }

    #[tokio::test]
    async fn sse_ids_number_events() {
        with_server(|addr| async move {
            let r = post(
                addr,
                "/v1/chat/completions",
                &[("x-sim-sse-ids", "1")],
                json!({"stream": true}),
            )
            .await;
            let ids: Vec<u64> = r
                .events()
                .into_iter()
                .map(|(_, id, _)| id.unwrap().parse().unwrap())
                .collect();
            assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
            let r = post(
                addr,
                "/v1/messages",
                &[("x-sim-sse-ids", "1")],
                json!({"stream": true}),
            )
            .await;
            assert!(
                r.events()
                    .iter()
                    .all(|(e, id, _)| e.is_some() && id.is_some())
            );
        })
        .await;
    }

    #[tokio::test]
    async fn bad_input_gets_the_api_envelope() {
        with_server(|addr| async move {
            let r = post(addr, "/v1/messages", &[("x-sim-seed", "banana")], json!({})).await;
            assert_eq!(r.status, 400);
            assert_eq!(r.json()["error"]["type"], "invalid_request_error");
            assert!(
                r.json()["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("x-sim-seed")
            );
            let r = request(addr, "POST", "/v1/chat/completions", FAST, "{not json").await;
            assert_eq!(r.status, 400);
            assert_eq!(r.json()["error"]["type"], "invalid_request_error");
            let r = request(addr, "POST", "/api/chat", FAST, "[1]").await;
            assert_eq!((r.status, r.json()["error"].is_string()), (400, true));
            let r = post(addr, "/nope", &[], json!({})).await;
            assert_eq!(r.status, 404);
            assert!(
                r.json()["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("/nope")
            );
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn default_timing_lands_between_ten_and_twentyfive_seconds() {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        for seed in ["1", "2", "3"] {
            for (path, body) in [
                ("/v1/chat/completions", json!({"stream": true})),
                ("/v1/messages", json!({})),
            ] {
                let req = http::Request::post(path)
                    .header("x-sim-seed", seed)
                    .body(axum::body::Body::from(body.to_string()))
                    .unwrap();
                let start = tokio::time::Instant::now();
                let response = router().oneshot(req).await.unwrap();
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
                let elapsed = start.elapsed();
                assert!(!bytes.is_empty());
                assert!(
                    (10..=25).contains(&elapsed.as_secs()),
                    "{path} seed {seed}: {elapsed:?}"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn headers_wait_for_headers_ms() {
        use tower::ServiceExt;
        let req = http::Request::post("/v1/messages")
            .header("x-sim-headers-ms", "1500")
            .header("x-sim-think-ms", "4000")
            .body(axum::body::Body::from(r#"{"stream":true}"#))
            .unwrap();
        let start = tokio::time::Instant::now();
        let response = router().oneshot(req).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(start.elapsed().as_millis(), 1_500);
    }

    #[tokio::test(start_paused = true)]
    async fn whole_answers_wait_for_the_whole_call() {
        use tower::ServiceExt;
        let req = http::Request::post("/api/generate")
            .header("x-sim-headers-ms", "500")
            .header("x-sim-think-ms", "4000")
            .header("x-sim-tokens", "10")
            .header("x-sim-token-ms", "100")
            .body(axum::body::Body::from(r#"{"stream":false}"#))
            .unwrap();
        let start = tokio::time::Instant::now();
        let response = router().oneshot(req).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(start.elapsed().as_millis(), 500 + 4_000 + 10 * 100);
    }

    #[tokio::test]
    async fn oversized_bodies_get_413_in_the_envelope() {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let big = vec![b' '; aloud::simulator::BODY_LIMIT + 1];
        let req = http::Request::post("/v1/messages")
            .body(axum::body::Body::from(big))
            .unwrap();
        let response = router().oneshot(req).await.unwrap();
        assert_eq!(response.status(), 413);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"]["type"], "request_too_large");
    }

    #[tokio::test]
    async fn serve_returns_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = serve(listener, async {
            let _ = stopped.await;
        });
        let client = async move {
            let r = request(addr, "GET", "/api/tags", &[], "").await;
            assert_eq!(r.status, 200);
            stop.send(()).unwrap();
        };
        let (result, ()) = tokio::join!(server, client);
        assert!(result.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn status_waits_for_headers_ms_only() {
        use tower::ServiceExt;
        let req = http::Request::post("/v1/responses")
            .header("x-sim-status", "503")
            .header("x-sim-headers-ms", "700")
            .body(axum::body::Body::from("{}"))
            .unwrap();
        let start = tokio::time::Instant::now();
        let response = router().oneshot(req).await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(start.elapsed().as_millis(), 700);
    }
}
