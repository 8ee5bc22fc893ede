//! The response body on the forwarding path: waits for the upstream head, relays the upstream
//! body chunk by chunk while the interpreter watches it, adds progress for the tier asked, and
//! hands a capture record over when the exchange ends.
//!
//! - `Pass`: the upstream's bytes only.
//! - `Comments`: plus `: aloud {...}` lines, only at the start or right after an event's blank
//!   line, while the upstream is silent.
//! - `Events`: an SSE stream of `aloud.*` events around the upstream's own events.
//!
//! `head` handles the upstream head or failure, `flow` the body and heartbeats, `finish` the
//! outcome and the capture record.

mod finish;
mod flow;
mod head;

use super::body::{OnEnd, RequestTap, TimedBody};
use super::error::ProxyError;
use crate::apis::Api;
use crate::apis::stream::{Phase, StreamInterpreter};
use crate::capture::CaptureSink;
use crate::capture::recorder::Recorder;
use crate::progress::Watcher;
use crate::progress::frames;
use crate::progress::hub::Published;
use crate::sse::{JsonArraySplitter, LineSplitter};
use bytes::{Bytes, BytesMut};
use finish::Ending;
use http::response::Parts;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
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

/// Builds the access-log callback once the upstream status is known.
pub type MakeOnEnd = Box<dyn FnOnce(StatusCode) -> Box<dyn OnEnd> + Send>;

/// Capture for one exchange: the record being built and where it goes.
pub struct Capture {
    pub recorder: Recorder,
    pub sink: Arc<dyn CaptureSink>,
}

/// Everything a relay needs besides its watcher and the head future.
pub struct RelaySpec {
    pub mode: Mode,
    pub api: Api,
    pub path_and_query: String,
    pub idle: Duration,
    pub deadline: Instant,
    pub heartbeat: Duration,
    pub make_on_end: MakeOnEnd,
    pub tap: Arc<RequestTap>,
    pub capture: Option<Capture>,
    pub shutting_down: Arc<AtomicBool>,
}

enum State {
    Pending(HeadFuture),
    Streaming {
        body: TimedBody<Incoming>,
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
    /// SSE already (or not reframed at all): forward as is.
    None,
    /// NDJSON: one `data:` event per line.
    Lines(LineSplitter),
    /// A JSON array (Gemini without `alt=sse`): one `data:` event per element.
    Array(JsonArraySplitter),
}

pub struct Relay {
    w: Watcher,
    spec: RelaySpec,
    make_on_end: Option<MakeOnEnd>,
    state: State,
    interp: Option<Box<StreamInterpreter>>,
    out: VecDeque<Bytes>,
    /// Whether the bytes sent so far end where a line may be added.
    at_boundary: bool,
    /// When the upstream last sent a byte (comments go out only after `heartbeat` of silence).
    last_upstream: Instant,
    /// The client already got `200 text/event-stream` before the upstream answered.
    committed: bool,
    head: Option<Parts>,
    failure: Option<ProxyError>,
    ending: Ending,
}

impl Relay {
    pub fn new(w: Watcher, mut spec: RelaySpec, head: HeadFuture) -> Self {
        let make_on_end = Some(std::mem::replace(
            &mut spec.make_on_end,
            Box::new(|_| Box::new(finish::NoLog)),
        ));
        Relay {
            committed: spec.mode == Mode::Events,
            ending: Ending::default(),
            w,
            spec,
            make_on_end,
            state: State::Pending(head),
            interp: None,
            out: VecDeque::new(),
            at_boundary: true,
            last_upstream: Instant::now(),
            head: None,
            failure: None,
        }
    }

    /// Announces the request: `accepted`, then `connecting` (the upstream request is on its
    /// way). In the events tier these are the first bytes the client gets.
    pub fn start(&mut self) {
        let accepted = self.w.emit();
        self.push_event(&accepted);
        if let Some(p) = self.w.phase(Phase::Connecting) {
            self.push_event(&p);
        }
        if self.committed {
            self.ending.client_head(Instant::now(), 200);
        }
    }

    /// Commits `200 text/event-stream` before the upstream answered (the comments tier after
    /// its hold ran out); from now on failures travel inside the stream.
    pub fn commit(&mut self) {
        self.committed = true;
        self.ending.client_head(Instant::now(), 200);
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
            if !matches!(self.state, State::Pending(_)) || self.poll_pending(cx) {
                return Poll::Ready(true);
            }
            let expired = limit
                .as_mut()
                .is_some_and(|l| l.as_mut().poll(cx).is_ready());
            if expired {
                Poll::Ready(false)
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// The upstream's head, once it arrived and the relay was not committed. Taking it marks
    /// the moment the client's head goes out.
    pub fn take_head(&mut self) -> Option<Parts> {
        let head = self.head.take()?;
        self.ending
            .client_head(Instant::now(), head.status.as_u16());
        Some(head)
    }

    /// The failure before any head, when the relay was not committed.
    pub fn take_failure(&mut self) -> Option<ProxyError> {
        self.failure.take()
    }

    fn at(&self) -> Duration {
        self.w.elapsed()
    }

    /// Queues an `aloud.*` event for the events tier (a piece of feedback the client sees).
    fn push_event(&mut self, p: &Published) {
        if self.spec.mode == Mode::Events {
            self.out.push_back(frames::event_bytes(p));
            let at = self.at();
            self.w.progress_mut().feedback(at);
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

    /// Polls the heartbeat while the upstream body is pending; true when there is output.
    fn idle_tick(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.w.poll_beat(cx) {
            return false;
        }
        self.heartbeat_tick();
        let _ = self.w.poll_beat(cx);
        !self.out.is_empty()
    }
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
                this.ending
                    .client_bytes(this.w.elapsed(), &mut this.spec.capture);
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
                        Ok(data) => {
                            this.on_chunk(data);
                            // Its last byte (known length): end now, hyper may not poll again.
                            if matches!(&this.state, State::Streaming { body, .. } if body.is_end_stream())
                            {
                                this.on_stream_end();
                            }
                        }
                        Err(trailers) if this.spec.mode == Mode::Pass => {
                            return Poll::Ready(Some(Ok(trailers)));
                        }
                        Err(_) => {}
                    },
                    Poll::Ready(Some(Err(_)) | None) => this.on_stream_end(),
                    Poll::Pending => {
                        if !this.idle_tick(cx) {
                            return Poll::Pending;
                        }
                    }
                },
                State::Collecting { body, buf, .. } => match Pin::new(body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            let at = this.w.elapsed();
                            this.w.progress_mut().upstream_bytes(at);
                            if buf.len() + data.len() <= flow::MAX_COLLECT {
                                buf.extend_from_slice(&data);
                            }
                        }
                        if matches!(&this.state, State::Collecting { body, .. } if body.is_end_stream())
                        {
                            this.on_collected();
                        }
                    }
                    Poll::Ready(Some(Err(_)) | None) => this.on_collected(),
                    Poll::Pending => {
                        if !this.idle_tick(cx) {
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
        match (&self.state, self.spec.mode) {
            (State::Streaming { body, .. }, Mode::Pass) if self.out.is_empty() => body.size_hint(),
            _ => SizeHint::default(),
        }
    }
}
