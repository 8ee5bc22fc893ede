//! Secrets split across stream chunks are stored nowhere: an e-mail, a Luhn-valid card and the
//! route's configured key, each arriving in 2–5 pieces of an OpenAI chat and an Anthropic
//! stream, are looked for in the raw bytes of the SQLite file, its `-wal`, the spill and every
//! export format. The stored deltas still rebuild the (redacted) answer at its recorded pace,
//! and `simulate --replay` serves it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

#[path = "capture_redaction/streams.rs"]
mod streams;
mod support;

use aloud::capture::sink::WriterSink;
use aloud::capture::{CaptureRecord, CaptureSink, CaptureWriter, DeltaKind, WriterConfig};
use aloud::config::{Config, MapEnv};
use aloud::export::{Exporter, Format};
use aloud::store::{Filter, SqliteStore, Store};
use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use streams::*;
use support::*;
use tokio::sync::{Notify, mpsc};

/// The writer's sink, telling the test when a record was handed over.
struct Notifying {
    inner: WriterSink,
    submitted: Mutex<Vec<String>>,
    changed: Notify,
}

impl Notifying {
    async fn wait_for(&self, id: &str) {
        loop {
            let notified = self.changed.notified();
            if self.submitted.lock().unwrap().iter().any(|s| s == id) {
                return;
            }
            tokio::time::timeout(std::time::Duration::from_secs(30), notified)
                .await
                .expect("no capture record arrived");
        }
    }
}

impl CaptureSink for Notifying {
    fn submit(&self, record: CaptureRecord) {
        self.submitted.lock().unwrap().push(record.id.clone());
        self.inner.submit(record);
        self.changed.notify_waiters();
    }
    fn known(&self, id: &str, owner: Option<aloud::config::Owner>) -> bool {
        self.inner.known(id, owner)
    }
    fn timings(
        &self,
        id: &str,
        owner: Option<aloud::config::Owner>,
        timings: aloud::capture::beacon::ClientTimings,
    ) {
        self.inner.timings(id, owner, timings);
    }
    fn feedback(
        &self,
        id: &str,
        owner: Option<aloud::config::Owner>,
        feedback: aloud::capture::beacon::Feedback,
    ) {
        self.inner.feedback(id, owner, feedback);
    }
}

type Streams = mpsc::UnboundedReceiver<tokio::sync::mpsc::Sender<Bytes>>;

/// One streamed exchange in lockstep: each event goes upstream only once the client has
/// received the one before, so each reaches the recorder as a delta of its own.
async fn exchange(aloud: &Aloud, streams: &mut Streams, id: &str, path: &str, events: &[String]) {
    let body = if path.ends_with("messages") {
        r#"{"model":"claude-x","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"How do I reach you?"}]}"#
    } else {
        r#"{"model":"gpt-x","stream":true,"messages":[{"role":"user","content":"How do I reach you?"}]}"#
    };
    let req = http::Request::post(aloud.url(path))
        .header("content-type", "application/json")
        .header("aloud-request-id", id)
        .header("aloud-progress", "off")
        .body(full(body))
        .unwrap();
    let mut resp = send(req).await;
    assert_eq!(resp.status(), 200);
    let upstream = streams.recv().await.unwrap();
    let mut received = Vec::new();
    let mut sent = 0;
    for event in events {
        upstream.send(Bytes::from(event.clone())).await.unwrap();
        sent += event.len();
        while received.len() < sent {
            let frame = resp.body_mut().frame().await.unwrap().unwrap();
            if let Ok(data) = frame.into_data() {
                received.extend_from_slice(&data);
            }
        }
    }
    drop(upstream);
    while let Some(frame) = resp.body_mut().frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            received.extend_from_slice(&data);
        }
    }
    assert_eq!(
        received,
        events.concat().into_bytes(),
        "off tier: bytes unchanged"
    );
}

/// Every form a stored piece of a secret could take: each six-byte window of it, plain and
/// JSON-escaped, and the whole secret in base64.
fn forms() -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut forms = Vec::new();
    for secret in SECRETS {
        for i in 0..=secret.len() - 6 {
            let piece = &secret[i..i + 6];
            forms.push(piece.to_owned());
            let escaped = serde_json::to_string(piece).unwrap();
            forms.push(escaped.trim_matches('"').to_owned());
        }
        forms.push(b64.encode(secret));
    }
    forms.sort();
    forms.dedup();
    forms
}

fn leaks(what: &str, bytes: &[u8], found: &mut Vec<String>) {
    let text = String::from_utf8_lossy(bytes);
    for f in forms() {
        if text.contains(&f) {
            found.push(format!("{what} contains {f:?}"));
        }
    }
}

/// Scans every file under `dir` (the database, its `-wal` and `-shm`, the spill).
fn scan(dir: &Path, found: &mut Vec<String>) -> usize {
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files += scan(&path, found);
        } else {
            files += 1;
            leaks(
                &path.display().to_string(),
                &std::fs::read(&path).unwrap(),
                found,
            );
        }
    }
    files
}

fn file_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn secrets_split_across_chunks_are_stored_spilled_and_exported_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("capture.db");
    let spill = dir.path().join("spill");
    drop(SqliteStore::open(&db).unwrap());

    let (streams_tx, mut streams) = mpsc::unbounded_channel();
    let upstream = Upstream::start(move |_req| {
        let streams_tx = streams_tx.clone();
        async move {
            let (tx, body) = channel_body();
            streams_tx.send(tx).unwrap();
            response(200, &[("content-type", "text/event-stream")], body)
        }
    })
    .await;
    let toml = format!(
        "[server]\n\
         [[routes]]\nname = \"oai\"\nprefix = \"/oai\"\nupstream = \"http://{a}\"\napi = \"openai\"\napi_key_env = \"CFG_KEY\"\n\
         [[routes]]\nname = \"ant\"\nprefix = \"/ant\"\nupstream = \"http://{a}\"\napi = \"anthropic\"\napi_key_env = \"CFG_KEY\"\n",
        a = upstream.addr
    );
    let env = MapEnv::default().with("CFG_KEY", KEY);
    let config = Config::parse(&toml, Path::new("test.toml"), &env).unwrap();
    let writer_config = WriterConfig {
        prepare: aloud::capture::redaction::prepare(&config).unwrap(),
        ..WriterConfig::with_spill_dir(&spill)
    };
    let open = db.clone();
    let writer = CaptureWriter::start(writer_config, move || SqliteStore::open(&open)).unwrap();
    let sink = Arc::new(Notifying {
        inner: WriterSink::new(writer.clone(), db.clone()),
        submitted: Mutex::new(Vec::new()),
        changed: Notify::new(),
    });
    let aloud = Aloud::start_with_sink(&toml, env, Some(sink.clone())).await;
    let oai = "/oai/v1/chat/completions";
    let ant = "/ant/v1/messages";
    let mut found = Vec::new();

    // Into the database.
    exchange(
        &aloud,
        &mut streams,
        "redact-oai-stored",
        oai,
        &openai_events(),
    )
    .await;
    exchange(
        &aloud,
        &mut streams,
        "redact-ant-stored",
        ant,
        &anthropic_events(),
    )
    .await;
    sink.wait_for("redact-oai-stored").await;
    sink.wait_for("redact-ant-stored").await;
    writer.flush().await;
    assert_eq!(writer.stats().written, 2, "{:?}", writer.stats());
    assert!(
        file_names(dir.path()).contains(&"capture.db-wal".to_owned()),
        "{:?}",
        file_names(dir.path())
    );
    scan(dir.path(), &mut found);
    // A feedback beacon is the user's text: redacted like a record before it is stored.
    feedback(&aloud, "redact-oai-stored").await;
    writer.flush().await;
    let stored = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT label || ' | ' || comment FROM feedback WHERE id = 'redact-oai-stored'",
            [],
            |row| row.get::<_, String>(0),
        )
        .expect("the feedback was stored");
    assert_eq!(
        stored,
        "[REDACTED:email] | card [REDACTED:card], key [REDACTED:key], mail [REDACTED:email]"
    );
    scan(dir.path(), &mut found);

    // Into the spill, while another process holds the database's write lock.
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    exchange(
        &aloud,
        &mut streams,
        "redact-oai-spilled",
        oai,
        &openai_events(),
    )
    .await;
    exchange(
        &aloud,
        &mut streams,
        "redact-ant-spilled",
        ant,
        &anthropic_events(),
    )
    .await;
    sink.wait_for("redact-oai-spilled").await;
    sink.wait_for("redact-ant-spilled").await;
    writer.flush().await;
    feedback(&aloud, "redact-oai-spilled").await;
    writer.flush().await;
    assert_eq!(writer.stats().spilled, 3, "{:?}", writer.stats());
    let spilled: String = file_names(&spill)
        .iter()
        .map(|f| std::fs::read_to_string(spill.join(f)).unwrap())
        .collect();
    assert!(spilled.contains("redact-ant-spilled") && spilled.contains("[REDACTED:key]"));
    assert!(
        spilled.contains(r#""label":"[REDACTED:email]""#),
        "{spilled}"
    );
    assert!(scan(&spill, &mut found) > 0);
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    for _ in 0..50 {
        writer.flush().await;
        if writer.stats().spill_bytes == 0 {
            break;
        }
    }
    assert_eq!(writer.stats().replayed, 3, "{:?}", writer.stats());

    aloud.stop().await;
    writer.close().await;
    scan(dir.path(), &mut found);

    // Every export format.
    let store = SqliteStore::open(&db).unwrap();
    let records: Vec<CaptureRecord> = store
        .query(&Filter::default())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(records.len(), 4);
    for format in Format::ALL {
        let mut out = Vec::new();
        let mut exporter = Exporter::new(format, &mut out);
        for r in &records {
            exporter.write(r).unwrap();
        }
        let counts = exporter.finish().unwrap();
        assert_eq!(counts.written, 4, "{format}: {counts:?}");
        leaks(&format!("export {format}"), &out, &mut found);
    }
    // The CLI's export, which joins the feedback to its record.
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_aloud"))
        .args(["export", "--format", "csv", "--database"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(cli.status.success(), "{cli:?}");
    let csv = String::from_utf8_lossy(&cli.stdout);
    assert!(csv.contains("[REDACTED:email]"), "{csv}");
    leaks("aloud export --format csv", &cli.stdout, &mut found);
    assert!(
        found.is_empty(),
        "secrets stored in clear:\n{}",
        found.join("\n")
    );

    // The deltas still rebuild the redacted texts, in as many timed pieces as make sense.
    for r in &records {
        let response = r.response.as_ref().unwrap();
        let rebuilt = |kind| -> String {
            r.delta_texts()
                .iter()
                .filter(|d| d.kind == kind)
                .map(|d| d.text)
                .collect()
        };
        assert_eq!(rebuilt(DeltaKind::Answer), response.text, "{}", r.id);
        assert_eq!(
            rebuilt(DeltaKind::Reasoning),
            response.reasoning,
            "{}",
            r.id
        );
        assert!(
            response.text.contains("[REDACTED:key]"),
            "{}",
            response.text
        );
        let answers = r
            .deltas
            .iter()
            .filter(|d| d.kind == DeltaKind::Answer)
            .count();
        assert!(answers >= 3, "{}: {:?}", r.id, r.deltas);
        assert!(r.deltas.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    }
    let ant = records
        .iter()
        .find(|r| r.id == "redact-ant-stored")
        .unwrap()
        .clone();
    assert_eq!(
        ant.response.as_ref().unwrap().text,
        "Mail [REDACTED:email] with [REDACTED:key] now."
    );
    replay_serves_the_redacted_answer(ant).await;
}

/// Sends feedback for `id` whose label and comment hold every secret whole.
async fn feedback(aloud: &Aloud, id: &str) {
    let body = serde_json::json!({
        "score": 0,
        "label": EMAIL,
        "comment": format!("card {CARD}, key {KEY}, mail {EMAIL}"),
    });
    let r = post(
        &aloud.url(&format!("/aloud/v1/requests/{id}/feedback")),
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await;
    assert_eq!(r.status(), 204, "feedback for {id}");
}

/// `simulate --replay` on the stored record: the redacted answer, one event per stored delta.
async fn replay_serves_the_redacted_answer(record: CaptureRecord) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pieces: Vec<String> = record
        .delta_texts()
        .iter()
        .filter(|d| d.kind == DeltaKind::Answer)
        .map(|d| d.text.to_owned())
        .collect();
    let server = aloud::simulator::serve_replay(listener, record, std::future::pending());
    let client = async {
        let r = post(
            &format!("http://{addr}/v1/messages"),
            &[("content-type", "application/json")],
            r#"{"model":"claude-x","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"again"}]}"#,
        )
        .await;
        String::from_utf8(body_bytes(r).await.to_vec()).unwrap()
    };
    let body = tokio::select! {
        result = server => panic!("replay server ended: {result:?}"),
        body = client => body,
    };
    let texts: Vec<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter(|v| v["delta"]["type"] == "text_delta")
        .map(|v| v["delta"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, pieces, "{body}");
}
