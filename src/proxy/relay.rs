//! The response body on the forwarding path: waits for the upstream head, relays the upstream
//! body chunk by chunk while the interpreter watches it, and adds progress for the tier asked.
//!
//! - `Pass`: the upstream's bytes only.
//! - `Comments`: plus `: aloud {...}` lines, only at the start or right after an event's blank
//!   line, while the upstream is silent.
//! - `Events`: an SSE stream of `aloud.*` events around the upstream's own events.

use super::body::{BodyEnd, OnEnd, RequestTap, TimedBody};
use super::error::ProxyError;
use crate::apis::Api;
use crate::apis::stream::{Dialect, Limits as StreamLimits, Phase, StreamInterpreter};
use crate::progress::Watcher;
use crate::progress::frames;
use crate::progress::hub::Published;
use crate::sse::{JsonArraySplitter, LineSplitter, Record};
use bytes::{Bytes, BytesMut};
use http::response::Parts;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

pub type HeadFuture = Pin<Box<dyn Future<Output = Result<Response<Incoming>, ProxyError>> + Send>>;

/// What aloud adds to the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Comments,
    Events,
}

/// Largest upstream body collected for `aloud.result` or an in-stream error.
const MAX_COLLECT: usize = 32 << 20;

/// Builds the access-log callback once the upstream status is known.
pub type MakeOnEnd = Box<dyn FnOnce(StatusCode) -> Box<dyn OnEnd> + Send>;

enum State {
    Pending(HeadFuture),
    Streaming {
        body: TimedBody<Incoming>,
        interp: Box<StreamInterpreter>,
        reframe: Reframe,
    },
    Collecting {
        body: TimedBody<Incoming>,
        status: StatusCode,
        headers: http::HeaderMap,
        buf: BytesMut,
    },
    Done,
}

/// Events tier: how upstream bytes become SSE.
enum Reframe {
    /// SSE already: forward as is.
    None,
    /// NDJSON: one `data:` event per line.
    Lines(LineSplitter),
    /// A JSON array (Gemini without `alt=sse`): one `data:` event per element.
    Array(JsonArraySplitter),
}

pub struct Relay {
    w: Watcher,
    mode: Mode,
    api: Api,
    path_and_query: String,
    idle: Duration,
    deadline: Instant,
    make_on_end: Option<MakeOnEnd>,
    state: State,
    out: VecDeque<Bytes>,
    /// Whether the bytes sent so far end where a line may be added.
    at_boundary: bool,
    /// When the upstream last sent a byte (comments go out only after `heartbeat` of silence).
    last_upstream: Instant,
    heartbeat: Duration,
    /// The client already got `200 text/event-stream` before the upstream answered.
    committed: bool,
    head: Option<Parts>,
    failure: Option<ProxyError>,
    tap: Arc<RequestTap>,
}

impl Relay {
    #[expect(
        clippy::too_many_arguments,
        reason = "one constructor call site, every part named"
    )]
    pub fn new(
        w: Watcher,
        mode: Mode,
        api: Api,
        path_and_query: String,
        idle: Duration,
        deadline: Instant,
        heartbeat: Duration,
        make_on_end: MakeOnEnd,
        head: HeadFuture,
        tap: Arc<RequestTap>,
    ) -> Self {
        Relay {
            w,
            mode,
            api,
            path_and_query,
            idle,
            deadline,
            make_on_end: Some(make_on_end),
            state: State::Pending(head),
            out: VecDeque::new(),
            at_boundary: true,
            last_upstream: Instant::now(),
            heartbeat,
            committed: mode == Mode::Events,
            head: None,
            failure: None,
            tap,
        }
    }

    pub fn watcher_mut(&mut self) -> &mut Watcher {
        &mut self.w
    }

    /// Announces the request: `accepted`, then `connecting` (the upstream request is on its
    /// way). In the events tier these are the first bytes the client gets.
    pub fn start(&mut self) {
        let accepted = self.w.emit();
        self.push_event(&accepted);
        if let Some(p) = self.w.phase(Phase::Connecting) {
            self.push_event(&p);
        }
    }

    /// Commits `200 text/event-stream` before the upstream answered (the comments tier after
    /// its hold ran out); from now on failures travel inside the stream.
    pub fn commit(&mut self) {
        self.committed = true;
    }

    /// The response headers to send when the stream is committed before the upstream answered.
    pub fn committed_head() -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        h
    }

    /// Waits for the upstream head until `until` (forever with `None`), publishing heartbeats.
    /// Returns false when `until` passed first.
    pub async fn wait_head(&mut self, until: Option<Instant>) -> bool {
        let mut limit = until.map(|t| Box::pin(tokio::time::sleep_until(t)));
        std::future::poll_fn(|cx| {
            if !matches!(self.state, State::Pending(_)) {
                return Poll::Ready(true);
            }
            if self.poll_pending(cx) {
                return Poll::Ready(true);
            }
            if let Some(l) = limit.as_mut() {
                if l.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(false);
                }
            }
            Poll::Pending
        })
        .await
    }

    /// The upstream's head, once it arrived and the relay was not committed.
    pub fn take_head(&mut self) -> Option<Parts> {
        self.head.take()
    }

    /// The failure before any head, when the relay was not committed.
    pub fn take_failure(&mut self) -> Option<ProxyError> {
        self.failure.take()
    }

    fn at(&self) -> Duration {
        self.w.elapsed()
    }

    fn push_event(&mut self, p: &Published) {
        match self.mode {
            Mode::Events => self.out.push_back(frames::event_bytes(p)),
            Mode::Comments | Mode::Pass => {}
        }
    }

    /// Polls the head future and the heartbeat; true when the state moved on.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> bool {
        self.note_request_sent();
        let State::Pending(fut) = &mut self.state else {
            return true;
        };
        match fut.as_mut().poll(cx) {
            Poll::Ready(Ok(response)) => {
                self.on_head(response);
                true
            }
            Poll::Ready(Err(e)) => {
                self.on_failure(e);
                true
            }
            Poll::Pending => {
                if self.w.poll_beat(cx) {
                    self.heartbeat_tick();
                    // Register the renewed timer.
                    let _ = self.w.poll_beat(cx);
                }
                false
            }
        }
    }

    /// Connecting becomes waiting once the whole request body went upstream.
    fn note_request_sent(&mut self) {
        if self.w.progress().phase() == Phase::Connecting
            && self.tap.sent.load(std::sync::atomic::Ordering::Acquire)
        {
            if let Some(p) = self.w.phase(Phase::Waiting) {
                self.push_event(&p);
            }
        }
    }

    fn heartbeat_tick(&mut self) {
        self.note_request_sent();
        let p = self.w.emit();
        match self.mode {
            Mode::Events if self.at_boundary => self.out.push_back(frames::event_bytes(&p)),
            // Before the head is sent, nothing may be queued (the client has no body yet).
            Mode::Comments
                if (self.committed || !matches!(self.state, State::Pending(_)))
                    && self.at_boundary
                    && self.last_upstream.elapsed() >= self.heartbeat =>
            {
                self.out.push_back(frames::comment_bytes(&p));
            }
            _ => {}
        }
    }

    fn on_head(&mut self, response: Response<Incoming>) {
        let (mut parts, incoming) = response.into_parts();
        let status = parts.status;
        let at = self.at();
        self.w.progress_mut().upstream_headers(status.as_u16(), at);
        if let Some(p) = self.w.phase(Phase::Waiting) {
            self.push_event(&p);
        }
        let on_end = self
            .make_on_end
            .take()
            .map_or_else(|| Box::new(NoLog) as Box<dyn OnEnd>, |f| f(status));
        let body = TimedBody::new(incoming, self.idle, self.deadline, on_end);
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let encoding = parts
            .headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let dialect = Dialect::detect(self.api, &self.path_and_query, &content_type);
        let interp = Box::new(
            StreamInterpreter::with_dialect(dialect, StreamLimits::default())
                .with_content_encoding(encoding.as_deref()),
        );
        let compressed = encoding
            .as_deref()
            .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
        let streams = dialect.is_some() && status.is_success();
        if !self.committed {
            // Off and comments tiers before any commit: the client gets the upstream's own head.
            if self.mode == Mode::Comments
                && !(streams && dialect.is_some_and(Dialect::tolerates_comments) && !compressed)
            {
                self.mode = Mode::Pass;
            }
            super::headers::strip_hop_by_hop(&mut parts.headers);
            if super::headers::is_event_stream(&parts.headers) {
                parts
                    .headers
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                parts
                    .headers
                    .insert("x-accel-buffering", HeaderValue::from_static("no"));
            }
            self.head = Some(parts);
            self.state = State::Streaming {
                body,
                interp,
                reframe: Reframe::None,
            };
            return;
        }
        match self.mode {
            Mode::Comments => {
                let note = serde_json::json!({
                    "upstream_status": status.as_u16(),
                    "upstream_headers": frames::headers_json(&parts.headers),
                });
                self.out.push_back(crate::sse::comment(&note.to_string()));
                if streams && !compressed {
                    self.state = State::Streaming {
                        body,
                        interp,
                        reframe: Reframe::None,
                    };
                } else {
                    self.state = State::Collecting {
                        body,
                        status,
                        headers: parts.headers,
                        buf: BytesMut::new(),
                    };
                }
            }
            Mode::Events if streams && !compressed => {
                let reframe = match dialect {
                    Some(Dialect::OllamaNdjson) => {
                        Reframe::Lines(LineSplitter::new(StreamLimits::default().max_event))
                    }
                    Some(Dialect::GeminiJsonArray) => {
                        Reframe::Array(JsonArraySplitter::new(StreamLimits::default().max_event))
                    }
                    _ => Reframe::None,
                };
                self.state = State::Streaming {
                    body,
                    interp,
                    reframe,
                };
            }
            _ => {
                self.state = State::Collecting {
                    body,
                    status,
                    headers: parts.headers,
                    buf: BytesMut::new(),
                }
            }
        }
    }

    fn on_failure(&mut self, e: ProxyError) {
        self.state = State::Done;
        if !self.committed {
            let phase_events = self.w.finish(Phase::Error);
            drop(phase_events);
            self.failure = Some(e);
            return;
        }
        tracing::warn!(id = self.w.id(), status = e.status.as_u16(), label = e.label, message = %e.message, "request failed after the stream started");
        match self.mode {
            Mode::Events => {
                let seq = self.w.next_seq();
                let err = frames::error(
                    self.w.version(),
                    self.w.id(),
                    seq,
                    e.status.as_u16(),
                    None,
                    &e.message,
                );
                let err = self.w.publish(err);
                self.out.push_back(frames::event_bytes(&err));
                for p in self.w.finish(Phase::Error) {
                    self.out.push_back(frames::event_bytes(&p));
                }
            }
            Mode::Comments | Mode::Pass => {
                let dialect = Dialect::detect(self.api, &self.path_and_query, "text/event-stream");
                self.out.push_back(frames::in_stream_error(
                    self.api, dialect, e.status, None, &e.message,
                ));
                self.w.finish(Phase::Error);
            }
        }
    }

    /// Handles one upstream data chunk in the streaming state.
    fn on_chunk(&mut self, data: Bytes) {
        self.last_upstream = Instant::now();
        let at = self.at();
        self.w.progress_mut().upstream_bytes(at);
        let State::Streaming {
            interp, reframe, ..
        } = &mut self.state
        else {
            return;
        };
        let step = interp.feed(&data);
        let boundary_after = interp.at_boundary();
        match reframe {
            Reframe::None => self.out.push_back(data),
            Reframe::Lines(s) => {
                let mut records = Vec::new();
                s.feed(&data, &mut records);
                push_records(&mut self.out, records);
            }
            Reframe::Array(s) => {
                let mut records = Vec::new();
                s.feed(&data, &mut records);
                push_records(&mut self.out, records);
            }
        }
        self.at_boundary = match (self.mode, reframe) {
            (Mode::Events, Reframe::Lines(_) | Reframe::Array(_)) => true,
            _ => boundary_after,
        };
        if let Some(p) = self.w.signals(&step.signals) {
            if self.mode == Mode::Events && self.at_boundary {
                self.out.push_back(frames::event_bytes(&p));
            }
        }
    }

    /// The upstream body ended (or was cut).
    fn on_stream_end(&mut self) {
        let State::Streaming {
            body,
            interp,
            reframe,
        } = &mut self.state
        else {
            return;
        };
        let end = body.ended().unwrap_or(BodyEnd::Complete);
        let signals = interp.finish();
        if let Reframe::Lines(s) = reframe {
            let mut records = Vec::new();
            s.finish(&mut records);
            push_records(&mut self.out, records);
        }
        let _ = self.w.signals(&signals);
        let errored = interp.summary().output.error.is_some();
        self.state = State::Done;
        let phase = if end == BodyEnd::Complete && !errored {
            Phase::Done
        } else {
            Phase::Error
        };
        if end != BodyEnd::Complete && self.mode == Mode::Events {
            let seq = self.w.next_seq();
            let message = format!("the upstream stream ended early: {}", end.as_str());
            let err = self.w.publish(frames::error(
                self.w.version(),
                self.w.id(),
                seq,
                502,
                None,
                &message,
            ));
            self.out.push_back(frames::event_bytes(&err));
        }
        for p in self.w.finish(phase) {
            self.push_event(&p);
        }
    }

    /// The collected body ended: wrap it for the events tier, or turn an error into the
    /// stream's own error shape after an early commit.
    fn on_collected(&mut self) {
        let State::Collecting {
            status,
            headers,
            buf,
            body,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return;
        };
        let cut = body.ended().is_some_and(|e| e != BodyEnd::Complete);
        let bytes = decode_body(&headers, &buf);
        match self.mode {
            Mode::Events => {
                let seq = self.w.next_seq();
                let v = self.w.version();
                let event = if status.is_success() && !cut {
                    frames::result(v, self.w.id(), seq, status, &headers, &bytes)
                } else {
                    let message = if cut {
                        "the upstream body ended early"
                    } else {
                        "the upstream answered with an error"
                    };
                    frames::error(v, self.w.id(), seq, status.as_u16(), Some(&bytes), message)
                };
                let event = self.w.publish(event);
                self.out.push_back(frames::event_bytes(&event));
                let phase = if status.is_success() && !cut {
                    Phase::Done
                } else {
                    Phase::Error
                };
                for p in self.w.finish(phase) {
                    self.out.push_back(frames::event_bytes(&p));
                }
            }
            Mode::Comments | Mode::Pass => {
                if status.is_success() {
                    self.out.push_back(Bytes::from(bytes));
                    self.w.finish(Phase::Done);
                } else {
                    let dialect =
                        Dialect::detect(self.api, &self.path_and_query, "text/event-stream");
                    let message = format!("the upstream answered {status}");
                    self.out.push_back(frames::in_stream_error(
                        self.api,
                        dialect,
                        status,
                        Some(&bytes),
                        &message,
                    ));
                    self.w.finish(Phase::Error);
                }
            }
        }
    }
}

fn push_records(out: &mut VecDeque<Bytes>, records: Vec<Record>) {
    for r in records {
        if let Record::Item(bytes) = r {
            let mut frame = Vec::with_capacity(bytes.len() + 8);
            frame.extend_from_slice(b"data: ");
            frame.extend(bytes.iter().filter(|b| **b != b'\n' && **b != b'\r'));
            frame.extend_from_slice(b"\n\n");
            out.push_back(Bytes::from(frame));
        }
    }
}

/// The body after content decoding (gzip), bounded; undecodable bodies stay as they are.
fn decode_body(headers: &http::HeaderMap, raw: &[u8]) -> Vec<u8> {
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("gzip"));
    if !gzip {
        return raw.to_vec();
    }
    let mut d = crate::sse::GzipDecoder::new(MAX_COLLECT);
    match (d.feed(raw), d.finish()) {
        (Ok(mut a), Ok(b)) => {
            a.extend(b);
            a
        }
        _ => raw.to_vec(),
    }
}

struct NoLog;
impl OnEnd for NoLog {
    fn on_end(self: Box<Self>, _: BodyEnd, _: u64) {}
}

impl Body for Relay {
    type Data = Bytes;
    type Error = super::body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        loop {
            if let Some(b) = this.out.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Pending(_) => {
                    if !this.poll_pending(cx) && this.out.is_empty() {
                        return Poll::Pending;
                    }
                }
                State::Streaming { body, .. } => match Pin::new(body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => this.on_chunk(data),
                        Err(trailers) if this.mode == Mode::Pass => {
                            return Poll::Ready(Some(Ok(trailers)));
                        }
                        Err(_) => {}
                    },
                    Poll::Ready(Some(Err(_))) | Poll::Ready(None) => this.on_stream_end(),
                    Poll::Pending => {
                        if !this.w.poll_beat(cx) {
                            return Poll::Pending;
                        }
                        this.heartbeat_tick();
                        let _ = this.w.poll_beat(cx);
                        if this.out.is_empty() {
                            return Poll::Pending;
                        }
                    }
                },
                State::Collecting { body, buf, .. } => match Pin::new(body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            let at = this.w.elapsed();
                            this.w.progress_mut().upstream_bytes(at);
                            if buf.len() + data.len() <= MAX_COLLECT {
                                buf.extend_from_slice(&data);
                            }
                        }
                    }
                    Poll::Ready(Some(Err(_))) | Poll::Ready(None) => this.on_collected(),
                    Poll::Pending => {
                        if !this.w.poll_beat(cx) {
                            return Poll::Pending;
                        }
                        this.heartbeat_tick();
                        let _ = this.w.poll_beat(cx);
                        if this.out.is_empty() {
                            return Poll::Pending;
                        }
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done) && self.out.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.state, self.mode) {
            (State::Streaming { body, .. }, Mode::Pass) if self.out.is_empty() => body.size_hint(),
            _ => SizeHint::default(),
        }
    }
}
