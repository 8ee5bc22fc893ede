//! A real Prometheus (Debian's package; scripts/install-test-deps.sh installs it) scrapes
//! aloud's admin listener every second: after known traffic, Prometheus's own query API returns
//! the counts sent and a sane median, `promtool check metrics` accepts what aloud serves, and
//! `promtool check rules` accepts the example alerts in docs/alerts.yml.
//!
//! Without `/usr/bin/prometheus` the test skips with a message, or fails when
//! `ALOUD_REQUIRE_CLIENTS=1` (CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::{Request, Response};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::time::Instant;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
/// What the mock upstream waits before it answers.
const DELAY: Duration = Duration::from_millis(60);

fn installed() -> bool {
    let found = Path::new(PROMETHEUS).exists() && Path::new(PROMTOOL).exists();
    let required = std::env::var("ALOUD_REQUIRE_CLIENTS").is_ok_and(|v| v == "1");
    assert!(
        found || !required,
        "ALOUD_REQUIRE_CLIENTS=1 but {PROMETHEUS} or {PROMTOOL} is missing: run scripts/install-test-deps.sh"
    );
    if !found {
        support::skip(&format!(
            "the Prometheus test: {PROMETHEUS} is missing (scripts/install-test-deps.sh \
             installs it; ALOUD_REQUIRE_CLIENTS=1 makes this an error)"
        ));
    }
    found
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A GET in origin form with a `Host` header, as Go's HTTP server requires.
async fn get_from(base: &str, path: &str) -> Response<hyper::body::Incoming> {
    let host = base.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    #[expect(
        clippy::disallowed_methods,
        reason = "connection driver for a test client"
    )]
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", host)
        .body(full(""))
        .unwrap();
    sender.send_request(req).await.unwrap()
}

/// Asks Prometheus for `query`; the first sample's value, if any.
async fn query(prom: &str, q: &str) -> Option<f64> {
    let r = get_from(prom, &format!("/api/v1/query?query={}", encode(q))).await;
    let v = body_json(r).await;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// Polls `what` every 100 ms until it holds or `within` passes.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
    }
}

async fn free_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

async fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new(PROMTOOL)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .await
        .unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn prometheus_scrapes_the_counts_sent_and_sane_quantiles() {
    if !installed() {
        return;
    }
    let up = Upstream::start(|req: Request<hyper::body::Incoming>| async move {
        // The mock's known delay: every exchange takes at least this long.
        tokio::time::sleep(DELAY).await;
        let path = req.uri().path().to_owned();
        if path.ends_with("/fail") {
            return Response::builder().status(500).body(full("{}")).unwrap();
        }
        let (kind, body) = if path.ends_with("/stream") {
            (
                "text/event-stream",
                "data: {\"model\":\"m1\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n",
            )
        } else {
            ("application/json", "{\"choices\":[]}")
        };
        Response::builder()
            .header("content-type", kind)
            .body(full(body))
            .unwrap()
    })
    .await;
    let config = route_config(up.addr, "openai", "progress = \"off\"", "")
        + "[admin]\nlisten = \"127.0.0.1:0\"\n";
    let aloud = Aloud::start(&config).await;
    let admin = aloud.admin.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let yml = dir.path().join("prometheus.yml");
    std::fs::write(
        &yml,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: aloud\n    static_configs:\n      - targets: ['{admin}']\n"
        ),
    )
    .unwrap();
    let port = free_port().await;
    let prom = format!("http://127.0.0.1:{port}");
    let mut server = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", yml.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "Prometheus to be ready",
        || async {
            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Ok(_) => get_from(&prom, "/-/ready").await.status() == 200,
                Err(_) => false,
            }
        },
    )
    .await;

    // Known traffic: 5 whole answers and 2 streams succeed, 3 fail upstream.
    let mut paths = vec!["/up/v1/json"; 5];
    paths.extend(["/up/v1/stream"; 2]);
    paths.extend(["/up/v1/fail"; 3]);
    for path in paths {
        let r = post(
            &aloud.url(path),
            &[("content-type", "application/json")],
            "{}",
        )
        .await;
        let _ = body_bytes(r).await;
    }

    for (q, want) in [
        ("sum(aloud_requests_total{outcome=\"ok\"})", 7.0),
        (
            "sum(aloud_requests_total{outcome=\"upstream_error\",status_class=\"5xx\"})",
            3.0,
        ),
        ("sum(aloud_requests_total{streamed=\"true\"})", 2.0),
        ("sum(aloud_request_duration_seconds_count)", 10.0),
        (
            "sum(aloud_request_duration_seconds_count{model=\"m1\"})",
            2.0,
        ),
        ("sum(aloud_refused_total)", 0.0),
    ] {
        eventually(Duration::from_secs(30), q, || async {
            query(&prom, q).await == Some(want)
        })
        .await;
    }
    let median = query(
        &prom,
        "histogram_quantile(0.5, sum by (le) (aloud_request_duration_seconds_bucket))",
    )
    .await
    .unwrap();
    assert!(
        median >= DELAY.as_secs_f64() && median <= 0.5,
        "median total {median}s: the mock waits {DELAY:?} and nothing else is slow"
    );
    let overhead = query(
        &prom,
        "histogram_quantile(0.5, sum by (le) (aloud_overhead_seconds_bucket))",
    )
    .await
    .unwrap();
    assert!(
        overhead > 0.0 && overhead <= 0.01,
        "median overhead {overhead}s"
    );

    // What aloud serves to a plain scraper passes promtool's checks.
    let text = body_bytes(get(&aloud.admin_url("/metrics")).await).await;
    let text = String::from_utf8(text.to_vec()).unwrap();
    let (ok, out) = promtool(&["check", "metrics"], Some(&text)).await;
    assert!(ok, "promtool check metrics:\n{out}\n---\n{text}");
    // The example alerts in the docs are valid rules.
    let (ok, out) = promtool(&["check", "rules", "docs/alerts.yml"], None).await;
    assert!(ok, "promtool check rules docs/alerts.yml:\n{out}");

    server.kill().await.unwrap();
    aloud.stop().await;
}
