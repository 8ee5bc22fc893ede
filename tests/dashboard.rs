//! The dashboard in a real browser: a SQLite capture store seeded with known records, the real
//! binary serving it on its admin listener behind a token, headless Chromium driven by
//! playwright-core (tests/clients/browser_dashboard.mjs), and the real `aloud stats --json` run
//! for the same window. The summary table the page shows must match the CLI's report; a slow
//! request must show in the live view while it runs; the page must have no console errors; and
//! every dashboard URL must be 401 without the token. Screenshots go to tests/artifacts/.
//!
//! Needs `ALOUD_TEST_CLIENTS` (tests/clients with its node_modules) and `/usr/bin/chromium`;
//! without them the test skips, unless `ALOUD_REQUIRE_CLIENTS=1`, when it fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

#[path = "support/records.rs"]
mod records;
mod support;

use aloud::capture::Outcome;
use aloud::store::{SqliteStore, Store};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};
use support::binary::{Binary, message};

const CHROMIUM: &str = "/usr/bin/chromium";
const TOKEN: &str = "dash-test-token-7f3a";
/// One script run may take this long (browser start-up included) before it counts as hung.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn clients() -> Option<PathBuf> {
    let dir = std::env::var_os("ALOUD_TEST_CLIENTS").filter(|v| !v.is_empty());
    let required = std::env::var("ALOUD_REQUIRE_CLIENTS").is_ok_and(|v| v == "1");
    let ready = dir.is_some() && Path::new(CHROMIUM).exists();
    match (ready, required) {
        (true, _) => dir.map(PathBuf::from),
        (false, true) => panic!(
            "ALOUD_REQUIRE_CLIENTS=1 but ALOUD_TEST_CLIENTS is unset or {CHROMIUM} is missing: \
             run scripts/install-test-deps.sh (scripts/test.sh does)"
        ),
        (false, false) => {
            eprintln!(
                "skipping the dashboard browser test: set ALOUD_TEST_CLIENTS and install \
                 {CHROMIUM} (scripts/test.sh does), or ALOUD_REQUIRE_CLIENTS=1 to make this an error"
            );
            None
        }
    }
}

/// Records in the hour that starts at `base_ms`: two routes, two models, three tiers, some
/// failures, varied timings, so every percentile differs between groups.
fn seed(db: &Path, base_ms: i64) {
    let mut store = SqliteStore::open(db).unwrap();
    let mut records = Vec::new();
    for i in 0..36u32 {
        let (route, model) = match i % 3 {
            0 => ("sim", "sim-reasoner"),
            1 => ("sim", "sim-fast"),
            _ => ("other", "sim-reasoner"),
        };
        let outcome = match i % 9 {
            4 => Outcome::UpstreamError,
            8 => Outcome::Timeout,
            _ => Outcome::Ok,
        };
        let id = format!("seed-{i:02}");
        let mut r = records::tagged(&id, base_ms + i64::from(i) * 90_000, route, model, outcome);
        let f = f64::from(i);
        r.tier = ["off", "comments", "events"][(i % 4).min(2) as usize].to_owned();
        r.timings.first_feedback_ms = Some(5.0 + f * 13.0 + (f * 7.0) % 11.0);
        r.timings.first_token_ms = Some(400.0 + f * 37.5);
        r.timings.done_ms = Some(900.0 + f * f * 11.0);
        r.timings.longest_silence_ms = Some(100.0 + (f * 173.0) % 2900.0);
        records.push(r);
    }
    store.insert_batch(&records).unwrap();
    for (id, score) in [
        ("seed-00", 1.0),
        ("seed-03", 0.0),
        ("seed-06", 1.0),
        ("seed-07", 0.5),
    ] {
        store.insert_feedback(id, Some(score), None, None).unwrap();
    }
}

fn rfc3339(ms: i64) -> String {
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `aloud stats --json` for the window, grouped as the page's table is.
fn cli_stats(db: &Path, since: &str, until: &str) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aloud"))
        .args([
            "stats",
            "--json",
            "--group-by",
            "route,model",
            "--since",
            since,
        ])
        .args(["--until", until, "--database"])
        .arg(db)
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A number as the page shows it: one decimal at most, "–" for none (dashboard.js `fmt`).
fn shown(v: &Value) -> String {
    match v.as_f64() {
        None => "–".to_owned(),
        Some(x) => {
            let r = (x * 10.0).round() / 10.0;
            if r.fract() == 0.0 {
                format!("{r:.0}")
            } else {
                format!("{r}")
            }
        }
    }
}

#[tokio::test]
async fn the_dashboard_shows_what_aloud_stats_reports_and_the_requests_in_flight() {
    let Some(dir) = clients() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("capture.db");
    // Two hours ago, on a minute: nothing the test itself sends falls in the window.
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base_ms = (now_ms - 2 * 3_600_000) / 60_000 * 60_000;
    seed(&db, base_ms);
    let (since, until) = (rfc3339(base_ms - 60_000), rfc3339(base_ms + 3_600_000));
    let config = tmp.path().join("aloud.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nshutdown_grace = \"1s\"\n[admin]\ntoken_env = \"ADMIN_TOKEN\"\n\
             [capture]\ndatabase = {db:?}\n\
             [[routes]]\nname = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\n"
        ),
    )
    .unwrap();
    let mut aloud = Binary::start(&config, &[("ADMIN_TOKEN", TOKEN)]).await;
    let admin_line = aloud
        .wait_json(|v| message(v).starts_with("admin listening"))
        .await;
    let admin = admin_line["addr"].as_str().unwrap().to_owned();

    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join("browser_dashboard.mjs"))
        .args(["--admin", &format!("http://{admin}")])
        .args(["--proxy", &format!("http://{}", aloud.addr)])
        .args(["--token", TOKEN, "--since", &since, "--until", &until])
        .arg("--out")
        .arg(&artifacts)
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_TIMEOUT, cmd.output())
        .await
        .expect("the browser script hung")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "browser_dashboard.mjs: {}\n--- stderr\n{}\n--- stdout\n{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut page: Value = serde_json::from_str(&stdout).unwrap();
    for api in ["api_stats", "api_points"] {
        page[api] = serde_json::from_str(page[api].as_str().unwrap()).unwrap();
    }
    let mut shown_page = page.clone();
    shown_page["api_points"]["points"] = Value::from("(left out)");
    shown_page["api_stats"] = Value::from("(compared below)");
    eprintln!("{}", serde_json::to_string_pretty(&shown_page).unwrap());

    // api/stats is exactly the CLI's JSON for the same flags.
    let report = cli_stats(&db, &since, &until);
    assert_eq!(
        page["api_stats"], report,
        "api/stats differs from aloud stats --json"
    );
    // api/points: every seeded exchange, newest first, with its feedback score.
    let points = page["api_points"]["points"].as_array().unwrap();
    assert_eq!(points.len(), 36, "{}", page["api_points"]);
    assert_eq!(points[0]["id"], "seed-35");
    assert_eq!(points[35]["id"], "seed-00");
    assert_eq!(points[35]["score"], 1.0);
    assert_eq!(points[34]["score"], Value::Null);
    assert_eq!(points[35]["total_ms"], 900.0);
    // The table the page shows is that report, cell by cell.
    let rows = report["rows"].as_array().unwrap();
    let table = page["table"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{report}");
    assert_eq!(table.len(), rows.len(), "{page}");
    assert_eq!(page["latency_over"], report["latency_over"]);
    for (row, shown_row) in rows.iter().zip(table) {
        assert_eq!(shown_row["route"], row["group"]["route"], "{shown_row}");
        assert_eq!(shown_row["model"], row["group"]["model"], "{shown_row}");
        assert_eq!(shown_row["n"], row["n"].to_string(), "{shown_row}");
        for m in ["first_feedback_ms", "first_token_ms", "total_ms"] {
            for q in ["p50", "p90", "p99"] {
                assert_eq!(
                    shown_row[format!("{m}.{q}")].as_str().unwrap(),
                    shown(&row["metrics"][m][q]),
                    "{m}.{q} of {shown_row}"
                );
            }
        }
    }
    // The live view showed the slow request with its model and a phase, then let it go.
    let live: Vec<&str> = page["live"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(live[1..4], ["sim", "sim-slow", "comments"], "{live:?}");
    assert_eq!(page["live_gone"], true);
    assert!(artifacts.join("dashboard.png").is_file());
    aloud.signal("TERM");
    assert!(aloud.wait_exit(Duration::from_secs(20)).await.success());
}
