//! Resuming with the real consumers: openai-python pointed at the resume path, and aloud.js in
//! headless Chromium across a network cut and the demo page across a reload
//! (tests/clients/openai_resume.py, browser_resume.mjs), against the built-in simulator on a
//! route with `on_disconnect = "finish"`.
//!
//! Needs `ALOUD_TEST_PYTHON` and `ALOUD_TEST_CLIENTS` (and /usr/bin/chromium), as
//! `scripts/test.sh` sets; skipped without them unless `ALOUD_REQUIRE_CLIENTS=1`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::clients::clients;
use support::{Aloud, body_bytes, get};

const CONFIG: &str = "[server]\nshutdown_grace = \"1s\"\n[progress]\nheartbeat = \"500ms\"\n\
    [[routes]]\nname = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\n\
    api = \"openai\"\non_disconnect = \"finish\"\n";

/// Runs `program script args...` in `dir` with a clean environment; its one JSON document.
async fn run(program: &Path, dir: &Path, script: &str, args: &[String]) -> Value {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg(dir.join(script))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the client script hung")
        .expect("the client script starts");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed:\n{stderr}");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}):\n{stderr}"))
}

#[tokio::test]
async fn openai_python_resumes_a_dropped_stream_through_the_resume_path() {
    let Some(c) = clients("openai-python resume") else {
        return;
    };
    let aloud = Aloud::start(CONFIG).await;
    let out = run(
        &c.python,
        &c.dir,
        "openai_resume.py",
        &[
            "--aloud".into(),
            format!("http://{}", aloud.addr),
            "--prefix".into(),
            "/sim".into(),
        ],
    )
    .await;
    assert_eq!(out["on_disconnect"], "finish");
    let full = out["full"].as_array().unwrap();
    let seen = out["seen"].as_array().unwrap();
    let rest = out["rest"].as_array().unwrap();
    assert!(!seen.is_empty() && !rest.is_empty(), "{out}");
    let joined: Vec<&Value> = seen.iter().chain(rest).collect();
    assert_eq!(
        joined,
        full.iter().collect::<Vec<_>>(),
        "seen + resumed = uninterrupted"
    );
    assert_eq!(
        out["again"], out["full"],
        "a resume from the start is the whole answer"
    );
    aloud.stop().await;
}

#[tokio::test]
async fn aloud_js_in_chromium_resumes_across_a_network_cut_and_the_demo_page_across_a_reload() {
    let Some(c) = clients("aloud.js resume in Chromium") else {
        return;
    };
    if !Path::new("/usr/bin/chromium").exists() {
        assert!(
            std::env::var("ALOUD_REQUIRE_CLIENTS").map_or(true, |v| v != "1"),
            "ALOUD_REQUIRE_CLIENTS=1 but /usr/bin/chromium is missing"
        );
        eprintln!("skipping: /usr/bin/chromium is missing");
        return;
    }
    let aloud = Aloud::start(CONFIG).await;
    let out = run(
        Path::new("node"),
        &c.dir,
        "browser_resume.mjs",
        &[
            "--base-url".into(),
            format!("http://{}", aloud.addr),
            "--prefix".into(),
            "/sim".into(),
        ],
    )
    .await;
    eprintln!("{out}");
    // The upstream's bytes of the cut call, as kept, equal the uninterrupted call's.
    let result = |id: &Value| {
        let url = aloud.url(&format!(
            "/aloud/v1/requests/{}/result",
            id.as_str().unwrap()
        ));
        async move {
            let r = get(&url).await;
            assert_eq!(r.status(), 200);
            body_bytes(r).await
        }
    };
    let reference = result(&out["reference_id"]).await;
    let cut = result(&out["cut_id"]).await;
    assert!(!reference.is_empty());
    assert_eq!(cut, reference, "the cut call's kept bytes differ");
    // The demo page's call cut by the reload ran to its end upstream, as its uninterrupted twin.
    let demo_reference = result(&out["demo_reference_id"]).await;
    assert!(!demo_reference.is_empty());
    assert_ne!(out["reload_id"], out["demo_reference_id"]);
    assert_eq!(result(&out["reload_id"]).await, demo_reference);
    aloud.stop().await;
}
