//! One exchange's owner: its id, route, tier, slot, progress, recorder and timings, and the one
//! finish step that turns how it ended into one capture record, one access-log line and the
//! exchange's figures. `finish` runs exactly once: from the body's end, from a refusal, or from
//! `Drop` when the client or a shutdown cut the exchange. The figures go to the route's metrics
//! from there too (one call, when metrics are on).

mod report;

use super::body::RequestTap;
use crate::apis::Api;
use crate::apis::stream::{Phase, Summary, Usage};
use crate::capture::CaptureSink;
use crate::capture::Outcome;
use crate::capture::recorder::{End, Pending, Recorder};
use crate::config::HttpUpstream;
use crate::config::Tier;
use crate::metrics::{ModelMetrics, RouteMetrics};
use crate::progress::Watcher;
use crate::telemetry::{Telemetry, Traced};
use http::{HeaderMap, Method};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// Capture for one exchange: the record being built and where it goes.
pub struct Capture {
    pub recorder: Recorder,
    pub sink: Arc<dyn CaptureSink>,
}

/// How an exchange ended. The first one set wins.
#[derive(Clone, Debug, PartialEq)]
pub struct Ending {
    pub outcome: Outcome,
    /// The response the client got was cut short.
    pub partial: bool,
    /// A low-cardinality cause for logs and metrics: `complete`, `upstream_error`,
    /// `idle_timeout`, `total_timeout`, `client_gone`, `shutdown`, or a refusal's label.
    pub cause: &'static str,
    pub error: Option<String>,
}

impl Ending {
    pub fn ok() -> Self {
        Ending {
            outcome: Outcome::Ok,
            partial: false,
            cause: "complete",
            error: None,
        }
    }

    pub fn new(outcome: Outcome, partial: bool, cause: &'static str, error: String) -> Self {
        Ending {
            outcome,
            partial,
            cause,
            error: Some(error),
        }
    }
}

/// The figures of a finished exchange: what the access log shows and what later exporters
/// (metrics, spans) take. Milliseconds from the request head.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    pub status: Option<u16>,
    pub upstream_status: Option<u16>,
    pub outcome: Outcome,
    pub cause: &'static str,
    pub streamed: bool,
    pub headers_ms: Option<f64>,
    pub first_feedback_ms: Option<f64>,
    pub first_token_ms: Option<f64>,
    pub total_ms: f64,
    pub longest_silence_ms: f64,
    /// aloud's own time: from the head to the request written upstream, plus from the
    /// upstream's head to the client's.
    pub overhead_ms: Option<f64>,
    /// Body bytes handed to the client.
    pub bytes: u64,
    /// Request body bytes read from the client.
    pub bytes_in: u64,
    /// The first body byte handed to the client.
    pub first_byte_ms: Option<f64>,
    /// Tokens the upstream reported in its stream (a whole answer is read only by capture).
    pub usage: Option<Usage>,
}

/// The owner of one exchange.
pub struct Exchange {
    pub id: Arc<str>,
    pub route: Arc<str>,
    pub api: Api,
    pub tier: Tier,
    method: Method,
    /// The request path without its query (credentials may travel there).
    path: String,
    pub started: Instant,
    permit: Option<OwnedSemaphorePermit>,
    /// It took a concurrency slot (and keeps this once the slot is given back).
    admitted: bool,
    /// Progress, once the side channel admitted the attempt.
    pub w: Option<Watcher>,
    pub capture: Option<Capture>,
    pub tap: Option<Arc<RequestTap>>,
    /// An HTTP/2 stream slot on the route's upstream lanes, freed when the exchange ends.
    pub stream_slot: Option<super::upstream::Slot>,
    /// A whole (non-streamed) 2xx answer, kept bounded when metrics are on, for its model and
    /// tokens (no stream interpreter read them). `None` past the bound.
    whole_answer: Option<Vec<u8>>,
    upstream_head_at: Option<Instant>,
    client_head_at: Option<Instant>,
    first_byte_at: Option<Instant>,
    pub upstream_status: Option<u16>,
    client_status: Option<u16>,
    pub streamed: bool,
    pub bytes: u64,
    shutting_down: Arc<AtomicBool>,
    ending: Option<(Ending, Instant)>,
    finished: bool,
    /// The route's metric handles; `None` when metrics are off.
    metrics: Option<Arc<RouteMetrics>>,
    /// What the stream said about the answer: its model's handles and the usage.
    answer: (Option<Arc<ModelMetrics>>, Option<Usage>),
    /// The exchange's span, when telemetry is on and it is sampled.
    pub trace: Option<Box<Traced>>,
    tracer: Option<Arc<Telemetry>>,
    /// `on_disconnect = "finish"`: the client left or someone resumed (set before `finish`).
    pub disconnect: Option<crate::record::Disconnect>,
}

/// The largest whole answer kept for its model and tokens (larger ones are not counted).
pub const WHOLE_ANSWER_MAX: usize = 256 << 10;

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl Exchange {
    pub fn new(
        id: Arc<str>,
        route: Arc<str>,
        api: Api,
        tier: Tier,
        (method, path): (Method, String),
        started: Instant,
        shutting_down: Arc<AtomicBool>,
    ) -> Self {
        Exchange {
            id,
            route,
            api,
            tier,
            method,
            path,
            started,
            permit: None,
            admitted: false,
            w: None,
            capture: None,
            tap: None,
            stream_slot: None,
            whole_answer: Some(Vec::new()),
            upstream_head_at: None,
            client_head_at: None,
            first_byte_at: None,
            upstream_status: None,
            client_status: None,
            streamed: false,
            bytes: 0,
            shutting_down,
            ending: None,
            finished: false,
            metrics: None,
            answer: (None, None),
            trace: None,
            tracer: None,
            disconnect: None,
        }
    }

    /// Starts the exchange's span when `telemetry` samples it (the client's `traceparent` in
    /// `headers` is continued).
    pub fn begin_trace(
        &mut self,
        telemetry: &Arc<Telemetry>,
        headers: &HeaderMap,
        target: &HttpUpstream,
    ) {
        let server = || {
            let port = target.authority.port_u16().unwrap_or(
                if target.scheme == http::uri::Scheme::HTTPS {
                    443
                } else {
                    80
                },
            );
            (target.authority.host().to_owned(), port)
        };
        if let Some(traced) = telemetry.begin(headers, server) {
            self.trace = Some(Box::new(traced));
            self.tracer = Some(Arc::clone(telemetry));
        }
    }

    /// Reports to the route's metrics (`None`: metrics are off, nothing is counted).
    pub fn measured(mut self, metrics: Option<Arc<RouteMetrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Holds a concurrency slot until the exchange finishes: the exchange is in flight.
    pub fn hold(&mut self, permit: OwnedSemaphorePermit) {
        if self.permit.is_none()
            && let Some(m) = &self.metrics
        {
            m.admitted();
        }
        self.permit = Some(permit);
        self.admitted = true;
    }

    /// Gives the concurrency slot and the upstream stream slot back.
    fn release(&mut self) {
        if self.permit.take().is_some()
            && let Some(m) = &self.metrics
        {
            m.released();
        }
        self.stream_slot = None;
    }

    /// What the upstream's stream said about the answer, taken before the finish step: the
    /// model it named (the metrics' `model` label) and the tokens it reported. Read from the
    /// interpreter's summary: nothing is parsed again.
    pub fn answered(&mut self, model: Option<&str>, usage: Option<Usage>) {
        let handles = self.metrics.as_ref().map(|m| {
            let model = model.filter(|_| self.upstream_ok());
            m.model(model.or_else(|| self.request_model()))
        });
        self.answer = (handles, usage);
    }

    /// Keeps a chunk of a whole answer for the metrics' model and tokens (only when metrics are
    /// on and the upstream answered 2xx; nothing past [`WHOLE_ANSWER_MAX`]).
    pub fn keep_whole_answer(&mut self, data: &[u8]) {
        if self.metrics.is_none() || !self.upstream_ok() {
            return;
        }
        if let Some(kept) = self.whole_answer.as_mut() {
            if kept.len() + data.len() > WHOLE_ANSWER_MAX {
                self.whole_answer = None;
            } else {
                kept.extend_from_slice(data);
            }
        }
    }

    /// What the stream said about the answer, or else what the kept whole answer says.
    pub fn answered_from(&mut self, streamed: (Option<&str>, Option<Usage>)) {
        let kept = self.whole_answer.take().filter(|k| !k.is_empty());
        match kept {
            Some(body) if streamed.1.is_none() && self.metrics.is_some() => {
                let (model, usage) = crate::apis::usage::read(&body);
                self.answered(model.as_deref().or(streamed.0), usage);
            }
            _ => self.answered(streamed.0, streamed.1),
        }
    }

    /// Whether the upstream answered 2xx: only then may a model take one of the route's
    /// capped label slots (a client must not fill them with names that 404).
    fn upstream_ok(&self) -> bool {
        self.upstream_status
            .is_some_and(|s| (200..300).contains(&s))
    }

    /// Whether the client got a 2xx head.
    fn client_ok(&self) -> bool {
        self.client_status.is_some_and(|s| (200..300).contains(&s))
    }

    /// The model the request names without reading its body: Gemini puts it in the path.
    fn request_model(&self) -> Option<&str> {
        if self.api != Api::Gemini || !self.upstream_ok() {
            return None;
        }
        crate::apis::model_in_path(&self.path)
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The time from the start to `now`, a reading the caller already took.
    pub fn since_start(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    pub fn upstream_head(&mut self, at: Instant, status: u16) {
        self.upstream_head_at.get_or_insert(at);
        self.upstream_status.get_or_insert(status);
    }

    pub fn client_head(&mut self, at: Instant, status: u16) {
        self.client_head_at.get_or_insert(at);
        self.client_status.get_or_insert(status);
    }

    /// The client was handed `n` body bytes.
    pub fn client_bytes(&mut self, n: usize) {
        if self.first_byte_at.is_none() {
            self.first_byte_at = Some(Instant::now());
        }
        self.bytes += n as u64;
        if let Some(c) = self.capture.as_mut() {
            c.recorder.client_bytes(self.started.elapsed());
        }
    }

    /// Records how the exchange ended; only the first call counts.
    pub fn end(&mut self, ending: Ending) {
        if self.ending.is_none() {
            self.ending = Some((ending, Instant::now()));
        }
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Fixes how the exchange ended, if nothing did yet: the client left, or a shutdown cut it,
    /// as of now. The finish step records this, whenever it runs (`later.rs`).
    pub fn settle(&mut self) {
        if self.ending.is_none() {
            let ending = if self.shutting_down.load(Ordering::Acquire) {
                Ending::new(
                    Outcome::Shutdown,
                    true,
                    "shutdown",
                    "aloud shut down before the response ended".into(),
                )
            } else {
                Ending::new(
                    Outcome::ClientDisconnected,
                    true,
                    "client_gone",
                    "the client went away before the response ended".into(),
                )
            };
            self.end(ending);
        }
    }

    /// Moves the exchange out for a finish step that runs later, leaving a finished stand-in
    /// with its id, route, api, tier and start (what a body still reads once it ended). The
    /// ending is fixed now, and the concurrency slot and upstream stream slot are freed now:
    /// the client already has its whole answer. The boxes change places: the exchange (about
    /// 1 KB) is not copied.
    pub fn take_for_finish(this: &mut Box<Exchange>) -> Box<Exchange> {
        this.settle();
        this.release();
        let mut stand_in = Box::new(Exchange::new(
            Arc::clone(&this.id),
            Arc::clone(&this.route),
            this.api,
            this.tier,
            (Method::GET, String::new()),
            this.started,
            Arc::clone(&this.shutting_down),
        ));
        stand_in.finished = true;
        stand_in.client_status = this.client_status;
        std::mem::replace(this, stand_in)
    }

    /// The one finish step: one record, one log line. Runs once; later calls do nothing.
    pub fn finish(&mut self, summary: Option<Summary>) -> Option<Figures> {
        if self.finished {
            return None;
        }
        self.finished = true;
        self.settle();
        let (ending, ended_at) = self.ending.take()?;
        let done = ended_at.saturating_duration_since(self.started);
        let eta = self
            .w
            .as_mut()
            .and_then(|w| w.eta_finish(ending.outcome == Outcome::Ok, done))
            .map(|said| crate::record::EtaRecord {
                basis: said.basis,
                issued_ms: said.first.map(|f| f.0),
                eta_ms: said.first.map(|f| f.1),
                error_at_25: said.error_at_25.map(|e| (e * 1e4).round() / 1e4),
            });
        if let Some(w) = self.w.as_mut() {
            let phase = if ending.outcome == Outcome::Ok {
                Phase::Done
            } else {
                Phase::Error
            };
            w.finish(phase);
        }
        let sent = self.tap.as_ref().and_then(|t| t.sent_at());
        let head_gap = match (self.upstream_head_at, self.client_head_at) {
            (Some(up), Some(client)) => client.saturating_duration_since(up),
            _ => Duration::ZERO,
        };
        let overhead_ms = sent.map(|s| ms(s.saturating_duration_since(self.started) + head_gap));
        let milestones = self.w.as_ref().map(|w| w.progress().milestones());
        let longest_silence_ms = self
            .w
            .as_ref()
            .map_or(ms(done), |w| w.progress().longest_silence(done));
        let figures = Figures {
            status: self.client_status,
            upstream_status: self.upstream_status,
            outcome: ending.outcome,
            cause: ending.cause,
            streamed: self.streamed,
            headers_ms: self
                .upstream_head_at
                .map(|t| ms(t.saturating_duration_since(self.started))),
            first_feedback_ms: milestones.and_then(|m| m.first_feedback_ms),
            first_token_ms: milestones.and_then(|m| m.first_token_ms),
            total_ms: ms(done),
            longest_silence_ms,
            overhead_ms,
            bytes: self.bytes,
            bytes_in: self.tap.as_ref().map_or(0, |t| t.bytes_in()),
            first_byte_ms: self
                .first_byte_at
                .map(|t| ms(t.saturating_duration_since(self.started))),
            usage: self.answer.1,
        };
        self.log(&figures);
        self.measure(&figures);
        let mut summary = summary;
        self.span(&figures, &ending, done, &mut summary);
        if let Some(capture) = self.capture.take() {
            let upstream_ms = match (sent, self.upstream_head_at) {
                (Some(s), Some(up)) => Some(ms(up.saturating_duration_since(s))),
                _ => None,
            };
            let end = End {
                request: self.tap.as_ref().map(|t| t.body()),
                client_status: self.client_status,
                upstream_status: self.upstream_status,
                streamed: self.streamed,
                outcome: Some(ending.outcome),
                // A failure after the client was told 2xx (an early commit, or the upstream's
                // own 200 and then an error inside its stream) is a cut-short response.
                partial: ending.partial || (ending.outcome != Outcome::Ok && self.client_ok()),
                milestones,
                longest_silence_ms: self.w.as_ref().map(|_| longest_silence_ms),
                done_ms: ms(done),
                overhead_ms,
                upstream_ms,
                summary,
                error: ending.error,
                disconnect: self.disconnect.take(),
                eta,
            };
            // The record is built, redacted and written on the writer's thread.
            capture
                .sink
                .submit_pending(Pending::new(capture.recorder, end));
        }
        self.release();
        Some(figures)
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.finish(None);
    }
}
