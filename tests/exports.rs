//! `aloud export` keeps what evals need, end to end: real exchanges of all five apis (tool
//! round trips, images, an Anthropic prefill, reasoning) go through the real binary to the
//! simulator, the real writer stores them, and the real `aloud export` binary writes every
//! format, which its real consumers then load: OpenAI's chat fine-tuning rules, the `datasets`
//! JSON loader, Inspect AI's `json_dataset` and pandas (tests/clients/validate_exports.py).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::binary::{Binary, DEADLINE};
use support::*;

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==";

fn config(dir: &Path) -> PathBuf {
    let mut toml = format!(
        "[capture]\ndatabase = \"{}\"\nspill_dir = \"{}\"\nflush_interval = \"50ms\"\n",
        dir.join("aloud.db").display(),
        dir.join("spill").display(),
    );
    for (name, api) in [
        ("oa", "openai"),
        ("ant", "anthropic"),
        ("gem", "gemini"),
        ("oll", "ollama"),
    ] {
        toml.push_str(&format!(
            "[[routes]]\nname = \"{name}\"\nprefix = \"/{name}\"\nupstream = \"builtin:simulator\"\napi = \"{api}\"\n"
        ));
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// One exchange through aloud; the simulator answers quickly and the same way every time.
async fn exchange(b: &Binary, path: &str, id: &str, body: Value, extra: &[(&str, &str)]) -> u16 {
    let mut h = vec![
        ("content-type", "application/json"),
        ("aloud-request-id", id),
        ("x-api-key", "sk-placeholder"),
        ("x-sim-seed", "3"),
        ("x-sim-think-ms", "60"),
        ("x-sim-tokens", "4"),
        ("x-sim-token-ms", "2"),
    ];
    h.extend_from_slice(extra);
    let r = post(&format!("http://{}{path}", b.addr), &h, body.to_string()).await;
    let status = r.status().as_u16();
    body_bytes(r).await;
    status
}

fn weather_call(city: &str) -> Value {
    json!({"city": city})
}

/// Every api's exchange with what an eval needs; returns the ids that should export.
async fn exchanges(b: &Binary) {
    let data_url = format!("data:image/png;base64,{PNG}");
    let oa_tools = json!([{"type": "function", "function": {"name": "weather",
        "description": "The weather now", "parameters": {"type": "object",
        "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    // OpenAI chat: tools, a tool round trip, an image, reasoning_content.
    let chat = json!({"model": "gpt-sim", "stream": true, "tools": oa_tools, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is in this picture, and the weather in Oslo?"},
                                     {"type": "image_url", "image_url": {"url": data_url}}]},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_oslo", "type": "function",
            "function": {"name": "weather", "arguments": weather_call("Oslo").to_string()}}]},
        {"role": "tool", "tool_call_id": "call_oslo", "content": "3C, snow"}]});
    let reasoning = [("x-sim-reasoning-content", "1")];
    assert_eq!(
        exchange(
            b,
            "/oa/v1/chat/completions",
            "export-test-id-chat",
            chat.clone(),
            &reasoning
        )
        .await,
        200
    );
    // The same conversation again (for --dedupe), and one the server fails.
    assert_eq!(
        exchange(
            b,
            "/oa/v1/chat/completions",
            "export-test-id-chat-again",
            chat.clone(),
            &reasoning
        )
        .await,
        200
    );
    assert_eq!(
        exchange(
            b,
            "/oa/v1/chat/completions",
            "export-test-id-failed",
            chat,
            &[("x-sim-status", "500")]
        )
        .await,
        500
    );
    // A GIF, which OpenAI's fine-tuning does not take.
    let gif = json!({"model": "gpt-sim", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "And this one?"},
        {"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lGODlhAQABAAAAACw="}}]}]});
    assert_eq!(
        exchange(b, "/oa/v1/chat/completions", "export-test-id-gif", gif, &[]).await,
        200
    );
    // OpenAI Responses: function call items, tools, a reasoning summary.
    let responses = json!({"model": "gpt-sim", "stream": true, "reasoning": {"summary": "auto"},
        "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
        "input": [{"role": "user", "content": "Weather in Rome?"},
                  {"type": "function_call", "call_id": "fc_1", "name": "weather", "arguments": "{\"city\":\"Rome\"}"},
                  {"type": "function_call_output", "call_id": "fc_1", "output": "21C"}]});
    assert_eq!(
        exchange(
            b,
            "/oa/v1/responses",
            "export-test-id-responses",
            responses,
            &[]
        )
        .await,
        200
    );
    // Anthropic: thinking, tools, a tool round trip, an image.
    let anthropic = json!({"model": "claude-sim", "max_tokens": 200, "stream": true,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [{"name": "weather", "description": "The weather now", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather where this was taken?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Bergen"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "rain"}]}]});
    assert_eq!(
        exchange(
            b,
            "/ant/v1/messages",
            "export-test-id-anthropic",
            anthropic,
            &[]
        )
        .await,
        200
    );
    // Anthropic: two user turns in a row and a prefill.
    let prefill = json!({"model": "claude-sim", "max_tokens": 100, "messages": [
        {"role": "user", "content": "Name a colour."},
        {"role": "user", "content": "One word, please."},
        {"role": "assistant", "content": "The colour is"}]});
    assert_eq!(
        exchange(
            b,
            "/ant/v1/messages",
            "export-test-id-prefill",
            prefill,
            &[]
        )
        .await,
        200
    );
    // Gemini: function calls and responses without ids, declarations, thoughts, an image.
    let gemini = json!({
        "tools": [{"functionDeclarations": [{"name": "weather", "parameters": {"type": "object"}}]}],
        "generationConfig": {"thinkingConfig": {"includeThoughts": true}},
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Oslo and Rome, and what is this?"},
                                       {"inlineData": {"mimeType": "image/png", "data": PNG}}]},
            {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Oslo"}}},
                                        {"functionCall": {"name": "weather", "args": {"city": "Rome"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "weather", "response": {"t": 3}}},
                                       {"functionResponse": {"name": "weather", "response": {"t": 21}}}]}]});
    let path = "/gem/v1beta/models/gemini-sim:generateContent";
    assert_eq!(
        exchange(b, path, "export-test-id-gemini", gemini, &[]).await,
        200
    );
    // Ollama: tool calls and tool messages without ids, images, thinking.
    let ollama = json!({"model": "llama-sim", "think": true,
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}},
                  {"type": "function", "function": {"name": "time", "parameters": {"type": "object"}}}],
        "messages": [
            {"role": "user", "content": "Weather and time in Oslo? And this picture?", "images": [PNG]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "weather", "arguments": {"city": "Oslo"}}},
                {"function": {"name": "time", "arguments": {"city": "Oslo"}}}]},
            {"role": "tool", "tool_name": "time", "content": "12:00"},
            {"role": "tool", "content": "3C"}]});
    assert_eq!(
        exchange(b, "/oll/api/chat", "export-test-id-ollama", ollama, &[]).await,
        200
    );
    // Feedback for one of them.
    let fb = post(
        &format!(
            "http://{}/aloud/v1/requests/export-test-id-anthropic/feedback",
            b.addr
        ),
        &[("content-type", "application/json")],
        r#"{"score": 1, "label": "good"}"#,
    )
    .await;
    assert_eq!(fb.status(), 204);
}

struct Export {
    stderr: String,
}

fn export(db: &Path, args: &[&str]) -> Export {
    let o = Command::new(env!("CARGO_BIN_EXE_aloud"))
        .arg("export")
        .args(args)
        .arg("--database")
        .arg(db)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{args:?}: {stderr}");
    Export { stderr }
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The conversation of the line whose id is `id`.
fn line<'a>(lines: &'a [Value], ids: &[String], id: &str) -> &'a Value {
    let at = ids
        .iter()
        .position(|i| i == id)
        .unwrap_or_else(|| panic!("{id} not in {ids:?}"));
    &lines[at]
}

#[tokio::test]
async fn exports_keep_tools_links_images_turns_reasoning_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Binary::start(&config(dir.path()), &[]).await;
    exchanges(&b).await;
    b.signal("TERM");
    assert!(b.wait_exit(DEADLINE).await.success());
    let db = dir.path().join("aloud.db");
    let out = |name: &str| dir.path().join(name);

    // chat-jsonl, with ids in a sidecar.
    let e = export(
        &db,
        &[
            "--format",
            "chat-jsonl",
            "--out",
            out("chat.jsonl").to_str().unwrap(),
            "--ids",
            out("chat.ids").to_str().unwrap(),
        ],
    );
    let (chat, chat_ids) = (jsonl(&out("chat.jsonl")), ids(&out("chat.ids")));
    assert_eq!(chat.len(), chat_ids.len());
    assert_eq!(
        e.stderr.trim(),
        "wrote 7 records as chat-jsonl; skipped 2: 1 error, 1 with images the format cannot carry"
    );
    for l in &chat {
        let uses_tools = l["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m.get("tool_calls").is_some());
        assert_eq!(uses_tools, l.get("tools").is_some(), "tools kept: {l}");
    }
    // Images as image_url parts, for every api that sent one.
    for id in [
        "export-test-id-chat",
        "export-test-id-anthropic",
        "export-test-id-gemini",
        "export-test-id-ollama",
    ] {
        let user = &line(&chat, &chat_ids, id)["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["role"] == "user")
            .unwrap()["content"];
        assert_eq!(
            user[1],
            json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}),
            "{id}"
        );
    }
    // Gemini and Ollama results linked to their calls by synthesised ids.
    let gem = &line(&chat, &chat_ids, "export-test-id-gemini")["messages"];
    assert_eq!(
        (
            gem[1]["tool_calls"][0]["id"].as_str(),
            gem[2]["tool_call_id"].as_str()
        ),
        (Some("call_0"), Some("call_0"))
    );
    assert_eq!(gem[3]["tool_call_id"], "call_1");
    let oll = &line(&chat, &chat_ids, "export-test-id-ollama")["messages"];
    assert_eq!(
        (oll[2]["content"].as_str(), oll[2]["tool_call_id"].as_str()),
        (Some("12:00"), Some("call_1"))
    );
    assert_eq!(
        (oll[3]["content"].as_str(), oll[3]["tool_call_id"].as_str()),
        (Some("3C"), Some("call_0"))
    );
    // The prefill and the answer are one assistant message; two user turns are one.
    let pre = line(&chat, &chat_ids, "export-test-id-prefill")["messages"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(pre.len(), 2, "{pre:?}");
    assert_eq!(pre[0]["content"], "Name a colour.\nOne word, please.");
    assert!(
        pre[1]["content"]
            .as_str()
            .unwrap()
            .starts_with("The colour is"),
        "{pre:?}"
    );
    assert!(pre[1]["content"].as_str().unwrap().len() > "The colour is".len());

    // --reasoning: the answer's reasoning as reasoning_content.
    export(
        &db,
        &[
            "--format",
            "chat-jsonl",
            "--reasoning",
            "--out",
            out("reasoning.jsonl").to_str().unwrap(),
            "--ids",
            out("reasoning.ids").to_str().unwrap(),
        ],
    );
    let (r, r_ids) = (jsonl(&out("reasoning.jsonl")), ids(&out("reasoning.ids")));
    for id in [
        "export-test-id-chat",
        "export-test-id-responses",
        "export-test-id-anthropic",
        "export-test-id-gemini",
        "export-test-id-ollama",
    ] {
        let last = line(&r, &r_ids, id)["messages"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert!(
            last["reasoning_content"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{id}: {last}"
        );
    }

    // Inspect: ids and reasoning and feedback in metadata.
    export(
        &db,
        &[
            "--format",
            "inspect",
            "--out",
            out("inspect.jsonl").to_str().unwrap(),
        ],
    );
    let inspect = jsonl(&out("inspect.jsonl"));
    let inspect_ids: Vec<&str> = inspect.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert!(
        inspect_ids.contains(&"export-test-id-gemini")
            && inspect_ids.contains(&"export-test-id-gif"),
        "{inspect_ids:?}"
    );
    let ant = inspect
        .iter()
        .find(|s| s["id"] == "export-test-id-anthropic")
        .unwrap();
    assert!(
        ant["metadata"]["reasoning"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{ant}"
    );
    assert_eq!(
        ant["metadata"]["feedback"],
        json!({"score": 1.0, "label": "good"})
    );

    // openai-evals and CSV.
    let e = export(
        &db,
        &[
            "--format",
            "openai-evals",
            "--out",
            out("evals.jsonl").to_str().unwrap(),
        ],
    );
    assert!(
        e.stderr.contains("with images the format cannot carry"),
        "{}",
        e.stderr
    );
    export(
        &db,
        &[
            "--format",
            "csv",
            "--out",
            out("meta.csv").to_str().unwrap(),
        ],
    );

    // --dedupe leaves out the repeated conversation.
    let e = export(
        &db,
        &[
            "--format",
            "chat-jsonl",
            "--dedupe",
            "--out",
            out("dedupe.jsonl").to_str().unwrap(),
            "--ids",
            out("dedupe.ids").to_str().unwrap(),
        ],
    );
    assert!(e.stderr.contains("1 duplicate"), "{}", e.stderr);
    let deduped = ids(&out("dedupe.ids"));
    assert!(
        deduped.contains(&"export-test-id-chat".to_owned())
            && !deduped.contains(&"export-test-id-chat-again".to_owned())
    );

    // --sample: the same seed, the same lines.
    let sample = |name: &str, seed: &str| {
        export(
            &db,
            &[
                "--format",
                "inspect",
                "--sample",
                "3",
                "--seed",
                seed,
                "--out",
                out(name).to_str().unwrap(),
            ],
        );
        std::fs::read_to_string(out(name)).unwrap()
    };
    let a = sample("s1.jsonl", "7");
    assert_eq!(a.lines().count(), 3);
    assert_eq!(a, sample("s2.jsonl", "7"));

    // --split by a hash of the id: files named by split, together the whole export, stable.
    let split = |name: &str| {
        export(
            &db,
            &[
                "--format",
                "chat-jsonl",
                "--split",
                "train=0.5,test=0.5",
                "--out",
                out(&format!("{name}.jsonl")).to_str().unwrap(),
                "--ids",
                out(&format!("{name}.ids")).to_str().unwrap(),
            ],
        )
    };
    let e = split("split");
    assert!(e.stderr.contains("Split: train "), "{}", e.stderr);
    let (train, test) = (ids(&out("split.train.ids")), ids(&out("split.test.ids")));
    assert_eq!(jsonl(&out("split.train.jsonl")).len(), train.len());
    let all: BTreeSet<&String> = train.iter().chain(&test).collect();
    assert_eq!(all, chat_ids.iter().collect::<BTreeSet<_>>());
    split("again");
    assert_eq!(ids(&out("again.train.ids")), train);

    // --label joins feedback into the filter.
    export(
        &db,
        &[
            "--format",
            "csv",
            "--label",
            "good",
            "--out",
            out("good.csv").to_str().unwrap(),
        ],
    );
    let good = std::fs::read_to_string(out("good.csv")).unwrap();
    assert_eq!(good.lines().count(), 2, "{good}");
    assert!(
        good.lines()
            .nth(1)
            .unwrap()
            .starts_with("export-test-id-anthropic,")
            && good.contains(",1,good"),
        "{good}"
    );

    // The real consumers.
    let python = std::env::var("ALOUD_TEST_INSPECT_PYTHON")
        .ok()
        .filter(|p| !p.is_empty());
    let required = std::env::var("ALOUD_REQUIRE_CLIENTS").is_ok_and(|v| v == "1");
    let Some(python) = python else {
        assert!(!required, "ALOUD_TEST_INSPECT_PYTHON is not set");
        eprintln!("skipping the consumers: ALOUD_TEST_INSPECT_PYTHON is not set");
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/validate_exports.py");
    let o = Command::new(python)
        .arg(script)
        .arg("--chat")
        .arg(out("chat.jsonl"))
        .arg("--evals")
        .arg(out("evals.jsonl"))
        .arg("--inspect")
        .arg(out("inspect.jsonl"))
        .arg("--csv")
        .arg(out("meta.csv"))
        .arg("--datasets")
        .arg(out("chat.jsonl"))
        .arg("--datasets")
        .arg(out("reasoning.jsonl"))
        .arg("--datasets")
        .arg(out("inspect.jsonl"))
        .arg("--datasets")
        .arg(out("evals.jsonl"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("chat-jsonl: ok, 7 samples"), "{stdout}");
    assert!(
        stdout.contains(&format!("inspect: ok, {} samples", inspect.len())),
        "{stdout}"
    );
}
