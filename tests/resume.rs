//! `on_disconnect = "finish"`: a client that leaves does not stop the upstream; the kept answer
//! is resumed with `/stream?after=N` and `/result`, token-scoped, bounded, recorded, and cut at
//! shutdown. `cancel` stays the default.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use aloud::capture::Outcome;
use aloud::config::MapEnv;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::sync::{Arc, Mutex};
use support::*;
use tokio::sync::mpsc;

const FINISH: &str = "progress = \"off\"\non_disconnect = \"finish\"";

/// An upstream whose one streamed answer is fed through the returned sender.
async fn fed_upstream() -> (Upstream, mpsc::Sender<Bytes>) {
    let (tx, body) = channel_body();
    let body = Mutex::new(Some(body));
    let up = Upstream::start(move |_req| {
        let b = body.lock().unwrap().take().unwrap_or_else(|| full(""));
        async move { response(200, &[("content-type", "text/event-stream")], b) }
    })
    .await;
    (up, tx)
}

async fn start(up: &Upstream, route: &str, server: &str, env: MapEnv) -> (Aloud, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::default());
    let toml = route_config(up.addr, "openai", route, server);
    let aloud = Aloud::start_with_sink(&toml, env, Some(sink.clone())).await;
    (aloud, sink)
}

/// Posts with `id`, reads up to the first event, and leaves (the connection closes).
async fn post_and_leave(
    aloud: &Aloud,
    id: &str,
    headers: &[(&str, &str)],
    tx: &mpsc::Sender<Bytes>,
) {
    let mut all = vec![("aloud-request-id", id)];
    all.extend_from_slice(headers);
    let r = post(
        &aloud.url("/up/v1/chat/completions"),
        &all,
        "{\"stream\":true}",
    )
    .await;
    assert_eq!(r.status(), 200);
    tx.send(Bytes::from_static(b"data: 1\n\n")).await.unwrap();
    let mut body = r.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "data: 1\n\n");
    drop(body);
}

async fn get_with(url: &str, headers: &[(&str, &str)]) -> http::Response<hyper::body::Incoming> {
    let mut b = http::Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(full("")).unwrap()).await
}

#[tokio::test]
async fn a_client_that_leaves_lets_the_upstream_finish_and_a_resume_gets_the_exact_bytes() {
    let (up, tx) = fed_upstream().await;
    let (aloud, sink) = start(&up, FINISH, "", MapEnv::default()).await;
    post_and_leave(&aloud, "resume-a-00000000", &[], &tx).await;
    // aloud learns the client left when it writes the next event.
    tx.send(Bytes::from_static(b": keep-alive\n\ndata: 2\n\n"))
        .await
        .unwrap();
    // Live: after event 1, the rest as it comes.
    let live = get_with(
        &aloud.url("/aloud/v1/requests/resume-a-00000000/stream?after=1"),
        &[],
    )
    .await;
    assert_eq!(live.status(), 200);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    tx.send(Bytes::from_static(b"data: 3\n\ndata: [DONE]\n\n"))
        .await
        .unwrap();
    drop(tx);
    let (rest, clean) = read_to_end(live).await;
    assert!(clean);
    assert_eq!(
        rest,
        b": keep-alive\n\ndata: 2\n\ndata: 3\n\ndata: [DONE]\n\n"
    );
    let whole = get_with(
        &aloud.url("/aloud/v1/requests/resume-a-00000000/result"),
        &[],
    )
    .await;
    assert_eq!(whole.status(), 200);
    assert_eq!(
        body_bytes(whole).await,
        "data: 1\n\n: keep-alive\n\ndata: 2\n\ndata: 3\n\ndata: [DONE]\n\n"
    );
    let after3 = get_with(
        &aloud.url("/aloud/v1/requests/resume-a-00000000/stream?after=3"),
        &[],
    )
    .await;
    assert_eq!(body_bytes(after3).await, "data: [DONE]\n\n");
    let past = get_with(
        &aloud.url("/aloud/v1/requests/resume-a-00000000/stream?after=5"),
        &[],
    )
    .await;
    assert_eq!(past.status(), 416);
    assert_eq!(past.headers()["aloud-error-code"], "after_past_end");

    let record = sink.wait_for("resume-a-00000000").await;
    assert_eq!(record.outcome, Outcome::Ok, "{record:?}");
    let d = record.disconnect.expect("the disconnect is recorded");
    let (left, done) = (d.client_left_ms.unwrap(), d.upstream_done_ms.unwrap());
    assert!(left <= done, "{left} {done}");
    assert_eq!(d.resumes.len(), 1, "the live resume started before the end");
    assert_eq!(d.resumes[0].after, 1);
    aloud.stop().await;
}

#[tokio::test]
async fn cancel_stays_the_default_and_a_request_cannot_raise_it() {
    let (up, tx) = fed_upstream().await;
    let (aloud, sink) = start(&up, "progress = \"off\"", "", MapEnv::default()).await;
    let refused = post(
        &aloud.url("/up/v1/chat/completions"),
        &[("aloud-on-disconnect", "finish")],
        "{}",
    )
    .await;
    assert_eq!(refused.status(), 400);
    assert_eq!(
        refused.headers()["aloud-error-code"],
        "on_disconnect_not_allowed"
    );
    post_and_leave(&aloud, "cancel-a-00000000", &[], &tx).await;
    let record = sink.wait_for("cancel-a-00000000").await;
    assert_eq!(record.outcome, Outcome::ClientDisconnected);
    assert!(record.disconnect.is_none());
    let r = get_with(
        &aloud.url("/aloud/v1/requests/cancel-a-00000000/result"),
        &[],
    )
    .await;
    assert_eq!(r.status(), 404);
    aloud.stop().await;
}

#[tokio::test]
async fn a_request_may_lower_finish_to_cancel() {
    let (up, tx) = fed_upstream().await;
    let (aloud, sink) = start(&up, FINISH, "", MapEnv::default()).await;
    post_and_leave(
        &aloud,
        "lowered-000000000",
        &[("aloud-on-disconnect", "cancel")],
        &tx,
    )
    .await;
    let record = sink.wait_for("lowered-000000000").await;
    assert_eq!(record.outcome, Outcome::ClientDisconnected);
    let r = get_with(
        &aloud.url("/aloud/v1/requests/lowered-000000000/stream"),
        &[],
    )
    .await;
    assert_eq!(r.status(), 404);
    aloud.stop().await;
}

#[tokio::test]
async fn past_the_bound_a_resume_gets_a_clear_error_and_the_client_its_whole_answer() {
    let (up, tx) = fed_upstream().await;
    let sink = Arc::new(MemorySink::default());
    let toml = format!(
        "[progress]\nresume_max_body = \"64B\"\n{}",
        route_config(up.addr, "openai", FINISH, "")
    );
    let aloud = Aloud::start_with_sink(&toml, MapEnv::default(), Some(sink.clone())).await;
    let r = post(
        &aloud.url("/up/v1/chat/completions"),
        &[("aloud-request-id", "big-0000000000000")],
        "{}",
    )
    .await;
    tx.send(Bytes::from_static(b"data: 1\n\n")).await.unwrap();
    tx.send(Bytes::from_static(b"data: 22222222\n\n"))
        .await
        .unwrap();
    drop(tx);
    let (got, clean) = read_to_end(r).await;
    assert!(clean);
    assert_eq!(
        got, b"data: 1\n\ndata: 22222222\n\n",
        "the client's answer is whole"
    );
    for path in ["result", "stream?after=1"] {
        let e = get_with(
            &aloud.url(&format!("/aloud/v1/requests/big-0000000000000/{path}")),
            &[],
        )
        .await;
        assert_eq!(e.status(), 410, "{path}");
        assert_eq!(e.headers()["aloud-error-code"], "resume_buffer_exceeded");
        let body = body_json(e).await;
        assert_eq!(body["error"]["code"], "resume_buffer_exceeded", "{body}");
    }
    aloud.stop().await;
}

#[tokio::test]
async fn past_the_bound_after_the_client_left_the_upstream_is_cancelled() {
    let (up, tx) = fed_upstream().await;
    let sink = Arc::new(MemorySink::default());
    let toml = format!(
        "[progress]\nresume_max_body = \"64B\"\n{}",
        route_config(up.addr, "openai", FINISH, "")
    );
    let aloud = Aloud::start_with_sink(&toml, MapEnv::default(), Some(sink.clone())).await;
    post_and_leave(&aloud, "outgrown-00000000", &[], &tx).await;
    // The upstream keeps sending; once the answer outgrows its buffer nobody can resume it,
    // so aloud stops reading and the upstream's body is dropped (its sends start failing).
    let big = Bytes::from(format!("data: {}\n\n", "x".repeat(40)));
    let cancelled = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while tx.send(big.clone()).await.is_ok() {}
    })
    .await;
    assert!(cancelled.is_ok(), "the upstream was never cancelled");
    let record = sink.wait_for("outgrown-00000000").await;
    assert_eq!(record.outcome, Outcome::ClientDisconnected, "{record:?}");
    assert!(record.error.unwrap().contains("resume buffer"));
    assert!(record.disconnect.unwrap().client_left_ms.is_some());
    let e = get_with(
        &aloud.url("/aloud/v1/requests/outgrown-00000000/result"),
        &[],
    )
    .await;
    assert_eq!(e.status(), 410);
    aloud.stop().await;
}

#[tokio::test]
async fn kept_answers_are_token_scoped() {
    let (up, tx) = fed_upstream().await;
    let env = MapEnv::default().with("TOKENS", "alice-0123456789abcdef,bob-0123456789abcdef");
    let (aloud, sink) = start(&up, FINISH, "client_tokens_env = \"TOKENS\"", env).await;
    post_and_leave(
        &aloud,
        "scoped-0000000000",
        &[("aloud-token", "alice-0123456789abcdef")],
        &tx,
    )
    .await;
    tx.send(Bytes::from_static(b"data: 2\n\n")).await.unwrap();
    drop(tx);
    sink.wait_for("scoped-0000000000").await;
    let url = aloud.url("/aloud/v1/requests/scoped-0000000000/result");
    assert_eq!(get_with(&url, &[]).await.status(), 401);
    let bob = get_with(&url, &[("authorization", "Bearer bob-0123456789abcdef")]).await;
    assert_eq!(bob.status(), 404);
    let unknown = get_with(
        &aloud
            .url("/aloud/v1/requests/nobody-0000000000/result?access_token=alice-0123456789abcdef"),
        &[],
    )
    .await;
    assert_eq!(unknown.status(), 404);
    let alice = get_with(&format!("{url}?access_token=alice-0123456789abcdef"), &[]).await;
    assert_eq!(alice.status(), 200);
    assert_eq!(body_bytes(alice).await, "data: 1\n\ndata: 2\n\n");
    aloud.stop().await;
}

#[tokio::test]
async fn shutdown_cuts_an_exchange_still_finishing_after_the_grace() {
    let (up, tx) = fed_upstream().await;
    let (aloud, sink) = start(&up, FINISH, "shutdown_grace = \"200ms\"", MapEnv::default()).await;
    post_and_leave(&aloud, "finishing-00000000", &[], &tx).await;
    tx.send(Bytes::from_static(b"data: 2\n\n")).await.unwrap();
    // Wait until the exchange is detached: a live resume sees event 2 arrive.
    let live = get_with(
        &aloud.url("/aloud/v1/requests/finishing-00000000/stream?after=1"),
        &[],
    )
    .await;
    let mut body = live.into_body();
    let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(frame, "data: 2\n\n");
    // The upstream never ends: the stop must not wait for it past the grace.
    aloud.stop().await;
    let record = sink.wait_for("finishing-00000000").await;
    assert_eq!(record.outcome, Outcome::Shutdown, "{record:?}");
    assert!(record.disconnect.unwrap().client_left_ms.is_some());
    // The resume in flight is cut, not ended cleanly.
    let mut clean = true;
    while let Some(f) = body.frame().await {
        if f.is_err() {
            clean = false;
            break;
        }
    }
    assert!(!clean, "a cut answer never ends cleanly");
    drop(tx);
}

#[tokio::test]
async fn ndjson_events_are_lines_and_a_resume_after_n_skips_n_of_them() {
    let toml = "[[routes]]\nname = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\n\
                api = \"ollama\"\nprogress = \"off\"\non_disconnect = \"finish\"\n";
    let aloud = Aloud::start(toml).await;
    let r = post(
        &aloud.url("/sim/api/chat"),
        &[
            ("aloud-request-id", "ndjson-000000000"),
            ("x-sim-seed", "3"),
            ("x-sim-think-ms", "5"),
            ("x-sim-tokens", "8"),
            ("x-sim-token-ms", "1"),
        ],
        "{\"model\":\"sim\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
    )
    .await;
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("ndjson")
    );
    let whole = body_bytes(r).await;
    let lines: Vec<&[u8]> = whole.split_inclusive(|b| *b == b'\n').collect();
    assert!(lines.len() > 3, "{lines:?}");
    let kept = get_with(
        &aloud.url("/aloud/v1/requests/ndjson-000000000/result"),
        &[],
    )
    .await;
    assert_eq!(body_bytes(kept).await, whole);
    let after = get_with(
        &aloud.url("/aloud/v1/requests/ndjson-000000000/stream?after=3"),
        &[],
    )
    .await;
    assert_eq!(body_bytes(after).await, lines[3..].concat());
    aloud.stop().await;
}

#[tokio::test]
async fn a_resume_of_an_answer_whose_upstream_failed_gets_its_bytes_then_a_cut() {
    use support::scripted::Scripted;
    use support::wire::E1;
    let up = Scripted::start().await;
    let sink = Arc::new(MemorySink::default());
    let toml = route_config(up.addr(), "openai", FINISH, "");
    let aloud = Aloud::start_with_sink(&toml, MapEnv::default(), Some(sink.clone())).await;
    let id = "failed-finish-000000";
    let r = post(
        &aloud.url("/up/v1/chat/completions"),
        &[("aloud-request-id", id), ("x-mock", "reset-on-go")],
        "{\"stream\":true}",
    )
    .await;
    assert_eq!(r.status(), 200);
    let mut body = r.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, E1);
    drop(body);
    // The upstream resets after its first event; the exchange ends failed.
    up.go();
    let record = sink.wait_for(id).await;
    assert_eq!(record.outcome, Outcome::UpstreamError, "{record:?}");
    // Every replay of it is the upstream's head and bytes, then a cut transfer: never a reply
    // with nothing in it, and never a clean end.
    for path in ["stream", "stream?after=0", "resume/v1/chat/completions"] {
        let r = get_with(&aloud.url(&format!("/aloud/v1/requests/{id}/{path}")), &[]).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "text/event-stream", "{path}");
        let (bytes, clean) = read_to_end(r).await;
        assert_eq!(String::from_utf8_lossy(&bytes), E1, "{path}");
        assert!(!clean, "{path}: a failed answer never ends cleanly");
    }
    let result = get_with(&aloud.url(&format!("/aloud/v1/requests/{id}/result")), &[]).await;
    assert_eq!(result.status(), 502);
    aloud.stop().await;
}
