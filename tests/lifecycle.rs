//! A calm lifecycle (issue 8, Deliver 6), with the real binary: the first stop says what is in
//! flight, a second stops at once with capture in the spill; SIGHUP reloads the config (and
//! keeps the running one when the new one is bad); unset `api_key_env` is warned at start; and
//! the access log and the capture agree on how each stream ended.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use aloud::capture::Outcome;
use aloud::store::{SqliteStore, Store};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use support::binary::{Binary, access_lines, message};
use support::scripted::Scripted;
use support::wire::{Conn, End};

fn capture_toml(dir: &Path) -> String {
    format!(
        "[capture]\ndatabase = \"{}\"\nspill_dir = \"{}\"\nflush_interval = \"50ms\"\n",
        dir.join("aloud.db").display(),
        dir.join("spill").display(),
    )
}

fn route(name: &str, prefix: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\nprefix = \"{prefix}\"\nupstream = \"{upstream}\"\napi = \"openai\"\n{extra}\n"
    )
}

/// A stalled stream through `path`, its first event already at the client.
async fn stalled(b: &Binary, path: &str, id: &str) -> Conn {
    let mut conn = Conn::chat(
        b.addr,
        path,
        "off",
        &[("Aloud-Request-Id", id), ("x-mock", "stall-after-event")],
    )
    .await;
    conn.until_contains("\"Hel\"").await;
    conn
}

#[tokio::test]
async fn a_second_stop_cuts_at_once_and_the_cut_exchange_is_spilled_as_shutdown() {
    let up = Scripted::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nshutdown_grace = \"30s\"\n{}{}",
            capture_toml(dir.path()),
            route("up", "/up", &format!("http://{}", up.addr()), "")
        ),
    )
    .unwrap();
    let mut b = Binary::start(&config, &[]).await;
    let rid = "second-stop-0001";
    let conn = stalled(&b, "/up/v1/chat/completions", rid).await;

    b.signal("TERM");
    let first = b
        .wait_json(|v| message(v).starts_with("shutting down:"))
        .await;
    assert_eq!(first["in_flight"], 1, "{first}");
    assert!(
        message(&first).contains("1 requests in flight, up to 30s grace")
            && message(&first).contains("Ctrl-C again"),
        "{first}"
    );

    let second = Instant::now();
    b.signal("TERM");
    let status = b.wait_exit(Duration::from_secs(10)).await;
    let took = second.elapsed();
    assert!(status.success(), "aloud exited with {status}");
    // The grace is 30 s: only the second stop can end it this soon.
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} after the second stop"
    );
    let reply = conn.finish().await;
    assert_eq!(reply.end, End::Cut, "the client must see a cut transfer");
    let lines = b.json();
    assert!(
        lines
            .iter()
            .any(|v| message(v).starts_with("stopping now: 1 requests cut")),
        "no 'stopping now' line:\n{}",
        b.log().join("\n")
    );
    assert!(
        lines
            .iter()
            .any(|v| message(v).starts_with("capture written to the spill")),
        "{}",
        b.log().join("\n")
    );
    let access = access_lines(&lines, rid);
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(access[0]["outcome"], "shutdown", "{}", access[0]);

    // The record waits in the spill, and the next start replays it into the store.
    let spilled: String = std::fs::read_dir(dir.path().join("spill"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect();
    assert!(spilled.contains(rid), "the cut record is not in the spill");
    let mut again = Binary::start(&config, &[]).await;
    again
        .wait_json(|v| message(v) == "capture spill replayed into the store")
        .await;
    let rows = SqliteStore::open(dir.path().join("aloud.db"))
        .unwrap()
        .get(rid)
        .unwrap();
    assert_eq!(rows.len(), 1, "one record for {rid}");
    assert_eq!(rows[0].outcome, Outcome::Shutdown, "{:?}", rows[0].error);
    again.signal("TERM");
    again.wait_exit(Duration::from_secs(10)).await;
}

/// Sends one plain request to `path`; returns the status.
async fn status_of(b: &Binary, path: &str) -> u16 {
    Conn::chat(b.addr, path, "off", &[("x-mock", "json-ok")])
        .await
        .status()
}

/// Threads of `pid` whose name starts with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .filter(|comm| comm.starts_with(prefix))
        .count()
}

#[tokio::test]
async fn workers_sets_how_many_threads_serve() {
    let up = Scripted::start().await;
    let upstream = format!("http://{}", up.addr());
    for workers in [1, 3] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        // Capture off: nothing at start uses a blocking thread (tokio names those like a
        // work-stealing runtime's workers), so any `tokio-rt-` thread would be a worker.
        let toml = format!("[server]\nworkers = {workers}\n[capture]\nenabled = false\n");
        std::fs::write(&config, toml + &route("a", "/a", &upstream, "")).unwrap();
        let mut b = Binary::start(&config, &[]).await;
        let listening = b
            .json()
            .into_iter()
            .find(|v| message(v).starts_with("aloud listening"));
        assert_eq!(
            listening.unwrap()["workers"],
            workers,
            "{}",
            b.log().join("\n")
        );
        assert_eq!(status_of(&b, "/a/v1/chat/completions").await, 200);
        // The main thread serves too; each other serving thread has its own name.
        assert_eq!(
            threads_named(b.pid(), "aloud-worker-"),
            workers - 1,
            "{workers} workers"
        );
        assert_eq!(
            threads_named(b.pid(), "tokio-r"),
            0,
            "no work-stealing runtime"
        );
        b.signal("TERM");
        b.wait_exit(Duration::from_secs(10)).await;
    }
}

#[tokio::test]
async fn sighup_reloads_routes_and_a_broken_config_keeps_the_running_one() {
    let up = Scripted::start().await;
    let upstream = format!("http://{}", up.addr());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, route("a", "/a", &upstream, "")).unwrap();
    let mut b = Binary::start(&config, &[]).await;
    assert_eq!(status_of(&b, "/a/v1/chat/completions").await, 200);

    // Route A moves to /a2, route B arrives; a restart-only setting changes too.
    std::fs::write(
        &config,
        format!(
            "[server]\nmax_connections = 7\n{}{}",
            route("a", "/a2", &upstream, ""),
            route("b", "/b", &upstream, "")
        ),
    )
    .unwrap();
    let mark = b.mark();
    b.signal("HUP");
    let reloaded = b
        .wait_json_after(mark, |v| message(v) == "config reloaded")
        .await;
    assert_eq!(reloaded["routes"], 2, "{reloaded}");
    let restart = b.json();
    assert!(
        restart.iter().skip(mark).any(|v| v["key"] == "server.max_connections"
            && message(v).contains("needs a restart")),
        "{}",
        b.log().join("\n")
    );
    assert_eq!(status_of(&b, "/a2/v1/chat/completions").await, 200);
    assert_eq!(status_of(&b, "/b/v1/chat/completions").await, 200);
    assert_eq!(status_of(&b, "/a/v1/chat/completions").await, 404);

    // A config that does not parse: logged with its reason, the running one kept.
    std::fs::write(&config, "[[routes]]\nname = \"a\"\nprefix = 5\n").unwrap();
    let mark = b.mark();
    b.signal("HUP");
    let refused = b
        .wait_json_after(mark, |v| message(v).starts_with("config not reloaded"))
        .await;
    assert!(
        refused["error"].as_str().unwrap().contains("prefix"),
        "the reason names the key: {refused}"
    );
    assert_eq!(status_of(&b, "/a2/v1/chat/completions").await, 200);
    assert_eq!(status_of(&b, "/b/v1/chat/completions").await, 200);
    b.signal("TERM");
    b.wait_exit(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn an_unset_api_key_env_is_warned_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "{}{}",
            route(
                "keyless",
                "/k",
                "http://127.0.0.1:9",
                "api_key_env = \"ALOUD_TEST_UNSET_KEY\""
            ),
            route(
                "keyed",
                "/d",
                "http://127.0.0.1:9",
                "api_key_env = \"ALOUD_TEST_SET_KEY\""
            ),
        ),
    )
    .unwrap();
    let mut b = Binary::start(&config, &[("ALOUD_TEST_SET_KEY", "sk-test")]).await;
    let warned: Vec<Value> = b
        .json()
        .into_iter()
        .filter(|v| v["level"] == "WARN" && v["api_key_env"].is_string())
        .collect();
    assert_eq!(warned.len(), 1, "one line per unset variable: {warned:?}");
    assert_eq!(warned[0]["api_key_env"], "ALOUD_TEST_UNSET_KEY");
    assert_eq!(warned[0]["route"], "keyless");
    b.signal("TERM");
    b.wait_exit(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn the_access_log_and_the_capture_agree_on_how_streams_ended() {
    let up = Scripted::start().await;
    let upstream = format!("http://{}", up.addr());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nshutdown_grace = \"200ms\"\n{}{}{}",
            capture_toml(dir.path()),
            route("up", "/up", &upstream, ""),
            route("idle", "/idle", &upstream, "idle_timeout = \"300ms\"")
        ),
    )
    .unwrap();
    let mut b = Binary::start(&config, &[]).await;
    let proxied =
        |id: &'static str| move |v: &Value| v["id"] == id && message(v).starts_with("proxied");

    let gone = stalled(&b, "/up/v1/chat/completions", "agree-client-gone").await;
    drop(gone);
    b.wait_json(proxied("agree-client-gone")).await;

    let idle = stalled(&b, "/idle/v1/chat/completions", "agree-idle-timeout").await;
    b.wait_json(proxied("agree-idle-timeout")).await;
    drop(idle);

    let cut = stalled(&b, "/up/v1/chat/completions", "agree-shutdown-cut").await;
    b.signal("TERM");
    b.wait_exit(Duration::from_secs(20)).await;
    drop(cut);

    let lines = b.json();
    let store = SqliteStore::open(dir.path().join("aloud.db")).unwrap();
    for (id, outcome, end) in [
        (
            "agree-client-gone",
            Outcome::ClientDisconnected,
            "client_gone",
        ),
        ("agree-idle-timeout", Outcome::Timeout, "idle_timeout"),
        ("agree-shutdown-cut", Outcome::Shutdown, "shutdown"),
    ] {
        let access = access_lines(&lines, id);
        assert_eq!(access.len(), 1, "{id}: one access-log line: {access:?}");
        let rows = store.get(id).unwrap();
        assert_eq!(rows.len(), 1, "{id}: one record");
        assert_eq!(rows[0].outcome, outcome, "{id}: {:?}", rows[0].error);
        assert_eq!(
            access[0]["outcome"],
            outcome.as_str(),
            "{id}: {}",
            access[0]
        );
        assert_eq!(access[0]["end"], end, "{id}: {}", access[0]);
    }
}
