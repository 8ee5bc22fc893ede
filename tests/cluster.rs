//! The side channel across replicas: two aloud servers sharing a real Postgres (started by
//! `support::postgres`), a subscriber on one, the request on the other.
#![allow(
    clippy::disallowed_methods,
    reason = "test tasks are joined before the test ends"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use aloud::config::MapEnv;
use http::Request;
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use support::postgres::{self, Postgres};
use support::*;

const CHAT: &str = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
const DEADLINE: Duration = Duration::from_secs(30);

/// A replica's config: the simulator, a short wait, metrics on port 0, the cluster on `url`.
fn config(url: &str, server_extra: &str) -> String {
    format!(
        "[server]\n{server_extra}\n[admin]\nlisten = \"127.0.0.1:0\"\n[progress]\nheartbeat = \"200ms\"\nawait_request = \"3s\"\n[cluster]\nenabled = true\ndatabase = \"{url}\"\n[[routes]]\nname = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\nprogress = \"off\"\n"
    )
}

/// Two replicas on a fresh database of `pg`, both with their link up.
async fn replicas(pg: &Postgres, server_extra: &str, env: MapEnv) -> (Aloud, Aloud) {
    let url = pg.fresh_database();
    let a = Aloud::start_with_env(&config(&url, server_extra), env.clone()).await;
    let b = Aloud::start_with_env(&config(&url, server_extra), env).await;
    wait_metric(&a, "aloud_cluster_up", 1).await;
    wait_metric(&b, "aloud_cluster_up", 1).await;
    (a, b)
}

/// Polls `aloud`'s metrics until `name` reads `value`, or fails at the deadline.
async fn wait_metric(aloud: &Aloud, name: &str, value: u64) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        let text = String::from_utf8(
            body_bytes(get(&aloud.admin_url("/metrics")).await)
                .await
                .to_vec(),
        )
        .unwrap();
        let read = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<u64>().ok());
        if read == Some(value) {
            return;
        }
        last = format!("{name} = {read:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name} did not reach {value} within {DEADLINE:?}: {last}");
}

/// Reads SSE frames as (id, event, data) until the stream ends.
async fn sse(r: http::Response<hyper::body::Incoming>) -> Vec<(Option<u64>, String, Value)> {
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    parse_sse(std::str::from_utf8(&bytes).unwrap())
}

fn parse_sse(text: &str) -> Vec<(Option<u64>, String, Value)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
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

fn sim_headers<'a>(id: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    // Extras first: the simulator reads the first of a repeated header.
    let mut h = extra.to_vec();
    h.extend([
        ("content-type", "application/json"),
        ("aloud-request-id", id),
        ("x-sim-seed", "5"),
        ("x-sim-think-ms", "600"),
        ("x-sim-tokens", "3"),
        ("x-sim-token-ms", "1"),
    ]);
    h
}

fn shared_pg() -> Option<&'static Postgres> {
    postgres::shared("the side channel across replicas")
}

#[tokio::test]
async fn a_subscriber_on_one_replica_follows_a_request_served_by_the_other() {
    let Some(pg) = shared_pg() else { return };
    let (a, b) = replicas(pg, "", MapEnv::default()).await;
    let id = "cluster-follow-000001";
    // Subscribed on B before the request reaches A: B's interest is waiting on A first.
    let sub = get(&b.url(&format!("/aloud/v1/progress/{id}"))).await;
    assert_eq!(sub.status(), 200);
    let reader = tokio::spawn(sse(sub));
    wait_metric(&a, "aloud_side_channel_requests", 1).await;
    let r = post(
        &a.url("/sim/v1/chat/completions"),
        &sim_headers(id, &[]),
        CHAT,
    )
    .await;
    assert_eq!(r.status(), 200);
    body_bytes(r).await;
    let events = tokio::time::timeout(DEADLINE, reader)
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<u64> = events.iter().map(|e| e.0.unwrap()).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "id is the seq, in order"
    );
    for (seq, _, data) in &events {
        assert_eq!(data["seq"].as_u64(), *seq);
        assert_eq!(data["request_id"], id);
    }
    assert_eq!(events[0].2["phase"], "accepted", "{events:?}");
    assert!(events.iter().any(|e| e.2["phase"] == "generating"));
    assert_eq!(events.last().unwrap().1, "aloud.done");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_reconnect_to_the_other_replica_replays_the_rest_or_gets_204() {
    let Some(pg) = shared_pg() else { return };
    let (a, b) = replicas(pg, "", MapEnv::default()).await;
    let id = "cluster-replay-000001";
    // Watched on A, where it is served; B has never seen the id.
    let sub = get(&a.url(&format!("/aloud/v1/progress/{id}"))).await;
    let reader = tokio::spawn(sse(sub));
    let r = post(
        &a.url("/sim/v1/chat/completions"),
        &sim_headers(id, &[]),
        CHAT,
    )
    .await;
    body_bytes(r).await;
    let events = reader.await.unwrap();
    let last = events.last().unwrap().0.unwrap();
    assert!(last > 3, "{events:?}");
    let reconnect = |after: u64| {
        send(
            Request::get(b.url(&format!("/aloud/v1/progress/{id}")))
                .header("last-event-id", after.to_string())
                .body(full(""))
                .unwrap(),
        )
    };
    assert_eq!(
        reconnect(last).await.status(),
        204,
        "nothing left, on B too"
    );
    let replayed = sse(reconnect(last - 2).await).await;
    assert_eq!(
        replayed.iter().map(|e| e.0.unwrap()).collect::<Vec<_>>(),
        vec![last - 1, last]
    );
    assert_eq!(replayed, events[events.len() - 2..]);
    // An id no replica knows is still answered 204 (after the others had their say).
    let unknown = send(
        Request::get(b.url("/aloud/v1/progress/cluster-nobody-00001"))
            .header("last-event-id", "4")
            .body(full(""))
            .unwrap(),
    )
    .await;
    assert_eq!(unknown.status(), 204);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_token_sees_only_its_own_requests_on_every_replica() {
    let Some(pg) = shared_pg() else { return };
    let env = MapEnv::default().with(
        "TOKENS",
        "token-one-0123456789abcdef,token-two-0123456789abcdef",
    );
    let (a, b) = replicas(pg, "client_tokens_env = \"TOKENS\"", env).await;
    let id = "cluster-tokens-000001";
    let url = |t: &str| b.url(&format!("/aloud/v1/progress/{id}?access_token={t}"));
    let mine = tokio::spawn(sse(get(&url("token-one-0123456789abcdef")).await));
    let theirs = tokio::spawn(sse(get(&url("token-two-0123456789abcdef")).await));
    wait_metric(&a, "aloud_side_channel_requests", 1).await;
    let r = post(
        &a.url("/sim/v1/chat/completions"),
        &sim_headers(id, &[("aloud-token", "token-one-0123456789abcdef")]),
        CHAT,
    )
    .await;
    assert_eq!(r.status(), 200);
    body_bytes(r).await;
    let mine = mine.await.unwrap();
    assert_eq!(mine.last().unwrap().1, "aloud.done");
    let theirs = theirs.await.unwrap();
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert_eq!(
        theirs[0].1, "aloud.error",
        "another token's request never arrives"
    );
    assert_eq!(theirs[0].2["status"], 404);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn an_event_larger_than_a_notify_payload_arrives_whole() {
    let Some(pg) = shared_pg() else { return };
    let (a, b) = replicas(pg, "", MapEnv::default()).await;
    let id = "cluster-large-0000001";
    let sub = get(&b.url(&format!("/aloud/v1/progress/{id}"))).await;
    let reader = tokio::spawn(sse(sub));
    wait_metric(&a, "aloud_side_channel_requests", 1).await;
    // A whole (non-streaming) answer of ~40 KB, in the events tier: `aloud.result` carries it.
    let body = r#"{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = post(
        &a.url("/sim/v1/chat/completions"),
        &sim_headers(
            id,
            &[
                ("aloud-progress", "events"),
                ("x-sim-tokens", "6000"),
                ("x-sim-token-ms", "0"),
            ],
        ),
        body,
    )
    .await;
    assert_eq!(r.status(), 200);
    let client_bytes = body_bytes(r).await;
    let client = parse_sse(std::str::from_utf8(&client_bytes).unwrap());
    let result = client
        .iter()
        .find(|e| e.1 == "aloud.result")
        .expect("a result event");
    let size = result.2.to_string().len();
    assert!(size > 20_000, "the result is {size} bytes");
    let events = tokio::time::timeout(DEADLINE, reader)
        .await
        .unwrap()
        .unwrap();
    let remote = events
        .iter()
        .find(|e| e.1 == "aloud.result")
        .expect("the result, on B");
    let (r, c) = (remote.2.to_string(), result.2.to_string());
    let at = r.bytes().zip(c.bytes()).take_while(|(x, y)| x == y).count();
    assert!(
        remote.1 == result.1 && remote.2 == result.2,
        "B's result differs from the client's at byte {at} of {}/{}: {:?} / {:?}; ids {:?} {:?}",
        r.len(),
        c.len(),
        &r[at.saturating_sub(40)..(at + 40).min(r.len())],
        &c[at.saturating_sub(40)..(at + 40).min(c.len())],
        remote.0,
        result.0
    );
    // The client's events-tier stream has no `id:` lines; the side channel's has the seq.
    assert_eq!(remote.0, result.2["seq"].as_u64());
    a.stop().await;
    b.stop().await;
}

/// Log lines of every test in this binary (only the Postgres-stopping test looks for its own).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Writer(Arc::clone(&sink)))
            .try_init();
        buf
    })
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged(text: &str) -> bool {
    String::from_utf8_lossy(&logs().lock().unwrap()).contains(text)
}

#[tokio::test]
async fn without_postgres_local_subscribers_still_work_and_the_link_recovers() {
    logs();
    let Some(pg) = postgres::start("the cluster link's recovery") else {
        return;
    };
    let (a, b) = replicas(&pg, "", MapEnv::default()).await;
    pg.stop();
    wait_metric(&a, "aloud_cluster_up", 0).await;
    wait_metric(&b, "aloud_cluster_up", 0).await;
    assert!(logged("cluster: Postgres unreachable"));
    // A local subscriber follows a local request as if there were no cluster.
    let id = "cluster-degraded-00001";
    let reader = tokio::spawn(sse(get(&a.url(&format!("/aloud/v1/progress/{id}"))).await));
    let r = post(
        &a.url("/sim/v1/chat/completions"),
        &sim_headers(id, &[]),
        CHAT,
    )
    .await;
    assert_eq!(r.status(), 200);
    body_bytes(r).await;
    let events = reader.await.unwrap();
    assert_eq!(events[0].2["phase"], "accepted");
    assert_eq!(events.last().unwrap().1, "aloud.done");
    // Back: both links reconnect by themselves, and B follows A's requests again.
    pg.start();
    wait_metric(&a, "aloud_cluster_up", 1).await;
    wait_metric(&b, "aloud_cluster_up", 1).await;
    assert!(logged("cluster: Postgres reachable again"));
    let id = "cluster-recovered-0001";
    let reader = tokio::spawn(sse(get(&b.url(&format!("/aloud/v1/progress/{id}"))).await));
    wait_metric(&a, "aloud_side_channel_requests", 2).await;
    let r = post(
        &a.url("/sim/v1/chat/completions"),
        &sim_headers(id, &[]),
        CHAT,
    )
    .await;
    body_bytes(r).await;
    let events = tokio::time::timeout(DEADLINE, reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(events[0].2["phase"], "accepted");
    assert_eq!(events.last().unwrap().1, "aloud.done");
    a.stop().await;
    b.stop().await;
}
