//! OpenTelemetry traces end to end: aloud exports to a real OTLP/HTTP receiver that decodes the
//! protobuf with the OpenTelemetry project's own definitions (tests/clients/otlp_receiver.py),
//! for the five apis of the simulator, streamed and not, a failure, trace context in and out,
//! sampling, and a collector that is down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Aloud, Upstream, body_bytes, full, post, response};
use tokio::io::{AsyncBufReadExt, BufReader};

/// How long spans may take to arrive (the exporter posts at least once a second).
const DEADLINE: Duration = Duration::from_secs(20);
const FAST: [(&str, &str); 3] = [
    ("x-sim-think-ms", "3"),
    ("x-sim-token-ms", "1"),
    ("x-sim-tokens", "8"),
];

/// The Python OTLP receiver, writing decoded spans as JSON lines.
struct Receiver {
    port: u16,
    out: PathBuf,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Receiver {
    /// `None` (skip) when the test venv is not there and not required.
    async fn start(what: &str) -> Option<Receiver> {
        let clients = support::clients::clients(what)?;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("spans.jsonl");
        let mut child = tokio::process::Command::new(&clients.python)
            .arg(clients.dir.join("otlp_receiver.py"))
            .arg(&out)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the OTLP receiver");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("the receiver starts")
            .unwrap()
            .expect("the receiver prints its port");
        let port = first.strip_prefix("listening ").unwrap().parse().unwrap();
        Some(Receiver {
            port,
            out,
            _child: child,
            _dir: dir,
        })
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.port)
    }

    /// The spans received so far. The receiver appends while this reads, so the text may end in
    /// a line it has not finished writing: only lines ended by a newline are complete.
    fn spans(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Polls the receiver's output until a span of `trace_id` arrived, or fails at the deadline.
    async fn span_of(&self, trace_id: &str) -> Value {
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(s) = self.spans().into_iter().find(|s| s["trace_id"] == trace_id) {
                return s;
            }
            assert!(
                Instant::now() < until,
                "no span for trace {trace_id}: {:?}",
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn traceparent(n: u64) -> (String, String, String) {
    let trace = format!(
        "{:016x}{:016x}",
        0x0af7_6519_16cd_43dd_u64,
        n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
    );
    let span = format!("{:016x}", 0xb7ad_6b71_6920_3331_u64 ^ n);
    (format!("00-{trace}-{span}-01"), trace, span)
}

fn telemetry_toml(endpoint: &str, extra: &str) -> String {
    format!(
        "[capture]\nenabled = false\n[telemetry]\notlp_endpoint = \"{endpoint}\"\nservice_name = \"aloud-test\"\n{extra}\n"
    )
}

struct Case {
    path: String,
    body: Value,
    op: &'static str,
    provider: &'static str,
    model: &'static str,
    streamed: bool,
    /// JSON pointers to the id and the (input, output) usage in a non-streamed answer.
    id: &'static str,
    usage: (&'static str, &'static str),
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let msgs = json!([{"role": "user", "content": "hi"}]);
    for streamed in [false, true] {
        out.push(Case {
            path: "/openai/v1/chat/completions".into(),
            body: json!({"model": "sim-chat", "messages": msgs, "stream": streamed,
                         "stream_options": if streamed { json!({"include_usage": true}) } else { Value::Null }}),
            op: "chat", provider: "openai", model: "sim-chat", streamed,
            id: "/id", usage: ("/usage/prompt_tokens", "/usage/completion_tokens"),
        });
        out.push(Case {
            path: "/openai/v1/responses".into(),
            body: json!({"model": "sim-resp", "input": "hi", "stream": streamed}),
            op: "chat",
            provider: "openai",
            model: "sim-resp",
            streamed,
            id: "/id",
            usage: ("/usage/input_tokens", "/usage/output_tokens"),
        });
        out.push(Case {
            path: "/anthropic/v1/messages".into(),
            body: json!({"model": "sim-claude", "max_tokens": 64, "messages": msgs, "stream": streamed}),
            op: "chat", provider: "anthropic", model: "sim-claude", streamed,
            id: "/id", usage: ("/usage/input_tokens", "/usage/output_tokens"),
        });
        out.push(Case {
            path: if streamed {
                "/gemini/v1beta/models/sim-gemini:streamGenerateContent?alt=sse".into()
            } else {
                "/gemini/v1beta/models/sim-gemini:generateContent".into()
            },
            body: json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
            op: "generate_content",
            provider: "gcp.gemini",
            model: "sim-gemini",
            streamed,
            id: "/responseId",
            usage: (
                "/usageMetadata/promptTokenCount",
                "/usageMetadata/candidatesTokenCount",
            ),
        });
        out.push(Case {
            path: "/ollama/api/chat".into(),
            body: json!({"model": "sim-llama", "messages": msgs, "stream": streamed}),
            op: "chat",
            provider: "ollama",
            model: "sim-llama",
            streamed,
            id: "",
            usage: ("/prompt_eval_count", "/eval_count"),
        });
    }
    out
}

const SIM_ROUTES: &str = r#"
[[routes]]
name = "openai"
prefix = "/openai"
upstream = "builtin:simulator"
api = "openai"
[[routes]]
name = "anthropic"
prefix = "/anthropic"
upstream = "builtin:simulator"
api = "anthropic"
[[routes]]
name = "gemini"
prefix = "/gemini"
upstream = "builtin:simulator"
api = "gemini"
[[routes]]
name = "ollama"
prefix = "/ollama"
upstream = "builtin:simulator"
api = "ollama"
"#;

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test]
async fn every_api_streamed_and_not_gets_a_genai_span() {
    let Some(rx) = Receiver::start("otel_traces").await else {
        return;
    };
    let aloud = Aloud::start(&(telemetry_toml(&rx.endpoint(), "") + SIM_ROUTES)).await;
    let mut sent = Vec::new();
    for (i, case) in cases().into_iter().enumerate() {
        let (tp, trace, parent) = traceparent(i as u64 + 1);
        let mut headers = FAST.to_vec();
        headers.push(("traceparent", &tp));
        headers.push(("content-type", "application/json"));
        let r = post(&aloud.url(&case.path), &headers, case.body.to_string()).await;
        assert_eq!(r.status(), 200, "{}", case.path);
        let id = r.headers()["aloud-request-id"].to_str().unwrap().to_owned();
        let body = body_bytes(r).await;
        sent.push((case, trace, parent, id, body));
    }
    for (case, trace, parent, id, body) in sent {
        let what = format!("{} streamed={}", case.path, case.streamed);
        let s = rx.span_of(&trace).await;
        let a = &s["attributes"];
        assert_eq!(s["name"], format!("{} {}", case.op, case.model), "{what}");
        assert_eq!(s["kind"], 3, "SPAN_KIND_CLIENT: {what}");
        assert_eq!(s["parent_span_id"], parent, "{what}");
        assert_eq!(s["status_code"], 0, "{what}");
        assert_eq!(s["path"], "/v1/traces");
        assert_eq!(s["content_type"], "application/x-protobuf");
        assert_eq!(s["resource"]["service.name"], "aloud-test");
        assert!(num(&s["end"]) > num(&s["start"]), "{what}");
        assert_eq!(a["gen_ai.operation.name"], case.op, "{what}");
        assert_eq!(a["gen_ai.provider.name"], case.provider, "{what}");
        assert_eq!(a["gen_ai.request.model"], case.model, "{what}");
        assert_eq!(a["gen_ai.response.model"], case.model, "{what}");
        let reasons = a["gen_ai.response.finish_reasons"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: {a}"));
        assert!(
            !reasons.is_empty()
                && reasons
                    .iter()
                    .all(|r| r.as_str().is_some_and(|r| !r.is_empty())),
            "{what}"
        );
        let input = num(&a["gen_ai.usage.input_tokens"]);
        let output = num(&a["gen_ai.usage.output_tokens"]);
        assert!(input > 0.0 && output > 0.0, "{what}: {a}");
        let text = String::from_utf8_lossy(&body).into_owned();
        if case.id.is_empty() {
            assert!(a.get("gen_ai.response.id").is_none(), "{what}");
        } else {
            let rid = a["gen_ai.response.id"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: {a}"));
            assert!(text.contains(rid), "{what}: {rid} not in the answer");
        }
        if !case.streamed {
            let v: Value = serde_json::from_slice(&body).unwrap();
            if !case.id.is_empty() {
                assert_eq!(
                    a["gen_ai.response.id"],
                    v.pointer(case.id).unwrap().clone(),
                    "{what}"
                );
            }
            assert_eq!(input, num(v.pointer(case.usage.0).unwrap()), "{what}");
            assert_eq!(output, num(v.pointer(case.usage.1).unwrap()), "{what}");
        }
        assert_eq!(a["server.address"], "127.0.0.1", "{what}");
        assert!(num(&a["server.port"]) > 0.0, "{what}");
        assert!(a.get("error.type").is_none(), "{what}");
        assert_eq!(a["aloud.request_id"], id, "{what}");
        assert_eq!(a["aloud.tier"], "comments", "{what}");
        assert_eq!(a["aloud.outcome"], "ok", "{what}");
        for k in [
            "aloud.first_feedback_ms",
            "aloud.first_token_ms",
            "aloud.longest_silence_ms",
            "aloud.overhead_ms",
        ] {
            assert!(num(&a[k]) >= 0.0, "{what}: {k}");
        }
        let events: Vec<&str> = s["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert!(
            events.contains(&"aloud.phase.waiting") && events.last() == Some(&"aloud.phase.done"),
            "{what}: {events:?}"
        );
        if case.streamed {
            assert!(
                events.contains(&"aloud.phase.generating"),
                "{what}: {events:?}"
            );
        }
        for e in s["events"].as_array().unwrap() {
            assert!(
                num(&e["time"]) >= num(&s["start"]) && num(&e["time"]) <= num(&s["end"]),
                "{what}"
            );
        }
    }
    aloud.stop().await;
}

/// A mock upstream that keeps each request's trace headers, and fails paths with "fail".
async fn recording_upstream() -> (
    Upstream,
    Arc<Mutex<HashMap<String, (Option<String>, Option<String>)>>>,
) {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let keep = Arc::clone(&seen);
    let up = Upstream::start(move |req| {
        let keep = Arc::clone(&keep);
        async move {
            let h = |n: &str| req.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
            let key = h("x-case").unwrap_or_default();
            keep.lock().unwrap().insert(key, (h("traceparent"), h("tracestate")));
            if req.uri().path().contains("fail") {
                return response(500, &[("content-type", "application/json")],
                    full(r#"{"error":{"message":"boom","type":"server_error"}}"#));
            }
            let body = r#"{"id":"chatcmpl-9","object":"chat.completion","model":"gpt-test-2025","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":2}}"#;
            response(200, &[("content-type", "application/json")], full(body))
        }
    })
    .await;
    (up, seen)
}

fn up_route(addr: std::net::SocketAddr) -> String {
    format!(
        "[[routes]]\nname = \"up\"\nprefix = \"/up\"\nupstream = \"http://{addr}\"\napi = \"openai\"\n"
    )
}

const CHAT: &str = r#"{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn trace_context_goes_upstream_and_a_failure_is_an_error_span() {
    let Some(rx) = Receiver::start("otel_traces").await else {
        return;
    };
    let (up, seen) = recording_upstream().await;
    let aloud = Aloud::start(&(telemetry_toml(&rx.endpoint(), "") + &up_route(up.addr))).await;
    let url = aloud.url("/up/v1/chat/completions");
    // No traceparent: a new trace, and the upstream's parent is aloud's span.
    let r = post(&url, &[("x-case", "new")], CHAT).await;
    assert_eq!(r.status(), 200);
    body_bytes(r).await;
    let (tp, _) = seen.lock().unwrap()["new"].clone();
    let tp = tp.expect("the upstream got a traceparent");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!((parts[0], parts[3]), ("00", "01"), "{tp}");
    let s = rx.span_of(parts[1]).await;
    assert_eq!(s["span_id"], parts[2]);
    assert_eq!(s["parent_span_id"], "");
    assert_eq!(s["name"], "chat gpt-test");
    assert_eq!(s["attributes"]["gen_ai.response.model"], "gpt-test-2025");
    assert_eq!(s["attributes"]["gen_ai.response.id"], "chatcmpl-9");
    assert_eq!(
        s["attributes"]["gen_ai.response.finish_reasons"],
        json!(["stop"])
    );
    assert_eq!(s["attributes"]["server.port"], up.addr.port());
    // A client's trace is continued; its tracestate passes unchanged.
    let (client_tp, trace, client_span) = traceparent(77);
    let r = post(
        &url,
        &[
            ("x-case", "continued"),
            ("traceparent", &client_tp),
            ("tracestate", "vendor=1"),
        ],
        CHAT,
    )
    .await;
    body_bytes(r).await;
    let (tp, ts) = seen.lock().unwrap()["continued"].clone();
    let tp = tp.unwrap();
    assert_eq!(ts.as_deref(), Some("vendor=1"));
    let s = rx.span_of(&trace).await;
    assert_eq!(
        tp,
        format!("00-{trace}-{}-01", s["span_id"].as_str().unwrap())
    );
    assert_ne!(s["span_id"], client_span);
    assert_eq!(s["parent_span_id"], client_span);
    assert_eq!(s["trace_state"], "vendor=1");
    // A client that did not sample its trace: no span, and its traceparent goes on as it was.
    let unsampled = client_tp
        .replace("-01", "-00")
        .replace(&trace[..8], "11111111");
    let r = post(
        &url,
        &[("x-case", "unsampled"), ("traceparent", &unsampled)],
        CHAT,
    )
    .await;
    body_bytes(r).await;
    assert_eq!(
        seen.lock().unwrap()["unsampled"].0.as_deref(),
        Some(unsampled.as_str())
    );
    // An upstream 500: an error span.
    let (fail_tp, fail_trace, _) = traceparent(78);
    let r = post(
        &aloud.url("/up/v1/fail/chat/completions"),
        &[("x-case", "fail"), ("traceparent", &fail_tp)],
        CHAT,
    )
    .await;
    assert_eq!(r.status(), 500);
    body_bytes(r).await;
    let s = rx.span_of(&fail_trace).await;
    assert_eq!(s["status_code"], 2, "STATUS_CODE_ERROR: {s}");
    assert_eq!(s["attributes"]["error.type"], "500");
    assert_eq!(s["attributes"]["aloud.outcome"], "upstream_error");
    assert_eq!(s["kind"], 3);
    aloud.stop().await;
    let unsampled_trace = &unsampled[3..35];
    assert!(rx.spans().iter().all(|s| s["trace_id"] != unsampled_trace));
}

#[tokio::test]
async fn sample_zero_traces_only_what_clients_sampled_and_off_changes_nothing() {
    let Some(rx) = Receiver::start("otel_traces").await else {
        return;
    };
    let (up, seen) = recording_upstream().await;
    let toml = telemetry_toml(&rx.endpoint(), "sample = 0.0") + &up_route(up.addr);
    let aloud = Aloud::start(&toml).await;
    let url = aloud.url("/up/v1/chat/completions");
    for i in 0..5 {
        body_bytes(post(&url, &[("x-case", &format!("z{i}"))], CHAT).await).await;
        assert_eq!(seen.lock().unwrap()[&format!("z{i}")].0, None);
    }
    // The client's sampled flag decides for its own trace, whatever the ratio.
    let (tp, trace, _) = traceparent(5);
    body_bytes(post(&url, &[("x-case", "sampled"), ("traceparent", &tp)], CHAT).await).await;
    rx.span_of(&trace).await;
    aloud.stop().await;
    assert_eq!(
        rx.spans().len(),
        1,
        "only the client-sampled exchange: {:?}",
        rx.spans()
    );

    // Telemetry off: an incoming traceparent reaches the upstream unchanged.
    let off = Aloud::start(&up_route(up.addr)).await;
    body_bytes(
        post(
            &off.url("/up/v1/chat/completions"),
            &[("x-case", "off"), ("traceparent", &tp)],
            CHAT,
        )
        .await,
    )
    .await;
    assert_eq!(seen.lock().unwrap()["off"].0.as_deref(), Some(tp.as_str()));
    off.stop().await;
}

#[tokio::test]
async fn a_collector_that_is_down_costs_counted_drops_not_latency() {
    let (up, _) = recording_upstream().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/v1/traces", closed.local_addr().unwrap());
    drop(closed);
    let admin = "[admin]\nlisten = \"127.0.0.1:0\"\n";
    let aloud = Aloud::start(&(telemetry_toml(&endpoint, "") + admin + &up_route(up.addr))).await;
    let before = aloud::telemetry::stats();
    let url = aloud.url("/up/v1/chat/completions");
    let started = Instant::now();
    for _ in 0..20 {
        let r = post(&url, &[], CHAT).await;
        assert_eq!(r.status(), 200);
        body_bytes(r).await;
    }
    // Twenty local exchanges take milliseconds; a request that waited on the collector would
    // not (its connect is refused, and the exporter's post timeout is 10 s).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let until = Instant::now() + DEADLINE;
    while aloud::telemetry::stats().dropped < before.dropped + 20 {
        assert!(
            Instant::now() < until,
            "drops not counted: {:?}",
            aloud::telemetry::stats()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Operators see the drops in Prometheus, not only in a log line.
    let r = support::get(&aloud.admin_url("/metrics")).await;
    let text = String::from_utf8(body_bytes(r).await.to_vec()).unwrap();
    let dropped: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("aloud_trace_spans_dropped_total "))
        .unwrap_or_else(|| panic!("no dropped-spans counter in:\n{text}"))
        .trim()
        .parse()
        .unwrap();
    assert!(dropped >= before.dropped + 20, "{dropped}");
    assert!(text.contains("aloud_trace_spans_exported_total "), "{text}");
    aloud.stop().await;
}

/// With `capture_content` on and capture off, the prompt and answer in the span's content event
/// are redacted like captures are: a configured key and an e-mail never reach the collector.
#[tokio::test]
async fn span_content_is_redacted_without_capture() {
    let Some(rx) = Receiver::start("otel_traces").await else {
        return;
    };
    let (up, _) = recording_upstream().await;
    let secret = "sk-live-0123456789abcdefSECRET";
    let config = telemetry_toml(&rx.endpoint(), "capture_content = true")
        + &up_route(up.addr)
        + "api_key_env = \"UP_KEY\"\n";
    let env = aloud::config::MapEnv::default().with("UP_KEY", secret);
    let aloud = Aloud::start_with_env(&config, env).await;
    let (tp, trace, _) = traceparent(91);
    let prompt = format!(
        r#"{{"model":"gpt-test","messages":[{{"role":"user","content":"mail jane.doe@example.com the key {secret}"}}]}}"#
    );
    let r = post(
        &aloud.url("/up/v1/chat/completions"),
        &[("traceparent", &tp)],
        prompt,
    )
    .await;
    assert_eq!(r.status(), 200);
    body_bytes(r).await;
    let s = rx.span_of(&trace).await;
    let text = s.to_string();
    assert!(
        text.contains("gen_ai.input.messages"),
        "no content event: {text}"
    );
    assert!(
        !text.contains(secret),
        "the key reached the collector: {text}"
    );
    assert!(
        !text.contains("jane.doe@example.com"),
        "the e-mail reached the collector: {text}"
    );
    aloud.stop().await;
}
