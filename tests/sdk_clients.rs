//! Real SDK clients (tests/clients/) against the simulator, directly and through aloud: each
//! script prints what its SDK parsed as one JSON document, and the two documents must be equal.
//!
//! Needs `ALOUD_TEST_PYTHON` (a python with tests/clients/requirements.txt) and
//! `ALOUD_TEST_CLIENTS` (tests/clients with its node_modules), as `scripts/test.sh` sets after
//! `scripts/install-test-deps.sh`. Without them these tests skip, unless
//! `ALOUD_REQUIRE_CLIENTS=1`, when they fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use support::clients::{Clients, RUN_TIMEOUT, clients};

use serde_json::Value;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Instant;
use support::Aloud;
use tokio::net::TcpListener;

/// The client scripts, each with the api it speaks and the path its SDK wants in a base URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    OpenAiPy,
    AnthropicPy,
    OpenAiNode,
    VercelAi,
}

impl Script {
    fn file(self) -> &'static str {
        match self {
            Script::OpenAiPy => "openai_py.py",
            Script::AnthropicPy => "anthropic_py.py",
            Script::OpenAiNode => "openai_node.mjs",
            Script::VercelAi => "vercel_ai.mjs",
        }
    }

    /// The aloud route (`openai` or `anthropic`) that `scenario` goes through.
    fn api(self, scenario: &str) -> &'static str {
        match self {
            Script::AnthropicPy => "anthropic",
            Script::VercelAi if scenario.starts_with("anthropic") => "anthropic",
            _ => "openai",
        }
    }

    /// What follows the host (and aloud's route prefix) in the SDK's base URL.
    fn base_path(self) -> &'static str {
        match self {
            // anthropic-python adds /v1/messages itself.
            Script::AnthropicPy => "",
            _ => "/v1",
        }
    }
}

/// A simulator on port 0, and aloud on port 0 with one route per api in front of it.
#[derive(Debug, Clone, Copy)]
struct Stack {
    sim: SocketAddr,
    aloud: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Direct,
    Aloud,
}

impl Stack {
    fn base_url(self, script: Script, scenario: &str, target: Target) -> String {
        match target {
            Target::Direct => format!("http://{}{}", self.sim, script.base_path()),
            Target::Aloud => format!(
                "http://{}/{}{}",
                self.aloud,
                script.api(scenario),
                script.base_path()
            ),
        }
    }
}

fn aloud_config(sim: SocketAddr) -> String {
    format!(
        "[server]\nshutdown_grace = \"1s\"\n[progress]\nheartbeat = \"100ms\"\n\
         [[routes]]\nname = \"openai\"\nprefix = \"/openai\"\nupstream = \"http://{sim}\"\napi = \"openai\"\n\
         [[routes]]\nname = \"anthropic\"\nprefix = \"/anthropic\"\nupstream = \"http://{sim}\"\napi = \"anthropic\"\n"
    )
}

/// Runs `body` with a fresh simulator and aloud; both stop when it returns.
async fn with_stack<F, Fut, T>(body: F) -> T
where
    F: FnOnce(Stack) -> Fut,
    Fut: Future<Output = T>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = listener.local_addr().unwrap();
    let aloud = Aloud::start(&aloud_config(sim)).await;
    let stack = Stack {
        sim,
        aloud: aloud.addr,
    };
    let out = tokio::select! {
        result = aloud::simulator::serve(listener, std::future::pending()) => {
            panic!("simulator ended early: {result:?}")
        }
        out = body(stack) => out,
    };
    aloud.stop().await;
    out
}

/// Runs one script and scenario against `base_url`; returns its JSON document.
async fn run(
    clients: &Clients,
    script: Script,
    scenario: &str,
    base_url: &str,
    headers: &[&str],
) -> Value {
    let path = clients.dir.join(script.file());
    let mut cmd = match script {
        Script::OpenAiPy | Script::AnthropicPy => tokio::process::Command::new(&clients.python),
        Script::OpenAiNode | Script::VercelAi => tokio::process::Command::new("node"),
    };
    cmd.arg(&path)
        .arg("--base-url")
        .arg(base_url)
        .arg(scenario)
        .current_dir(&clients.dir)
        // Nothing from the caller's environment (proxies, API keys, base URLs) reaches the SDKs.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for h in headers {
        cmd.arg("--header").arg(h);
    }
    let what = format!(
        "{} {scenario} --base-url {base_url} {headers:?}",
        script.file()
    );
    let started = Instant::now();
    let output = match tokio::time::timeout(RUN_TIMEOUT, cmd.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!(
            "{what}: could not start {:?}: {e}",
            cmd.as_std().get_program()
        ),
        Err(_) => panic!("{what}: no answer within {RUN_TIMEOUT:?}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        panic!(
            "{what}: {}\n--- stderr\n{stderr}\n--- stdout\n{}",
            output.status,
            head(&stdout)
        );
    }
    let doc: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: stdout is not one JSON document: {e}\n--- stderr\n{stderr}\n--- stdout\n{}",
            head(&stdout)
        )
    });
    eprintln!("{what}: ok in {:.2?}", started.elapsed());
    doc
}

fn head(text: &str) -> &str {
    let end = text.char_indices().nth(4000).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

/// The first place where `a` and `b` differ, as a JSON path with both values.
fn first_difference(a: &Value, b: &Value, path: &mut String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let len = path.len();
                write!(path, ".{key}").unwrap();
                let found = match (x.get(key), y.get(key)) {
                    (Some(u), Some(v)) => first_difference(u, v, path),
                    (u, v) => Some(format!("{path}: {u:?} vs {v:?}")),
                };
                if found.is_some() {
                    return found;
                }
                path.truncate(len);
            }
            None
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                let len = path.len();
                write!(path, "[{i}]").unwrap();
                if let Some(found) = first_difference(u, v, path) {
                    return Some(found);
                }
                path.truncate(len);
            }
            (x.len() != y.len()).then(|| format!("{path}: {} vs {} items", x.len(), y.len()))
        }
        _ => (a != b).then(|| format!("{path}: {a} vs {b}")),
    }
}

fn assert_same(what: &str, left: (&str, &Value), right: (&str, &Value)) {
    if let Some(diff) = first_difference(left.1, right.1, &mut String::new()) {
        panic!(
            "{what}: {} and {} differ at {diff}\n--- {}\n{}\n--- {}\n{}",
            left.0,
            right.0,
            left.0,
            head(&serde_json::to_string_pretty(left.1).unwrap()),
            right.0,
            head(&serde_json::to_string_pretty(right.1).unwrap()),
        );
    }
}

/// Sanity on one document, so two equal but empty or failed documents do not pass.
fn check_document(script: Script, scenario: &str, doc: &Value) {
    let what = format!("{} {scenario}", script.file());
    let object = doc
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object"));
    assert!(object.contains_key("sdk"), "{what}: no sdk name");
    match scenario.rsplit_once("error_") {
        Some((_, status)) => {
            let error = &doc["error"];
            let code = error
                .get("status_code")
                .or_else(|| error.get("status"))
                .or_else(|| error.get("statusCode"));
            assert_eq!(
                code.and_then(Value::as_u64)
                    .map(|c| c.to_string())
                    .as_deref(),
                Some(status),
                "{what}: {error}"
            );
        }
        None => {
            assert!(doc.get("error").is_none(), "{what}: {doc}");
            assert!(object.len() >= 2, "{what}: nothing parsed: {doc}");
            // Streams list what the SDK yielded (chunks, events, parts): never nothing.
            for (key, value) in object {
                if let Value::Array(items) = value {
                    assert!(items.len() > 3, "{what}: {key} has {} items", items.len());
                }
            }
        }
    }
}

/// Runs each scenario directly and through aloud and compares the two documents.
async fn direct_and_through_aloud(script: Script, scenarios: &[&str]) {
    let Some(clients) = clients("SDK client tests") else {
        return;
    };
    with_stack(|stack| async move {
        for scenario in scenarios {
            let direct_url = stack.base_url(script, scenario, Target::Direct);
            let aloud_url = stack.base_url(script, scenario, Target::Aloud);
            let direct = run(&clients, script, scenario, &direct_url, &[]).await;
            check_document(script, scenario, &direct);
            let through = run(&clients, script, scenario, &aloud_url, &[]).await;
            assert_same(
                &format!("{} {scenario}", script.file()),
                ("direct", &direct),
                ("through aloud", &through),
            );
        }
    })
    .await;
}

#[tokio::test]
async fn openai_python() {
    direct_and_through_aloud(
        Script::OpenAiPy,
        &[
            "chat",
            "chat_stream",
            "chat_stream_usage",
            "chat_stream_helper",
            "responses",
            "responses_stream",
            "responses_stream_helper",
            "error_429",
            "error_401",
        ],
    )
    .await;
}

#[tokio::test]
async fn anthropic_python() {
    direct_and_through_aloud(
        Script::AnthropicPy,
        &[
            "messages",
            "messages_thinking",
            "messages_stream",
            "messages_stream_helper",
            "error_529",
            "error_429",
            "error_401",
        ],
    )
    .await;
}

#[tokio::test]
async fn openai_node() {
    direct_and_through_aloud(
        Script::OpenAiNode,
        &[
            "chat",
            "chat_stream",
            "chat_stream_usage",
            "chat_stream_helper",
            "responses",
            "responses_stream",
            "responses_stream_helper",
            "error_429",
            "error_401",
        ],
    )
    .await;
}

#[tokio::test]
async fn vercel_ai_sdk() {
    direct_and_through_aloud(
        Script::VercelAi,
        &[
            "openai_chat_generate",
            "openai_chat_stream",
            "openai_responses_generate",
            "openai_responses_stream",
            "openai_error_429",
            "anthropic_generate",
            "anthropic_stream",
            "anthropic_error_529",
        ],
    )
    .await;
}

/// `id:` lines on every SSE event (as some OpenAI-compatible servers send) change nothing the
/// SDKs parse: with ids, directly and through aloud, equals without ids.
#[tokio::test]
async fn sse_ids_change_nothing_parsed() {
    let Some(clients) = clients("SDK client tests") else {
        return;
    };
    with_stack(|stack| async move {
        for (script, scenario) in [
            (Script::OpenAiPy, "responses_stream_helper"),
            (Script::AnthropicPy, "messages_stream_helper"),
        ] {
            let what = format!("{} {scenario} with x-sim-sse-ids=1", script.file());
            let ids = ["x-sim-sse-ids=1"];
            let direct_url = stack.base_url(script, scenario, Target::Direct);
            let aloud_url = stack.base_url(script, scenario, Target::Aloud);
            let plain = run(&clients, script, scenario, &direct_url, &[]).await;
            check_document(script, scenario, &plain);
            let direct = run(&clients, script, scenario, &direct_url, &ids).await;
            let through = run(&clients, script, scenario, &aloud_url, &ids).await;
            assert_same(&what, ("direct", &direct), ("through aloud", &through));
            assert_same(&what, ("without ids", &plain), ("with ids", &direct));
        }
    })
    .await;
}

/// Comments injected while the model is silent change nothing the SDKs parse: on long waits
/// (many heartbeats), with and without `id:` lines, for every client. The same calls with
/// `Aloud-Progress: off` through aloud, and directly, give the same documents.
#[tokio::test]
async fn comments_change_nothing_parsed() {
    let Some(clients) = clients("SDK client tests") else {
        return;
    };
    with_stack(|stack| async move {
        let long = ["x-sim-think-ms=700"];
        // First prove that comments really are injected with these settings.
        let probe = format!("http://{}/openai/v1/chat/completions", stack.aloud);
        let r = support::post(
            &probe,
            &[
                ("content-type", "application/json"),
                ("x-sim-seed", "42"),
                ("x-sim-think-ms", "700"),
                ("x-sim-tokens", "3"),
                ("x-sim-sse-ids", "1"),
            ],
            r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
        let text = String::from_utf8(support::body_bytes(r).await.to_vec()).unwrap();
        assert!(
            text.matches(": aloud ").count() >= 3,
            "no comments were injected:\n{text}"
        );
        for (script, scenario) in [
            (Script::OpenAiPy, "chat_stream"),
            (Script::OpenAiPy, "chat_stream_helper"),
            (Script::OpenAiPy, "responses_stream_helper"),
            (Script::AnthropicPy, "messages_stream"),
            (Script::AnthropicPy, "messages_stream_helper"),
            (Script::OpenAiNode, "chat_stream_helper"),
            (Script::OpenAiNode, "responses_stream_helper"),
            (Script::VercelAi, "openai_chat_stream"),
            (Script::VercelAi, "openai_responses_stream"),
            (Script::VercelAi, "anthropic_stream"),
        ] {
            for ids in [false, true] {
                let mut headers: Vec<&str> = long.to_vec();
                if ids {
                    headers.push("x-sim-sse-ids=1");
                }
                let what = format!("{} {scenario} (long wait, ids: {ids})", script.file());
                let direct_url = stack.base_url(script, scenario, Target::Direct);
                let aloud_url = stack.base_url(script, scenario, Target::Aloud);
                let direct = run(&clients, script, scenario, &direct_url, &headers).await;
                check_document(script, scenario, &direct);
                let mut with_comments = headers.clone();
                with_comments.push("aloud-progress=comments");
                let commented = run(&clients, script, scenario, &aloud_url, &with_comments).await;
                assert_same(&what, ("direct", &direct), ("with comments", &commented));
                let mut off = headers.clone();
                off.push("aloud-progress=off");
                let plain = run(&clients, script, scenario, &aloud_url, &off).await;
                assert_same(&what, ("off", &plain), ("with comments", &commented));
            }
        }
    })
    .await;
}
