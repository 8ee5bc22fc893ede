//! The dashboard in a real browser: a SQLite capture store seeded with known records, the real
//! binary serving it on its admin listener behind a token, headless Chromium driven by
//! playwright-core (tests/clients/browser_dashboard.mjs), and the real `aloud stats --json` run
//! for the same window. The summary table the page shows must match the CLI's report, and the
//! ETA error chart must plot the seeded errors and the CLI's bucketed medians; a slow
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
use aloud::record::EtaRecord;
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

/// The ETA error at 25% seeded on record `i` (ok records only, as the finish step writes it):
/// none on every fourth (too little history then), else a spread of fractions.
fn seeded_eta_error(i: u32, outcome: Outcome) -> Option<f64> {
    (outcome == Outcome::Ok && i % 4 != 3).then(|| f64::from((i * 37) % 90 + 3) / 100.0)
}

/// Records in the hour that starts at `base_ms`: two routes, two models, three tiers, some
/// failures, varied timings, so every percentile differs between groups; ok records carry an
/// `eta`, most with an error at 25%.
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
        if outcome == Outcome::Ok {
            r.eta = Some(EtaRecord {
                basis: 8 + i,
                error_at_25: seeded_eta_error(i, outcome),
                ..EtaRecord::default()
            });
        }
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

/// `aloud stats --json` for the window with `flags` (as the page asks: `--group-by route,model`
/// for its table, `--bucket 1h` for its ETA median line).
fn cli_stats(db: &Path, since: &str, until: &str, flags: &[&str]) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aloud"))
        .args(["stats", "--json", "--since", since])
        .args(flags)
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

/// The ETA chart as drawn (uPlot's data: x in seconds, a dot per call, the median per bucket at
/// the bucket's middle): the seeded errors, and `aloud stats --bucket 1h`'s `eta_error_pct` p50s;
/// its caption counts the calls with an estimate as the CLI does.
fn eta_chart(chart: &Value, hourly: &Value, base_ms: i64) {
    let series = |k: usize| -> Vec<Option<f64>> {
        let values = chart["data"][k].as_array().unwrap();
        values.iter().map(Value::as_f64).collect()
    };
    let (xs, dots, medians) = (series(0), series(1), series(2));
    let drawn = |ys: &[Option<f64>]| -> Vec<(f64, f64)> {
        xs.iter()
            .zip(ys)
            .filter_map(|(x, y)| Some(((*x)?, (*y)?)))
            .collect()
    };
    let mut want_dots = Vec::new();
    for i in 0..36u32 {
        let outcome = match i % 9 {
            4 => Outcome::UpstreamError,
            8 => Outcome::Timeout,
            _ => Outcome::Ok,
        };
        if let Some(e) = seeded_eta_error(i, outcome) {
            let started = base_ms + i64::from(i) * 90_000;
            want_dots.push((started as f64 / 1000.0, e * 100.0));
        }
    }
    assert_eq!(drawn(&dots), want_dots, "{chart}");
    let rows = hourly["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "the seed spans two hours: {hourly}");
    let want_medians: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| {
            let start = r["bucket_start_ms"].as_i64().unwrap() + 1_800_000;
            let p50 = r["metrics"]["eta_error_pct"]["p50"].as_f64().unwrap();
            (start as f64 / 1000.0, p50)
        })
        .collect();
    assert_eq!(drawn(&medians), want_medians, "{chart}");
    let estimated: u64 = rows
        .iter()
        .map(|r| r["metrics"]["eta_error_pct"]["n"].as_u64().unwrap())
        .sum();
    assert_eq!(estimated, want_dots.len() as u64);
    assert_eq!(
        chart["count"],
        format!("{estimated} of 36 calls in this window had an estimate at 25%.")
    );
}

#[tokio::test]
async fn the_dashboard_shows_what_aloud_stats_reports_and_the_requests_in_flight() {
    let Some(dir) = clients() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("capture.db");
    // Two to three hours ago: nothing the test itself sends falls in the window.
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Twenty minutes before an hour: the records (52.5 min) fall in two hourly buckets.
    let base_ms = (now_ms - 2 * 3_600_000) / 3_600_000 * 3_600_000 - 20 * 60_000;
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
    let report = cli_stats(&db, &since, &until, &["--group-by", "route,model"]);
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
    for p in points {
        let i: u32 = p["id"].as_str().unwrap()[5..].parse().unwrap();
        let outcome = Outcome::parse(p["outcome"].as_str().unwrap()).unwrap();
        let want = seeded_eta_error(i, outcome).map(|e| e * 100.0);
        assert_eq!(p["eta_error_pct"].as_f64(), want, "{p}");
    }
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
        let all = ["p50", "p90", "p99"].as_slice();
        for (m, qs) in [
            ("first_feedback_ms", all),
            ("first_token_ms", all),
            ("total_ms", all),
            ("eta_error_pct", &all[..2]),
        ] {
            for q in qs {
                assert_eq!(
                    shown_row[format!("{m}.{q}")].as_str().unwrap(),
                    shown(&row["metrics"][m][q]),
                    "{m}.{q} of {shown_row}"
                );
            }
        }
    }
    let hourly = cli_stats(&db, &since, &until, &["--bucket", "1h"]);
    eta_chart(&page["eta_chart"], &hourly, base_ms);
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
