//! Truthful failure as official SDKs see it (issue 7, Deliver 2): openai-python,
//! anthropic-python and openai-node stream from a mock upstream that resets mid-stream; each
//! must raise through aloud where it raises directly (same item count, same verdict, and the
//! same exception class when aloud passed the upstream's head on). Covers the head passed
//! through (off and comments tiers) and the comments tier's early commit followed by a failure.
//!
//! Needs `ALOUD_TEST_PYTHON` and `ALOUD_TEST_CLIENTS` as tests/sdk_clients.rs does; without
//! them these tests skip, unless `ALOUD_REQUIRE_CLIENTS=1`, when they fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use support::clients::{Clients, RUN_TIMEOUT, clients};

use serde_json::Value;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use support::scripted::{SSE_HEAD, chunk, read_request, wait_closed};
use support::{Aloud, Upstream};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// aloud's `[progress] hold` here, and how long a `late-*` upstream waits before its head: the
/// hold running out is what these cases test, so letting it elapse is the point.
const HOLD: &str = "200ms";
const LATE: Duration = Duration::from_millis(700);

/// A client script, its scenario, and the route (api) it speaks.
#[derive(Clone, Copy, Debug)]
struct Script {
    file: &'static str,
    scenario: &'static str,
    api: &'static str,
    /// What follows the host (and aloud's prefix) in the SDK's base URL.
    base_path: &'static str,
}

const SCRIPTS: [Script; 3] = [
    Script {
        file: "openai_py.py",
        scenario: "chat_stream_raises",
        api: "openai",
        base_path: "/v1",
    },
    Script {
        file: "anthropic_py.py",
        scenario: "messages_stream_raises",
        api: "anthropic",
        base_path: "",
    },
    Script {
        file: "openai_node.mjs",
        scenario: "chat_stream_raises",
        api: "openai",
        base_path: "/v1",
    },
];

const OPENAI_EVENTS: [&str; 3] = [
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"o-sim\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"o-sim\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"o-sim\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":null}]}\n\n",
];

const ANTHROPIC_EVENTS: [&str; 3] = [
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sim\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n",
];

/// The mock upstream's behaviour, from the request's `x-mock` header:
/// - `reset`: head and three events at once, then a reset on go;
/// - `late-reset`: the same after `LATE` (past aloud's hold);
/// - `late-reset-before-head`: a reset after `LATE`, with no head at all.
async fn mock(go: Arc<Semaphore>) -> Upstream {
    Upstream::raw(move |s| serve_mock(s, Arc::clone(&go))).await
}

async fn serve_mock(mut s: TcpStream, go: Arc<Semaphore>) {
    let Some(head) = read_request(&mut s).await else {
        return;
    };
    let mode = head
        .lines()
        .find_map(|l| l.strip_prefix("x-mock:"))
        .map_or("reset", str::trim)
        .to_owned();
    let events = if head.lines().next().unwrap_or("").contains("/messages") {
        ANTHROPIC_EVENTS
    } else {
        OPENAI_EVENTS
    };
    if mode.starts_with("late-") {
        tokio::time::sleep(LATE).await;
    }
    if mode != "late-reset-before-head" {
        let mut out = SSE_HEAD.as_bytes().to_vec();
        for e in events {
            out.extend(chunk(e.as_bytes()));
        }
        if s.write_all(&out).await.is_err() {
            return;
        }
        // The client reported every item: now fail.
        tokio::select! {
            permit = go.acquire() => permit.unwrap().forget(),
            () = wait_closed(&mut s) => return,
        }
    }
    let _ = s.set_zero_linger();
}

/// Runs `script` against `base_url` with `headers`; gives the mock its go once the SDK
/// reported `items` items (0: no go needed). Returns the script's JSON document.
async fn run(
    clients: &Clients,
    script: Script,
    base_url: &str,
    headers: &[&str],
    go: &Semaphore,
    items: usize,
) -> Value {
    let path = clients.dir.join(script.file);
    let mut cmd = if script.file.ends_with(".py") {
        tokio::process::Command::new(&clients.python)
    } else {
        tokio::process::Command::new("node")
    };
    cmd.arg(&path)
        .arg("--base-url")
        .arg(base_url)
        .arg(script.scenario)
        .current_dir(&clients.dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for h in headers {
        cmd.arg("--header").arg(h);
    }
    let what = format!(
        "{} {} --base-url {base_url} {headers:?}",
        script.file, script.scenario
    );
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let announced = format!("aloud-test item {items}");
    let watch = async {
        let mut lines = BufReader::new(stderr).lines();
        let mut log = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if items > 0 && line == announced {
                go.add_permits(1);
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    };
    let read = async {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out).await;
        out
    };
    let Ok((log, out)) =
        tokio::time::timeout(RUN_TIMEOUT, async { tokio::join!(watch, read) }).await
    else {
        panic!("{what}: no answer within {RUN_TIMEOUT:?}");
    };
    let status = child.wait().await.unwrap();
    assert!(
        status.success(),
        "{what}: {status}\n--- stderr\n{log}\n--- stdout\n{out}"
    );
    let doc: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e}):\n{out}\n--- stderr\n{log}"));
    eprintln!("{what}: {doc}");
    doc
}

/// Where a document says the SDK stopped: (raised, items, exception class).
///
/// httpx (under both Python SDKs that surface it) names a connection that ends mid-body
/// `ReadError` when the last segment was a reset and `RemoteProtocolError` when it was a close
/// without the terminating chunk. Which of the two a proxy's cut produces depends on TCP details
/// it cannot always mirror, so both count as one class here; every other class is compared as is.
fn verdict(doc: &Value) -> (bool, u64, String) {
    let class = match doc["class"].as_str().unwrap_or("") {
        "ReadError" | "RemoteProtocolError" => "ReadError|RemoteProtocolError",
        other => other,
    };
    (
        doc["raised"].as_bool().unwrap(),
        doc["items"].as_u64().unwrap(),
        class.to_owned(),
    )
}

/// Each script, directly and through aloud with `tier`, against the mock in `mode`.
async fn compare(mode: &str, tier: &str, items: usize, same_class: bool) {
    let Some(clients) = clients("SDK failure tests") else {
        return;
    };
    let go = Arc::new(Semaphore::new(0));
    let up = mock(Arc::clone(&go)).await;
    let toml = format!(
        "[progress]\nhold = \"{HOLD}\"\n\
         [[routes]]\nname = \"openai\"\nprefix = \"/openai\"\nupstream = \"http://{up}\"\napi = \"openai\"\n\
         [[routes]]\nname = \"anthropic\"\nprefix = \"/anthropic\"\nupstream = \"http://{up}\"\napi = \"anthropic\"\n",
        up = up.addr
    );
    let aloud = Aloud::start(&toml).await;
    let mut wrong = Vec::new();
    for script in SCRIPTS {
        let mock_header = format!("x-mock={mode}");
        let tier_header = format!("aloud-progress={tier}");
        let direct_url = format!("http://{}{}", up.addr, script.base_path);
        let direct = run(&clients, script, &direct_url, &[&mock_header], &go, items).await;
        let direct = verdict(&direct);
        assert!(direct.0, "{}: directly, the SDK did not raise", script.file);
        let aloud_url = format!("http://{}/{}{}", aloud.addr, script.api, script.base_path);
        let through = run(
            &clients,
            script,
            &aloud_url,
            &[&mock_header, &tier_header],
            &go,
            items,
        )
        .await;
        let through = verdict(&through);
        let same = direct.0 == through.0
            && direct.1 == through.1
            && (!same_class || direct.2 == through.2);
        if !same {
            wrong.push(format!(
                "{} ({tier} tier, {mode}): directly (raised, items, class) = {direct:?}, \
                 through aloud {through:?}",
                script.file
            ));
        }
    }
    aloud.stop().await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn sdks_raise_through_aloud_when_the_upstream_resets_after_its_head_off_tier() {
    compare("reset", "off", 3, true).await;
}

#[tokio::test]
async fn sdks_raise_through_aloud_when_the_upstream_resets_after_its_head_comments_tier() {
    compare("reset", "comments", 3, true).await;
}

/// After an early commit aloud may end with the stream's own error event instead of a cut, so
/// the exception class may differ; that and where the SDK raises may not.
#[tokio::test]
async fn sdks_raise_through_aloud_when_the_upstream_resets_mid_body_after_an_early_commit() {
    compare("late-reset", "comments", 3, false).await;
}

/// The same early commit, then a reset before the upstream sent any head.
#[tokio::test]
async fn sdks_raise_through_aloud_when_the_upstream_resets_before_its_head_after_an_early_commit() {
    compare("late-reset-before-head", "comments", 0, false).await;
}
