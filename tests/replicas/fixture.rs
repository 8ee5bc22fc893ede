//! The two-replica setup of tests/replicas.rs: two real `aloud` binaries sharing a fresh
//! database of a real Postgres (capture and cluster), each with its own spill directory, nginx
//! round-robin in front; and the small clients and database readers the tests use.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use crate::support::binary::{Binary, message};
use crate::support::nginx::{self, Nginx};
use crate::support::postgres::Postgres;
use crate::support::{post, read_to_end};
use http::Response;
use hyper::body::Incoming;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEADLINE: Duration = Duration::from_secs(30);
/// How long a spill replay may take: the capture writer runs `SCHED_IDLE`, so on a machine
/// whose cores other processes keep busy (parallel builds) it waits for idle CPU.
pub const RECOVERY: Duration = Duration::from_secs(120);
/// The variable `database_env` names (the URL, password included, stays out of the file).
pub const ENV: &str = "ALOUD_TEST_DATABASE";
pub const CHAT: &str = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

/// One replica's config: the simulator, capture into `database_env`, its own spill, the cluster.
pub fn config(spill: &Path) -> String {
    format!(
        "[server]\nshutdown_grace = \"5s\"\n\
         [progress]\nheartbeat = \"200ms\"\nawait_request = \"5s\"\n\
         [capture]\ndatabase_env = \"{ENV}\"\nspill_dir = \"{}\"\nflush_interval = \"50ms\"\n\
         [cluster]\nenabled = true\n\
         [[routes]]\nname = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\nprogress = \"off\"\n",
        spill.display()
    )
}

/// A replica: its binary, config file, spill directory and database URL (to restart it alike).
pub struct Replica {
    pub bin: Binary,
    pub config: PathBuf,
    pub spill: PathBuf,
    pub url: String,
}

impl Replica {
    pub async fn start(dir: &Path, name: &str, url: &str) -> Replica {
        let spill = dir.join(format!("{name}-spill"));
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, self::config(&spill)).unwrap();
        let bin = Binary::start(&config, &[(ENV, url)]).await;
        Replica {
            bin,
            config,
            spill,
            url: url.to_owned(),
        }
    }

    /// Starts the binary again with the same config, spill directory and database.
    pub async fn restart(&mut self) {
        self.bin = Binary::start(&self.config, &[(ENV, self.url.as_str())]).await;
    }

    pub fn addr(&self) -> SocketAddr {
        self.bin.addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.bin.addr)
    }

    /// Waits until this replica's cluster link is up (its log says so).
    pub async fn wait_cluster(&mut self) {
        self.bin
            .wait_json(|v| message(v).starts_with("cluster: the side channel spans replicas"))
            .await;
    }

    /// Reads `name` from this replica's `/metrics` (its admin listener, from its log line).
    pub async fn metric(&self, name: &str) -> Option<u64> {
        let admin = self
            .bin
            .json()
            .into_iter()
            .find(|v| message(v).starts_with("admin listening"))
            .and_then(|v| v["addr"].as_str().map(str::to_owned))
            .expect("the replica logs its admin address");
        let (text, _) = read_to_end(get(&format!("http://{admin}/metrics")).await).await;
        String::from_utf8(text)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Polls `/metrics` until `name` reads at least `least`, or fails at the deadline.
    pub async fn wait_metric_at_least(&self, name: &str, least: u64) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let read = self.metric(name).await;
            if read.is_some_and(|v| v >= least) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} did not reach {least} within {DEADLINE:?}: {read:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything in the spill directory, as text.
    pub fn spill_text(&self) -> String {
        let Ok(entries) = std::fs::read_dir(&self.spill) else {
            return String::new();
        };
        entries
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .collect()
    }
}

/// Postgres (shared or the test's own), a fresh database, replicas A and B, nginx over both.
pub struct Setup<'a> {
    pub pg: &'a Postgres,
    pub db: String,
    pub url: String,
    pub a: Replica,
    pub b: Replica,
    pub nginx: Nginx,
    pub dir: tempfile::TempDir,
}

impl<'a> Setup<'a> {
    /// `url_a` adds to A's URL (a query such as `?application_name=replica-a`); `None` when
    /// nginx is missing and not required.
    pub async fn start(what: &str, pg: &'a Postgres, url_a: &str) -> Option<Setup<'a>> {
        let url = pg.fresh_database();
        let db = url.rsplit('/').next().unwrap().to_owned();
        let dir = tempfile::tempdir().unwrap();
        let mut a = Replica::start(dir.path(), "a", &format!("{url}{url_a}")).await;
        let mut b = Replica::start(dir.path(), "b", &url).await;
        a.wait_cluster().await;
        b.wait_cluster().await;
        let nginx = nginx::start(what, &[a.addr(), b.addr()]).await?;
        Some(Setup {
            pg,
            db,
            url,
            a,
            b,
            nginx,
            dir,
        })
    }

    /// One SQL command's unaligned output (psql, off the async workers).
    pub fn sql(&self, sql: &str) -> String {
        tokio::task::block_in_place(|| self.pg.psql(&self.db, sql))
    }

    /// Rows per (id, attempt) in `captures` (none before a writer created the table).
    pub fn stored(&self) -> BTreeMap<String, u64> {
        if self.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'captures'") != "1" {
            return BTreeMap::new();
        }
        let out = self.sql(
            "SELECT id || ' ' || attempt || ' ' || count(*) FROM captures GROUP BY id, attempt",
        );
        out.lines()
            .map(|l| {
                let mut f = l.split(' ');
                let (id, attempt, n) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
                (format!("{id}#{attempt}"), n.parse().unwrap())
            })
            .collect()
    }

    /// Polls until `done` holds of the rows stored, or fails at the deadline with them.
    pub async fn wait_stored(&self, what: &str, done: impl Fn(&BTreeMap<String, u64>) -> bool) {
        self.wait_stored_within(DEADLINE, what, done).await;
    }

    /// As `wait_stored`, with a deadline of `limit`.
    pub async fn wait_stored_within(
        &self,
        limit: Duration,
        what: &str,
        done: impl Fn(&BTreeMap<String, u64>) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let stored = self.stored();
            if done(&stored) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {limit:?}; stored {} (id, attempt)s",
                stored.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `aloud stats --json --database URL` (the real binary): the rows it prints.
    pub fn stats(&self) -> Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_aloud"))
            .args(["stats", "--json", "--database", &self.url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// `id` once at attempt 1, as `stored()` keys it.
pub fn key(id: &str) -> String {
    format!("{id}#1")
}

/// A streaming chat request to `base` (a replica or nginx) with a fixed `Aloud-Request-Id`;
/// returns once the response head arrived.
pub async fn chat(base: &str, id: &str, think_ms: u64, tokens: u64) -> Response<Incoming> {
    let (think, tokens) = (think_ms.to_string(), tokens.to_string());
    let h = [
        ("host", host(base)),
        ("content-type", "application/json"),
        ("aloud-request-id", id),
        ("x-sim-seed", "7"),
        ("x-sim-think-ms", think.as_str()),
        ("x-sim-tokens", tokens.as_str()),
        ("x-sim-token-ms", "1"),
    ];
    post(&format!("{base}/sim/v1/chat/completions"), &h, CHAT).await
}

/// `GET url`, with the `Host` header nginx requires of HTTP/1.1 (the support client sends none).
pub async fn get(url: &str) -> Response<Incoming> {
    crate::support::send(
        http::Request::get(url)
            .header("host", host(url))
            .body(crate::support::full(""))
            .unwrap(),
    )
    .await
}

/// The authority of `url` (`http://127.0.0.1:8080/x` → `127.0.0.1:8080`).
fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap()
}

/// Whether a chat response succeeded whole: 200, a body that ended cleanly, and the stream's
/// own end (`data: [DONE]`).
pub async fn completed(r: Response<Incoming>) -> bool {
    if r.status() != 200 {
        return false;
    }
    let (body, clean) = read_to_end(r).await;
    clean && String::from_utf8_lossy(&body).contains("data: [DONE]")
}

/// SSE frames as (id, event, data) until the stream ends.
pub async fn sse(r: Response<Incoming>) -> Vec<(Option<u64>, String, Value)> {
    let (bytes, _) = read_to_end(r).await;
    let mut out = Vec::new();
    for block in String::from_utf8(bytes).unwrap().split("\n\n") {
        let (mut id, mut name, mut data) = (None, String::from("message"), None);
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.parse().ok();
            } else if let Some(v) = line.strip_prefix("event: ") {
                name = v.to_owned();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(v).unwrap());
            }
        }
        if let Some(d) = data {
            out.push((id, name, d));
        }
    }
    out
}
