//! Client tokens over real sockets: the side channel and the beacons need one, a token sees only
//! the requests made with it (others look unknown), ownership outlives the hub (the store), and
//! a token never reaches the upstream whatever header it came in.
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

use aloud::capture::sink::WriterSink;
use aloud::capture::{CaptureSink, CaptureWriter, WriterConfig};
use aloud::config::MapEnv;
use aloud::store::{SqliteStore, Store};
use http::Request;
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use support::*;

const ALICE: &str = "alice-token-5b1f0c9e7a2d4863";
const BOB: &str = "bob-token-0e4d2a7c9f1b3856";
const SIM: &str = "[server]\nclient_tokens_env = \"TOKENS\"\n[progress]\nheartbeat = \"100ms\"\nawait_request = \"300ms\"\n[[routes]]\nname = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\nprogress = \"off\"\n";
const CHAT: &str = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

fn env() -> MapEnv {
    MapEnv::default().with("TOKENS", &format!("{ALICE},{BOB}"))
}

/// Reads SSE frames as (event, data) until the stream ends.
async fn sse(r: http::Response<hyper::body::Incoming>) -> Vec<(String, Value)> {
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut name, mut data) = (String::from("message"), None);
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                name = v.to_owned();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(v).unwrap());
            }
        }
        if let Some(d) = data {
            out.push((name, d));
        }
    }
    out
}

async fn get_with(url: &str, headers: &[(&str, &str)]) -> http::Response<hyper::body::Incoming> {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(full("")).unwrap()).await
}

/// Alice's request through the simulator (thinking long enough to publish progress).
async fn alice_request(aloud: &Aloud, id: &str) {
    request_as(aloud, ALICE, id).await;
}

/// A request with `token` through the simulator.
async fn request_as(aloud: &Aloud, token: &str, id: &str) {
    let auth = format!("Bearer {token}");
    let r = post(
        &aloud.url("/sim/v1/chat/completions"),
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
            ("aloud-request-id", id),
            ("x-sim-seed", "5"),
            ("x-sim-think-ms", "400"),
            ("x-sim-tokens", "3"),
            ("x-sim-token-ms", "1"),
        ],
        CHAT,
    )
    .await;
    assert_eq!(r.status(), 200);
    body_bytes(r).await;
}

/// What a subscriber sees for an id: the event names, with `request_id` blanked so answers for
/// different ids compare.
fn shape(events: &[(String, Value)]) -> Vec<(String, Value)> {
    events
        .iter()
        .map(|(n, d)| {
            let mut d = d.clone();
            d["request_id"] = Value::Null;
            (n.clone(), d)
        })
        .collect()
}

#[tokio::test]
async fn the_side_channel_needs_a_token_and_shows_only_the_owners_requests() {
    let aloud = Aloud::start_with_env(SIM, env()).await;
    let id = "tokens-side-channel-0001";
    let url = aloud.url(&format!("/aloud/v1/progress/{id}"));

    // Anonymous, or a token aloud does not know: 401 in aloud's error shape.
    for headers in [vec![], vec![("aloud-token", "nope-nope-nope")]] {
        let r = get_with(&url, &headers).await;
        assert_eq!(r.status(), 401);
        let body = body_json(r).await;
        assert_eq!(body["error"]["type"], "authentication_error", "{body}");
    }
    let r = get(&format!("{url}?access_token=nope-nope-nope")).await;
    assert_eq!(r.status(), 401);

    // Alice by header and by access_token, Bob by both: all before the request arrives.
    let alice_h = get_with(&url, &[("aloud-token", ALICE)]).await;
    let alice_q = get(&format!("{url}?access_token={ALICE}")).await;
    let bob_h = get_with(&url, &[("authorization", &format!("Bearer {BOB}"))]).await;
    let bob_q = get(&format!("{url}?access_token={BOB}")).await;
    // Bob on an id nobody uses: what "unknown" looks like.
    let unknown = get(&aloud.url(&format!(
        "/aloud/v1/progress/tokens-never-used-0001?access_token={BOB}"
    )))
    .await;
    for r in [&alice_h, &alice_q, &bob_h, &bob_q, &unknown] {
        assert_eq!(r.status(), 200);
    }
    let readers: Vec<_> = [alice_h, alice_q, bob_h, bob_q, unknown]
        .into_iter()
        .map(|r| tokio::spawn(sse(r)))
        .collect();
    alice_request(&aloud, id).await;
    let mut seen = Vec::new();
    for r in readers {
        seen.push(r.await.unwrap());
    }
    for alice in &seen[..2] {
        assert!(
            alice.iter().any(|(n, _)| n == "aloud.progress"),
            "{alice:?}"
        );
        assert_eq!(alice.last().unwrap().0, "aloud.done", "{alice:?}");
    }
    for bob in &seen[2..4] {
        assert_eq!(
            shape(bob),
            shape(&seen[4]),
            "Bob sees Alice's id as unknown"
        );
        assert_eq!(bob.len(), 1);
        assert_eq!(bob[0].1["status"], 404);
    }

    // After the request: Alice replays it, Bob's reconnect is answered as for an unknown id.
    let replay = sse(get(&format!("{url}?access_token={ALICE}&after=0")).await).await;
    assert_eq!(replay.last().unwrap().0, "aloud.done");
    let bob = get_with(
        &format!("{url}?access_token={BOB}"),
        &[("last-event-id", "0")],
    )
    .await;
    assert_eq!(bob.status(), 204);
    aloud.stop().await;
}

/// A writer into a real SQLite file, and a sink over it as `aloud serve` builds one.
fn capture(dir: &std::path::Path) -> (CaptureWriter, Arc<dyn CaptureSink>) {
    let db = dir.join("aloud.db");
    let open = db.clone();
    let writer = CaptureWriter::start(WriterConfig::with_spill_dir(dir.join("spill")), move || {
        SqliteStore::open(&open)
    })
    .unwrap();
    let sink = Arc::new(WriterSink::new(writer.clone(), db));
    (writer, sink)
}

async fn beacon(aloud: &Aloud, id: &str, query: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    let mut h = vec![("content-type", "text/plain")];
    h.extend_from_slice(headers);
    let r = post(
        &aloud.url(&format!("/aloud/v1/requests/{id}/feedback{query}")),
        &h,
        body.to_owned(),
    )
    .await;
    let status = r.status().as_u16();
    body_bytes(r).await;
    status
}

#[tokio::test]
async fn beacons_need_the_owners_token_and_never_overwrite_anothers_feedback() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, sink) = capture(dir.path());
    let aloud = Aloud::start_with_sink(SIM, env(), Some(Arc::clone(&sink))).await;
    let id = "tokens-beacon-request-01";
    alice_request(&aloud, id).await;

    let fb = r#"{"score": 1, "label": "alice"}"#;
    assert_eq!(beacon(&aloud, id, "", &[], fb).await, 401);
    let bob_h = [("aloud-token", BOB)];
    let unknown = beacon(&aloud, "tokens-never-used-0002", "", &bob_h, fb).await;
    assert_eq!(unknown, 404);
    assert_eq!(
        beacon(&aloud, id, "", &bob_h, fb).await,
        unknown,
        "as unknown"
    );
    assert_eq!(
        beacon(&aloud, id, "", &[("aloud-token", ALICE)], fb).await,
        204
    );
    let q = format!("?access_token={ALICE}");
    assert_eq!(
        beacon(&aloud, id, &q, &[], r#"{"score": 0.5, "label": "alice"}"#).await,
        204
    );
    let bob = r#"{"score": 0, "label": "bob"}"#;
    assert_eq!(
        beacon(&aloud, id, &format!("?access_token={BOB}"), &[], bob).await,
        404
    );
    aloud.stop().await;
    writer.flush().await;

    // A fresh aloud on the same database (its hub knows nothing): ownership comes from the store.
    let aloud = Aloud::start_with_sink(SIM, env(), Some(Arc::clone(&sink))).await;
    assert_eq!(beacon(&aloud, id, "", &bob_h, bob).await, 404);
    let auth = format!("Bearer {BOB}");
    assert_eq!(
        beacon(&aloud, id, "", &[("authorization", &auth)], bob).await,
        404
    );
    assert_eq!(beacon(&aloud, id, "", &[], bob).await, 401);
    let fb = r#"{"score": 0.75, "label": "alice"}"#;
    assert_eq!(beacon(&aloud, id, &q, &[], fb).await, 204);
    aloud.stop().await;
    drop(sink);
    writer.flush().await;

    let store = SqliteStore::open(dir.path().join("aloud.db")).unwrap();
    let alice = aloud::config::tokens::find(ALICE, &[ALICE.to_owned()]);
    assert!(alice.is_some());
    let row = store.feedback(id, alice).unwrap().unwrap();
    assert_eq!(
        (row.score, row.label.as_deref()),
        (Some(0.75), Some("alice"))
    );
    assert_eq!(row.owner, alice);
    let bob = aloud::config::tokens::find(BOB, &[BOB.to_owned()]);
    assert_eq!(store.feedback(id, bob).unwrap(), None);
    assert_eq!(store.feedback(id, None).unwrap(), None);
    let records = store.get(id).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].owner, alice,
        "the record carries the fingerprint"
    );
    assert!(store.exists_for(id, alice).unwrap());
    writer.close().await;
}

#[tokio::test]
async fn a_client_token_in_several_credential_headers_reaches_the_upstream_in_none() {
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let record = Arc::clone(&seen);
    let up = Upstream::start(move |req| {
        let record = Arc::clone(&record);
        async move {
            *record.lock().unwrap() = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            response(200, &[("content-type", "application/json")], full("{}"))
        }
    })
    .await;
    let toml = route_config(
        up.addr,
        "openai",
        "api_key_env = \"UP_KEY\"",
        "client_tokens_env = \"TOKENS\"",
    );
    let aloud = Aloud::start_with_env(&toml, env().with("UP_KEY", "sk-route-key")).await;
    let bearer = format!("Bearer {ALICE}");
    let tabbed = format!("bearer\t{ALICE}");
    let cookie = format!("theme=dark; t={ALICE}");
    let cases: [&[(&str, &str)]; 5] = [
        &[("aloud-token", ALICE), ("authorization", &bearer)],
        // A tab after the scheme is still a bearer credential (and the token is found in it).
        &[("authorization", &tabbed)],
        // Anywhere else, in a header no credential reader looks at, it is scrubbed all the same.
        &[("aloud-token", ALICE), ("cookie", &cookie)],
        &[("authorization", &bearer), ("x-api-key", ALICE)],
        &[
            ("x-goog-api-key", BOB),
            ("api-key", ALICE),
            ("aloud-token", ALICE),
        ],
    ];
    for headers in cases {
        let r = post(&aloud.url("/up/v1/chat/completions"), headers, "{}").await;
        assert_eq!(r.status(), 200, "{headers:?}");
        body_bytes(r).await;
        let got = seen.lock().unwrap().clone();
        for (k, v) in &got {
            assert!(
                !v.contains(ALICE) && !v.contains(BOB),
                "{headers:?}: the token went upstream in {k}"
            );
        }
        // The client's token was aloud's, so the route's own key is used.
        assert!(
            got.iter()
                .any(|(k, v)| k == "authorization" && v == "Bearer sk-route-key"),
            "{headers:?}: {got:?}"
        );
    }
    aloud.stop().await;
}

#[tokio::test]
async fn a_client_token_sent_as_geminis_key_parameter_never_reaches_the_upstream() {
    let seen: Arc<Mutex<Option<String>>> = Arc::default();
    let record = Arc::clone(&seen);
    let up = Upstream::start(move |req| {
        let record = Arc::clone(&record);
        async move {
            *record.lock().unwrap() = Some(req.uri().to_string());
            response(200, &[("content-type", "application/json")], full("{}"))
        }
    })
    .await;
    let toml = route_config(
        up.addr,
        "gemini",
        "api_key_env = \"UP_KEY\"",
        "client_tokens_env = \"TOKENS\"",
    );
    let aloud = Aloud::start_with_env(&toml, env().with("UP_KEY", "gm-route-key")).await;
    let path = format!("/up/v1beta/models/g:generateContent?alt=json&key={ALICE}");
    let r = post(&aloud.url(&path), &[], "{}").await;
    assert_eq!(r.status(), 200);
    body_bytes(r).await;
    let uri = seen.lock().unwrap().clone().unwrap();
    assert!(!uri.contains(ALICE), "the token went upstream in {uri}");
    assert!(
        uri.contains("alt=json"),
        "the rest of the query stays: {uri}"
    );
    // Authenticated by a header, the token in any other parameter is scrubbed too.
    let path = format!(
        "/up/v1beta/models/g:generateContent?alt=json&KEY={ALICE}&access_token={ALICE}&%6Bey={ALICE}"
    );
    let r = post(&aloud.url(&path), &[("aloud-token", ALICE)], "{}").await;
    assert_eq!(r.status(), 200);
    body_bytes(r).await;
    let uri = seen.lock().unwrap().clone().unwrap();
    assert!(!uri.contains(ALICE), "the token went upstream in {uri}");
    assert!(uri.contains("alt=json"), "{uri}");
    // Without any token, the same call is refused.
    let r = post(
        &aloud.url("/up/v1beta/models/g:generateContent?key=nope"),
        &[],
        "{}",
    )
    .await;
    assert_eq!(r.status(), 401);
    aloud.stop().await;
}

#[tokio::test]
async fn requests_without_a_token_are_never_captured() {
    let sink = Arc::new(MemorySink::default());
    let aloud = Aloud::start_with_sink(SIM, env(), Some(sink.clone())).await;
    // Anonymous requests with long paths: each one captured would be a row anyone could add.
    let long = format!("/sim/v1/{}", "a".repeat(20_000));
    for (i, token) in ["", "nope-nope-nope"].into_iter().enumerate() {
        let id = format!("tokens-anonymous-{i:04}");
        let r = post(
            &aloud.url(&long),
            &[("aloud-token", token), ("aloud-request-id", &id)],
            CHAT,
        )
        .await;
        assert_eq!(r.status(), 401, "{id}");
        body_bytes(r).await;
    }
    // A request with a token is captured.
    alice_request(&aloud, "tokens-captured-0001").await;
    sink.wait_for("tokens-captured-0001").await;
    let ids: Vec<String> = sink
        .records
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(ids, ["tokens-captured-0001"]);
    aloud.stop().await;
}

#[tokio::test]
async fn a_reused_id_keeps_each_tokens_feedback_on_its_own_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, sink) = capture(dir.path());
    let aloud = Aloud::start_with_sink(SIM, env(), Some(Arc::clone(&sink))).await;
    let id = "tokens-reused-id-000001";
    // Alice's request finishes; Bob then uses the same id: his own attempt (2).
    request_as(&aloud, ALICE, id).await;
    request_as(&aloud, BOB, id).await;
    // Bob speaks first, then Alice: each is accepted, and neither replaces the other.
    let bob = [("aloud-token", BOB)];
    let alice = [("aloud-token", ALICE)];
    let said = |label: &str| format!(r#"{{"score": 1, "label": "{label}"}}"#);
    assert_eq!(beacon(&aloud, id, "", &bob, &said("bob-says")).await, 204);
    assert_eq!(
        beacon(&aloud, id, "", &alice, &said("alice-says")).await,
        204
    );
    aloud.stop().await;
    drop(sink);
    writer.close().await;
    // The CLI's export joins each record to its own owner's feedback, and filters by it.
    let db = dir.path().join("aloud.db");
    // (attempt, feedback_label) of each row.
    let export = |extra: &[&str]| -> Vec<(String, String)> {
        support::csv_export::csv_rows(&db, extra)
            .into_iter()
            .map(|f| {
                assert_eq!(f[0], id, "{f:?}");
                (f[1].clone(), f[f.len() - 1].clone())
            })
            .collect()
    };
    let pair = |a: &str, l: &str| (a.to_owned(), l.to_owned());
    assert_eq!(
        export(&[]),
        [pair("1", "alice-says"), pair("2", "bob-says")]
    );
    assert_eq!(export(&["--label", "bob-says"]), [pair("2", "bob-says")]);
    assert_eq!(
        export(&["--label", "alice-says"]),
        [pair("1", "alice-says")]
    );
}

#[tokio::test]
async fn a_path_no_route_matches_names_no_routes_when_tokens_are_set() {
    let aloud = Aloud::start_with_env(SIM, env()).await;
    let r = get(&aloud.url("/secret-route-probe")).await;
    assert_eq!(r.status(), 404);
    let body = body_json(r).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("/secret-route-probe"), "{message}");
    assert!(!message.contains("/sim"), "the layout leaks: {message}");
    aloud.stop().await;
}
