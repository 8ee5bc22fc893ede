//! The real binary end to end: `aloud serve` captures into SQLite, shuts down cleanly, and
//! `aloud export` / `aloud stats` read the result. No secret it saw is stored, spilled, logged
//! or exported, in plain, JSON-escaped or base64 form. Exports load in their real consumers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use base64::Engine;
use std::path::Path;
use std::process::{Command, Stdio};
use support::*;

const API_KEY: &str = "sk-proj-AloudTestKey0123456789abcdefXYZ";
const CLIENT_TOKEN: &str = "aloud-client-token-7f3a9c2e51b04d68";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An e-mail that the requests carry as a JSON member name.
const KEYED_EMAIL: &str = "keyed.member@example.net";

/// A card number the requests carry as a JSON number, and an e-mail `\u`-escaped in tool-call
/// arguments (JSON text in a string): each reads as the secret to whoever parses it.
const CARD_NUMBER: u64 = 4242424242424242;
const ESCAPED_EMAIL: &str = r"escaped.dave\u0040example.com";

/// Every form of `secret` that must never appear.
fn forms(secret: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![
        secret.to_owned(),
        serde_json::to_string(secret)
            .unwrap()
            .trim_matches('"')
            .to_owned(),
        b64.encode(secret),
        b64.encode(format!("user:{secret}")),
    ]
}

fn scan(dir: &Path, secrets: &[&str], found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scan(&path, secrets, found);
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for s in secrets {
            for f in forms(s) {
                if text.contains(&f) {
                    found.push(format!("{} contains {f:?}", path.display()));
                }
            }
        }
    }
}

#[tokio::test]
async fn serve_capture_export_and_stats_without_leaking_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nclient_tokens_env = \"T_TOKENS\"\nshutdown_grace = \"5s\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n\
             [capture]\ndatabase = \"{db}\"\nspill_dir = \"{spill}\"\nflush_interval = \"50ms\"\n\
             [[routes]]\nname = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\napi_key_env = \"T_KEY\"\n\
             [[routes]]\nname = \"ant\"\nprefix = \"/ant\"\nupstream = \"builtin:simulator\"\napi = \"anthropic\"\n",
            db = dir.path().join("aloud.db").display(),
            spill = dir.path().join("spill").display(),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("aloud.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_aloud"))
        .args(["--log-json", "serve", "--config"])
        .arg(&config)
        .env("T_KEY", API_KEY)
        .env("T_TOKENS", CLIENT_TOKEN)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    // Ready when its port accepts, within a deadline (a count of tries was too short on a
    // machine busy with other tests: the binary had not bound yet).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "aloud did not start within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let auth = format!("Bearer {CLIENT_TOKEN}");
    // The key pasted into a prompt, an e-mail, and a card number: all redacted before storage.
    let prompt =
        format!("my key is {API_KEY}, mail me at jane.doe@example.com, card 4111 1111 1111 1111");
    for i in 0..6 {
        let id = format!("e2e-capture-request-{i:04}");
        // An e-mail used as a member name (a map keyed by user) is redacted like one in a value.
        let call = serde_json::json!({"id": "c1", "type": "function", "function": {
            "name": "send", "arguments": format!(r#"{{"to":"{ESCAPED_EMAIL}"}}"#)}});
        let chat = serde_json::json!({"model": "gpt-sim", "stream": i % 2 == 0, "messages": [
                                          {"role": "user", "content": prompt},
                                          {"role": "assistant", "content": null, "tool_calls": [call]},
                                          {"role": "tool", "tool_call_id": "c1", "content": "sent"}],
                                      "tools": [{"type": "function", "function": {"name": "send", "parameters": {
                                          "type": "object", "properties": {"to": {"type": "string"}}}}}],
                                      "metadata": {KEYED_EMAIL: "plan-pro", "card": CARD_NUMBER}});
        let h = [
            ("content-type", "application/json"),
            ("authorization", auth.as_str()),
            ("aloud-request-id", id.as_str()),
            ("x-sim-seed", "5"),
            ("x-sim-think-ms", "400"),
            ("x-sim-tokens", "5"),
            ("x-sim-token-ms", "5"),
        ];
        let r = post(
            &format!("{base}/sim/v1/chat/completions"),
            &h,
            chat.to_string(),
        )
        .await;
        assert_eq!(r.status(), 200);
        body_bytes(r).await;
    }
    let ant = serde_json::json!({"model": "claude-sim", "stream": true, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});
    let h = [
        ("content-type", "application/json"),
        ("aloud-token", CLIENT_TOKEN),
        ("x-api-key", API_KEY),
        ("aloud-request-id", "e2e-capture-anthropic-01"),
        ("x-sim-seed", "5"),
        ("x-sim-think-ms", "100"),
        ("x-sim-tokens", "3"),
    ];
    body_bytes(post(&format!("{base}/ant/v1/messages"), &h, ant.to_string()).await).await;
    // With client tokens set, beacons and the side channel need one; a browser sends it as
    // `access_token`, which must reach no log (RUST_LOG=debug here) and no capture.
    let beacon = format!("{base}/aloud/v1/requests/e2e-capture-request-0000/feedback");
    let fb = post(
        &beacon,
        &[("content-type", "text/plain")],
        r#"{"score": 1}"#,
    )
    .await;
    assert_eq!(fb.status(), 401);
    let fb = post(
        &format!("{beacon}?access_token={CLIENT_TOKEN}"),
        &[("content-type", "text/plain")],
        r#"{"score": 1}"#,
    )
    .await;
    assert_eq!(fb.status(), 204);
    let progress = format!("{base}/aloud/v1/progress/e2e-capture-request-0001");
    assert_eq!(get(&progress).await.status(), 401);
    let replay = get(&format!("{progress}?access_token={CLIENT_TOKEN}&after=0")).await;
    assert_eq!(replay.status(), 200);
    let replay = String::from_utf8(body_bytes(replay).await.to_vec()).unwrap();
    assert!(replay.contains("aloud.done"), "{replay}");
    // SIGTERM: in-flight work drains, then the capture writer.
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "aloud exited with {status}");

    let db = dir.path().join("aloud.db");
    let bin = env!("CARGO_BIN_EXE_aloud");
    let stats = Command::new(bin)
        .args(["stats", "--json", "--database"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        stats.status.success(),
        "{}",
        String::from_utf8_lossy(&stats.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let all = &rows["rows"][0];
    assert_eq!(all["n"], 7, "{rows:#}");
    // Chat Completions is silent while the simulator thinks for 400 ms: the user felt it.
    let p50_token = all["metrics"]["first_token_ms"]["p50"].as_f64().unwrap();
    assert!((400.0..2000.0).contains(&p50_token), "{rows:#}");
    assert!(
        all["metrics"]["longest_silence_ms"]["p50"]
            .as_f64()
            .unwrap()
            >= 350.0,
        "{rows:#}"
    );
    let table = Command::new(bin)
        .args(["stats", "--group-by", "route", "--database"])
        .arg(&db)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(table.contains("sim") && table.contains("ant"), "{table}");

    let mut exported = Vec::new();
    for (format, file) in [
        ("chat-jsonl", "chat.jsonl"),
        ("openai-evals", "evals.jsonl"),
        ("inspect", "inspect.jsonl"),
        ("csv", "meta.csv"),
    ] {
        let out = dir.path().join(file);
        let o = Command::new(bin)
            .args(["export", "--format", format, "--route", "sim", "--database"])
            .arg(&db)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.lines().count() >= 6, "{format}: {text}");
        exported.push(out);
    }
    let chat = std::fs::read_to_string(&exported[0]).unwrap();
    assert!(
        chat.contains("[REDACTED:email]") && chat.contains("[REDACTED:card]"),
        "{chat}"
    );
    let good = Command::new(bin)
        .args([
            "export",
            "--format",
            "csv",
            "--min-score",
            "1",
            "--database",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&good.stdout).lines().count(),
        2,
        "header plus the one rated record"
    );

    // The secret scan: database, WAL, spill, logs and every export.
    let mut found = Vec::new();
    let card = CARD_NUMBER.to_string();
    let decoded_email = ESCAPED_EMAIL.replace(r"\u0040", "@");
    scan(
        dir.path(),
        &[
            API_KEY,
            CLIENT_TOKEN,
            KEYED_EMAIL,
            &card,
            ESCAPED_EMAIL,
            &decoded_email,
        ],
        &mut found,
    );
    assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));

    // Real consumers load the exports when they are installed.
    let inspect = std::env::var("ALOUD_TEST_INSPECT_PYTHON").ok();
    let required = std::env::var("ALOUD_REQUIRE_CLIENTS").is_ok_and(|v| v == "1");
    match inspect {
        Some(python) => {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/validate_exports.py");
            let o = Command::new(python)
                .arg(script)
                .arg("--chat")
                .arg(&exported[0])
                .arg("--evals")
                .arg(&exported[1])
                .arg("--inspect")
                .arg(&exported[2])
                .arg("--csv")
                .arg(&exported[3])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        None if required => panic!("ALOUD_TEST_INSPECT_PYTHON is not set"),
        None => support::skip("the consumer check: ALOUD_TEST_INSPECT_PYTHON is not set"),
    }
}
