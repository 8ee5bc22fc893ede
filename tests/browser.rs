//! The demo page and aloud.js in a real browser: headless Chromium driven by playwright-core
//! (tests/clients/browser_*.mjs) against aloud in-process (over HTTPS and HTTP/2 too), with the
//! built-in simulator behind it.
//! Each script checks what the page shows and prints a JSON summary; exit 0 means every check
//! held. Screenshots go to tests/artifacts/ (git-ignored).
//!
//! Needs `ALOUD_TEST_CLIENTS` (tests/clients with its node_modules) and `/usr/bin/chromium`, as
//! `scripts/install-test-deps.sh` installs them. Without them these tests skip, unless
//! `ALOUD_REQUIRE_CLIENTS=1`, when they fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::Aloud;

/// One script run may take this long (browser start-up included) before it counts as hung.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

const CHROMIUM: &str = "/usr/bin/chromium";

/// One browser at a time: the two tests share two cores with everything else.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// tests/clients (with playwright-core installed), or `None` (skip) when the browser tests
/// cannot run and are not required.
fn clients() -> Option<PathBuf> {
    let dir = std::env::var_os("ALOUD_TEST_CLIENTS").filter(|v| !v.is_empty());
    let required = std::env::var("ALOUD_REQUIRE_CLIENTS").is_ok_and(|v| v == "1");
    let missing = match &dir {
        None => Some("ALOUD_TEST_CLIENTS is unset".to_owned()),
        Some(_) if !Path::new(CHROMIUM).exists() => Some(format!("{CHROMIUM} is missing")),
        Some(_) => None,
    };
    match missing {
        None => dir.map(PathBuf::from),
        Some(why) if required => panic!(
            "ALOUD_REQUIRE_CLIENTS=1 but {why}: run scripts/install-test-deps.sh and set \
             ALOUD_TEST_CLIENTS (scripts/test.sh does)"
        ),
        Some(why) => {
            support::skip(&format!(
                "browser tests: {why} (scripts/install-test-deps.sh and scripts/test.sh \
                 set things up), or ALOUD_REQUIRE_CLIENTS=1 to make this an error"
            ));
            None
        }
    }
}

/// Where the scripts save screenshots.
fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts")
}

/// A `sim` route (openai) on the built-in simulator, frequent heartbeats, and `extra` TOML.
fn config(extra: &str) -> String {
    format!(
        "[server]\nshutdown_grace = \"1s\"\n[progress]\nheartbeat = \"500ms\"\n{extra}\n\
         [[routes]]\nname = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\n"
    )
}

/// Runs `node SCRIPT ARGS...` in `dir`; panics with its stderr unless it exits 0 with one JSON
/// document on stdout, which it returns.
async fn run(dir: &Path, script: &str, args: &[String]) -> Value {
    let _one_browser = BROWSER.lock().await;
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join(script))
        .args(args)
        .current_dir(dir)
        // Nothing from the caller's environment (proxies above all) reaches node or chromium.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(tmp) = std::env::var_os("TMPDIR") {
        cmd.env("TMPDIR", tmp);
    }
    let what = format!("{script} {}", args.join(" "));
    let started = Instant::now();
    let output = match tokio::time::timeout(RUN_TIMEOUT, cmd.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("{what}: could not start node: {e}"),
        Err(_) => panic!("{what}: not done within {RUN_TIMEOUT:?}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what}: {}\n--- stderr\n{stderr}\n--- stdout\n{stdout}",
        output.status
    );
    let summary: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("{what}: stdout is not one JSON document: {e}\n--- stderr\n{stderr}\n--- stdout\n{stdout}")
    });
    eprintln!(
        "{what}: ok in {:.2?}\n{}",
        started.elapsed(),
        serde_json::to_string_pretty(&summary).unwrap()
    );
    if !stderr.trim().is_empty() {
        eprintln!("--- {script} stderr\n{stderr}");
    }
    summary
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The demo page at `/` (redirected to `/aloud/`): Ask, then the phase, elapsed time, reasoning
/// headings, the seeded answer and "Thought for N s" as the page shows them.
#[tokio::test]
async fn demo_page_shows_the_wait_and_the_seeded_answer() {
    let Some(dir) = clients() else { return };
    let aloud = Aloud::start(&config("")).await;
    let summary = run(
        &dir,
        "browser_demo.mjs",
        &[
            "--base-url".into(),
            format!("http://{}", aloud.addr),
            "--out".into(),
            artifacts().display().to_string(),
        ],
    )
    .await;
    let phases = strings(&summary["phases"]);
    assert!(phases.contains(&"thinking"), "{phases:?}");
    assert_eq!(phases.last(), Some(&"done"), "{phases:?}");
    assert!(
        summary["elapsed"]["max"].as_f64().unwrap() > 2.0,
        "{summary}"
    );
    assert!(!strings(&summary["headings"]).is_empty(), "{summary}");
    assert!(!summary["answer"].as_str().unwrap().is_empty(), "{summary}");
    assert!(artifacts().join("demo-mid.png").is_file());
    assert!(artifacts().join("demo-end.png").is_file());
    aloud.stop().await;
}

/// The demo page when a call ends without an answer: a 429 shows its status, the upstream's own
/// message and type, and no "Thought for"; a cancel shows "stopped", neutrally. No console errors.
#[tokio::test]
async fn demo_page_shows_an_upstream_error_and_a_cancel_plainly() {
    let Some(dir) = clients() else { return };
    let aloud = Aloud::start(&config("")).await;
    let summary = run(
        &dir,
        "browser_demo_failures.mjs",
        &[
            "--base-url".into(),
            format!("http://{}", aloud.addr),
            "--out".into(),
            artifacts().display().to_string(),
        ],
    )
    .await;
    let limited = &summary["rate_limited"];
    assert_eq!(limited["statusPhase"], "error", "{summary}");
    let label = limited["label"].as_str().unwrap();
    assert!(
        label.contains("429") && label.contains("simulated 429 error (x-sim-status)"),
        "{label}"
    );
    assert_eq!(limited["thought"], "", "{summary}");
    assert_eq!(summary["cancelled"]["statusPhase"], "stopped", "{summary}");
    assert_eq!(summary["cancelled"]["thought"], "", "{summary}");
    assert!(artifacts().join("demo-429.png").is_file());
    assert!(artifacts().join("demo-stopped.png").is_file());
    aloud.stop().await;
}

/// The demo page's progress bar across a run of seeded requests, once aloud has history: it
/// never moves back, is full only at done, and the ETA moved it before that.
#[tokio::test]
async fn the_progress_bar_never_goes_back_and_fills_only_at_done() {
    let Some(dir) = clients() else { return };
    let aloud = Aloud::start(&config("")).await;
    let summary = run(
        &dir,
        "browser_eta.mjs",
        &[
            "--base-url".into(),
            format!("http://{}", aloud.addr),
            "--out".into(),
            artifacts().display().to_string(),
        ],
    )
    .await;
    let runs = summary["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4, "{summary}");
    for r in runs {
        assert_eq!(r["backwards"], 0, "{r}");
        assert_eq!(r["fullEarly"], 0, "{r}");
    }
    assert!(
        runs.iter().any(|r| r["mid"].as_u64().unwrap() > 5),
        "{summary}"
    );
    aloud.stop().await;
}

/// A page on another origin allowed by `[cors] origins`: aloud.js imported from aloud, a POST
/// with `Aloud-Progress: events` and SDK headers, the side channel in an EventSource, and a page
/// on an origin that is not allowed, which the browser must refuse.
#[tokio::test]
async fn another_origin_uses_aloud_js_and_the_side_channel() {
    let Some(dir) = clients() else { return };
    // A free port for the page server, so aloud's config can name its exact origin.
    let page_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let aloud = Aloud::start(&config(&format!(
        "[cors]\norigins = [\"http://127.0.0.1:{page_port}\"]\n"
    )))
    .await;
    let summary = run(
        &dir,
        "browser_cors.mjs",
        &[
            "--base-url".into(),
            format!("http://{}", aloud.addr),
            "--page-port".into(),
            page_port.to_string(),
            "--out".into(),
            artifacts().display().to_string(),
        ],
    )
    .await;
    assert_eq!(
        summary["post"]["requestId"], summary["request_id"],
        "{summary}"
    );
    let side = strings(&summary["side_channel"]);
    assert!(
        side.last().is_some_and(|e| e.contains("aloud.done")),
        "{side:?}"
    );
    assert_eq!(summary["preflight"]["blocked"]["status"], 403, "{summary}");
    aloud.stop().await;
}

/// The demo page over HTTPS, HTTP/2 chosen by ALPN, the test's CA trusted by the leaf's SPKI
/// hash alone: ten side-channel subscriptions and a request on one origin all progress at once
/// (over HTTP/1.1 the browser's six connections per origin would hold the rest back), and every
/// resource went over h2 (`nextHopProtocol`).
#[tokio::test]
async fn over_https_ten_subscriptions_and_a_request_share_one_origin() {
    let Some(dir) = clients() else { return };
    let ca = support::tls::TestCa::new();
    let cert = ca.server_cert("server");
    let aloud = Aloud::start(&format!(
        "[server]\nshutdown_grace = \"1s\"\n{}[progress]\nheartbeat = \"300ms\"\n\
         [[routes]]\nname = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\n",
        support::tls::server_toml(&cert)
    ))
    .await;
    let summary = run(
        &dir,
        "browser_h2.mjs",
        &[
            "--base-url".into(),
            format!("https://localhost:{}", aloud.addr.port()),
            "--spki".into(),
            cert.spki_sha256.clone(),
            "--out".into(),
            artifacts().display().to_string(),
        ],
    )
    .await;
    let subs = summary["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 10, "{summary}");
    let ended = summary["request"]["end"].as_f64().unwrap();
    for s in subs {
        let before_end = s["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "aloud.progress" && e["at"].as_f64().unwrap() < ended)
            .count();
        assert!(before_end >= 2, "{s}");
    }
    let resources = summary["resources"].as_array().unwrap();
    assert!(!resources.is_empty(), "{summary}");
    assert!(resources.iter().all(|r| r["protocol"] == "h2"), "{summary}");
    aloud.stop().await;
}
