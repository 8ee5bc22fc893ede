//! OpenTelemetry traces: one span per exchange with the GenAI semantic conventions, W3C trace
//! context in and out, and a bounded exporter thread that posts OTLP/HTTP protobuf batches.
//!
//! On the request's thread only two cheap things happen, and only when `[telemetry]` is on:
//! `begin` reads the client's `traceparent` and decides sampling (parent-based, else by trace
//! id ratio); the finish step hands the traced exchange's plain data to `submit`, which never
//! waits (a full queue drops the span and counts it). Parsing JSON, redacting content and
//! building, encoding and posting spans happen on the exporter's thread (`export`).

pub mod content;
pub mod context;
mod export;
pub mod span;

pub use context::{SpanContext, format_traceparent, parse_traceparent};
pub use span::{Finished, Traced};

use crate::apis::stream::Summary;
use crate::capture::redaction::Live;
use crate::config::TelemetryConfig;
use export::{Exporter, Msg};
use http::HeaderMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::Duration;

/// Finished exchanges waiting for the exporter at most (the OpenTelemetry SDKs' default).
pub const QUEUE_MAX: usize = 2048;

/// Bytes the queued spans may hold at most (kept request bodies and whole answers): a collector
/// that is down costs counted drops, never memory.
pub const QUEUE_BYTES: usize = 64 << 20;

static EXPORTED: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Span counts since the process started, over every exporter it ran (`aloud serve` runs one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Spans the collector accepted (a 2xx answer).
    pub exported: u64,
    /// Spans lost: the queue was full, or the collector failed, refused or timed out.
    pub dropped: u64,
}

/// The exporter's counters, for metrics.
pub fn stats() -> Stats {
    Stats {
        exported: EXPORTED.load(Ordering::Relaxed),
        dropped: DROPPED.load(Ordering::Relaxed),
    }
}

/// The running exporter, shared by every request.
pub struct Telemetry {
    tx: SyncSender<Msg>,
    sample: f64,
    capture_content: bool,
    closing: Arc<AtomicBool>,
    queue_full: Arc<AtomicU64>,
    queued_bytes: Arc<AtomicUsize>,
    done: tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("sample", &self.sample)
            .finish()
    }
}

impl Telemetry {
    /// Starts the exporter thread when `otlp_endpoint` is set; `redactor` is used for content
    /// (`capture_content`). `drain_bound` limits the last post at shutdown.
    pub fn start(
        config: &TelemetryConfig,
        redactor: Option<Arc<Live>>,
        drain_bound: Duration,
    ) -> std::io::Result<Option<Arc<Telemetry>>> {
        let Some(endpoint) = config.otlp_endpoint.clone() else {
            return Ok(None);
        };
        let (tx, rx) = sync_channel(QUEUE_MAX);
        let closing = Arc::new(AtomicBool::new(false));
        let queue_full = Arc::new(AtomicU64::new(0));
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let exporter = Exporter {
            rx,
            endpoint: endpoint.clone(),
            headers: config.headers.clone(),
            service_name: config.service_name.clone(),
            redactor: redactor.filter(|_| config.capture_content),
            closing: Arc::clone(&closing),
            drain_bound,
            queue_full: Arc::clone(&queue_full),
            queued_bytes: Arc::clone(&queued_bytes),
        };
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("aloud-otlp".into())
            .spawn(move || {
                // Like the capture writer, the exporter gives way to requests.
                crate::capture::priority::background();
                exporter.run();
                let _ = done_tx.send(());
            })?;
        tracing::info!(%endpoint, sample = config.sample, "exporting traces (OTLP/HTTP)");
        Ok(Some(Arc::new(Telemetry {
            tx,
            sample: config.sample,
            capture_content: config.capture_content,
            closing,
            queue_full,
            queued_bytes,
            done: tokio::sync::Mutex::new(Some(done_rx)),
        })))
    }

    /// Starts tracing an exchange whose request carried `headers`, when it is sampled: a
    /// client's sampled `traceparent` is continued (its flag decides), else a new trace is
    /// sampled by ratio. `server` is the upstream's host and port.
    pub fn begin(
        &self,
        headers: &HeaderMap,
        server: impl FnOnce() -> (String, u16),
    ) -> Option<Traced> {
        let parent = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        if parent.is_none() && self.sample <= 0.0 || parent.is_some_and(|p| !p.sampled) {
            return None;
        }
        let (new_trace, span_id) = context::random_ids()?;
        let trace_id = parent.map_or(new_trace, |p| p.trace_id);
        if !context::decide(parent.as_ref(), &trace_id, self.sample) {
            return None;
        }
        let tracestate = parent
            .and(headers.get("tracestate"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Some(Traced {
            context: SpanContext {
                trace_id,
                span_id,
                sampled: true,
            },
            parent: parent.map(|p| p.span_id),
            tracestate,
            server: server(),
            body: Vec::new(),
        })
    }

    /// Whether spans carry the redacted prompt and answer.
    pub fn capture_content(&self) -> bool {
        self.capture_content
    }

    /// What a span needs of a stream's summary when capture keeps the summary itself.
    pub fn span_summary(&self, s: &Summary) -> Summary {
        let mut out = Summary {
            phase: s.phase,
            counters: s.counters,
            ..Summary::default()
        };
        let o = &s.output;
        out.output.response_id.clone_from(&o.response_id);
        out.output.response_model.clone_from(&o.response_model);
        out.output.finish_reason.clone_from(&o.finish_reason);
        out.output.usage = o.usage;
        if self.capture_content {
            out.output.answer.clone_from(&o.answer);
        }
        out
    }

    /// Hands a finished exchange to the exporter; never waits. A full queue drops it (counted).
    pub fn submit(&self, finished: Finished) {
        let weight = finished.weight();
        let held = self.queued_bytes.fetch_add(weight, Ordering::Relaxed);
        let sent = held + weight <= QUEUE_BYTES
            && self
                .tx
                .try_send(Msg::Span(Box::new(finished), weight))
                .is_ok();
        if !sent {
            self.queued_bytes.fetch_sub(weight, Ordering::Relaxed);
            DROPPED.fetch_add(1, Ordering::Relaxed);
            self.queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every span submitted before this call was posted (or dropped).
    pub async fn flush(&self) {
        let (ack, done) = tokio::sync::oneshot::channel();
        if self.tx.try_send(Msg::Flush(ack)).is_ok() {
            let _ = done.await;
        }
    }

    /// Stops the exporter: what is queued is posted within the drain bound, then the thread
    /// ends. Waits at most `bound`.
    pub async fn close(&self, bound: Duration) {
        self.closing.store(true, Ordering::Release);
        // Wakes the thread if it is waiting for the next span.
        let (ack, _) = tokio::sync::oneshot::channel();
        let _ = self.tx.try_send(Msg::Flush(ack));
        let Some(done) = self.done.lock().await.take() else {
            return;
        };
        if tokio::time::timeout(bound, done).await.is_err() {
            tracing::warn!("the OTLP exporter did not finish in time; its last spans may be lost");
        }
    }
}
