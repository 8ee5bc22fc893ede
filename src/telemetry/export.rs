//! The exporter: a thread of its own that takes finished exchanges from a bounded queue, builds
//! their spans (parsing request and answer JSON, redacting content), and posts them in batches
//! as OTLP/HTTP protobuf. Requests only `try_send`; a full queue or a failed post costs counted
//! drops and a rate-limited log line, never a request's time.
//!
//! Why not the `opentelemetry_sdk` pipeline: its span processor runs on the request's thread
//! (attributes are set where the span lives) and its OTLP exporter brings reqwest or tonic;
//! here the finish step hands over plain data, and one thread builds, encodes and sends with
//! the hyper client aloud already has (rustls for an https collector).

use super::span::{Finished, build};
use super::{DROPPED, EXPORTED};
use crate::capture::redaction::Live;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Spans sent per post at most.
pub const BATCH_MAX: usize = 512;
/// A batch that is not full goes out after this long.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// One post may take this long before its spans count as dropped.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// A collector that keeps failing is logged about at most this often.
const LOG_EVERY: Duration = Duration::from_secs(30);

pub enum Msg {
    /// A finished exchange and the bytes it holds (counted against the queue's byte budget).
    Span(Box<Finished>, usize),
    /// Sends what is queued now, then answers.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// What the exporter thread owns.
pub struct Exporter {
    pub rx: Receiver<Msg>,
    pub endpoint: Uri,
    pub headers: Vec<(String, String)>,
    pub service_name: String,
    /// The live redactor (a reload replaces it) when `capture_content` is on.
    pub redactor: Option<Arc<Live>>,
    pub closing: Arc<AtomicBool>,
    /// How long the last batch may take once closing began.
    pub drain_bound: Duration,
    /// Queue drops seen by requests, logged (rate-limited) from here.
    pub queue_full: Arc<AtomicU64>,
    /// Bytes held by spans waiting in the queue.
    pub queued_bytes: Arc<std::sync::atomic::AtomicUsize>,
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

fn client() -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(https)
}

struct Logged {
    last: Option<Instant>,
    failed: u64,
    queue_full_seen: u64,
}

impl Exporter {
    /// The thread's body: runs until closing is set and the queue is drained (within the bound).
    pub fn run(self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the OTLP exporter; traces are off");
                return;
            }
        };
        let client = client();
        let mut batch: Vec<Span> = Vec::with_capacity(BATCH_MAX);
        let mut due = Instant::now() + FLUSH_INTERVAL;
        let mut log = Logged {
            last: None,
            failed: 0,
            queue_full_seen: 0,
        };
        let mut acks: Vec<tokio::sync::oneshot::Sender<()>> = Vec::new();
        let mut drain_until: Option<Instant> = None;
        loop {
            if drain_until.is_none() && self.closing.load(Ordering::Acquire) {
                drain_until = Some(Instant::now() + self.drain_bound);
            }
            let msg = match drain_until {
                Some(_) => self.rx.try_recv().map_err(|e| match e {
                    std::sync::mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                    std::sync::mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                }),
                None => self
                    .rx
                    .recv_timeout(due.saturating_duration_since(Instant::now())),
            };
            let mut idle = false;
            match msg {
                Ok(Msg::Span(f, weight)) => {
                    self.queued_bytes.fetch_sub(weight, Ordering::Relaxed);
                    let span = match &self.redactor {
                        Some(live) => live.with_own(|r| build(*f, Some(r))),
                        None => build(*f, None),
                    };
                    batch.push(span);
                }
                Ok(Msg::Flush(ack)) => {
                    // A flush answers once what was queued before it has been posted.
                    acks.push(ack);
                    due = Instant::now();
                }
                Err(RecvTimeoutError::Timeout) => idle = true,
                Err(RecvTimeoutError::Disconnected) => {
                    idle = true;
                    self.closing.store(true, Ordering::Release);
                    drain_until.get_or_insert_with(|| Instant::now() + self.drain_bound);
                }
            }
            let now = Instant::now();
            let timeout = match drain_until {
                Some(until) => until.saturating_duration_since(now),
                None => EXPORT_TIMEOUT,
            };
            if !batch.is_empty()
                && (batch.len() >= BATCH_MAX || now >= due || drain_until.is_some() && idle)
            {
                self.post(&runtime, &client, &mut batch, &mut log, timeout);
            }
            if now >= due || idle {
                self.log_queue_drops(&mut log);
                if batch.is_empty() {
                    for ack in acks.drain(..) {
                        let _ = ack.send(());
                    }
                }
            }
            if now >= due {
                due = now + FLUSH_INTERVAL;
            }
            if drain_until.is_some() && idle && batch.is_empty() {
                break;
            }
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }

    fn post(
        &self,
        runtime: &tokio::runtime::Runtime,
        client: &HttpClient,
        batch: &mut Vec<Span>,
        log: &mut Logged,
        timeout: Duration,
    ) {
        let n = batch.len() as u64;
        let body = self.encode(std::mem::take(batch));
        let mut req = Request::new(Full::new(Bytes::from(body)));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.endpoint.clone();
        let h = req.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) = (
                header::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                h.insert(name, value);
            }
        }
        let result = runtime.block_on(async {
            let response = tokio::time::timeout(timeout, client.request(req))
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            let status = response.status();
            // The body is read so the connection can be pooled again (bounded by the timeout).
            let _ = tokio::time::timeout(timeout, response.into_body().collect()).await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the collector answered {status}"))
            }
        });
        match result {
            Ok(()) => {
                EXPORTED.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                DROPPED.fetch_add(n, Ordering::Relaxed);
                log.failed += n;
                let quiet = log.last.is_some_and(|t| t.elapsed() < LOG_EVERY);
                if !quiet {
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        error = %e,
                        dropped_spans = log.failed,
                        "cannot export traces; spans dropped"
                    );
                    log.last = Some(Instant::now());
                    log.failed = 0;
                }
            }
        }
    }

    fn log_queue_drops(&self, log: &mut Logged) {
        let total = self.queue_full.load(Ordering::Relaxed);
        if total > log.queue_full_seen && log.last.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            tracing::warn!(
                dropped_spans = total - log.queue_full_seen,
                "the trace queue was full; spans dropped"
            );
            log.last = Some(Instant::now());
            log.queue_full_seen = total;
        }
    }

    fn encode(&self, spans: Vec<Span>) -> Vec<u8> {
        let string = |key: &str, v: &str| KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.to_owned())),
            }),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        string("service.name", &self.service_name),
                        string("service.version", env!("CARGO_PKG_VERSION")),
                        string("telemetry.sdk.name", "aloud"),
                        string("telemetry.sdk.language", "rust"),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "aloud".to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }
}
