//! The response body of a proxied exchange: it owns the exchange and wires the small parts
//! together — waiting for the head (`wait`), observing the body (`observe`), injecting at
//! boundaries (`inject`), the events tier's wrapping (`wrap`), and the one timer
//! (`deadlines`). `head` handles the upstream's head or failure, `flow` the body, its
//! heartbeats and its end.
//!
//! Failure is never turned into success: in the off tier, and in the comments tier while the
//! client has the upstream's own head, an upstream failure or a timeout after the head makes
//! `poll_frame` return an error, so hyper aborts the response (HTTP/1.1: no terminating
//! chunk), exactly as the client would see without aloud. After an early commit the error
//! travels inside the stream in its dialect's own shape (docs/streams.md), and in the events
//! tier as `aloud.error`.

mod flow;
mod head;
mod keep;

use super::deadlines::{Deadlines, Timer};
use super::error::ProxyError;
use super::exchange::{Ending, Exchange};
use super::inject::{Injector, Mode};
use super::later::{Job, Later};
use super::observe::Observer;
use super::wait::{Waited, poll_head};
use super::wrap::{Budget, Collector, Reframe};
use crate::apis::stream::Phase;
use crate::progress::Watcher;
use crate::progress::hub::Published;
use crate::proxy::upstream::UpstreamBody;
use bytes::Bytes;
use http::response::Parts;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

pub type HeadFuture =
    Pin<Box<dyn Future<Output = Result<Response<UpstreamBody>, ProxyError>> + Send>>;

/// Everything the body needs besides the exchange and the head future.
pub struct Spec {
    pub mode: Mode,
    pub path_and_query: String,
    pub deadlines: Deadlines,
    pub headers_timeout: Duration,
    pub max_wrap_body: usize,
    pub wrap_budget: Arc<Budget>,
    /// The server's queue of finish steps, run after the client's last bytes went out.
    pub later: Arc<Later>,
}

enum Source {
    Pending(HeadFuture),
    Stream {
        body: UpstreamBody,
        reframe: Reframe,
    },
    /// Boxed: rare (the events tier's whole answers, errors), and the body lives as long as
    /// the exchange.
    Collect(Box<Collecting>),
    Done,
}

struct Collecting {
    body: UpstreamBody,
    status: StatusCode,
    headers: http::HeaderMap,
    buf: Collector,
}

/// The error a body returns so hyper aborts the client's response.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Cut(pub String);

/// What waiting for the head came to.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadWait {
    /// The upstream answered, or failed before answering: take the head or the failure.
    Settled,
    /// The comments tier's hold ran out first.
    HoldExpired,
}

pub struct ExchangeBody {
    ex: Box<Exchange>,
    src: Source,
    obs: Option<Observer>,
    inj: Injector,
    dl: Deadlines,
    timer: Timer,
    out: VecDeque<Bytes>,
    /// Once `out` drains, fail the client's transfer with this.
    cut: Option<Cut>,
    /// The cut waited one turn, so hyper wrote out what it held: an error frame makes it drop
    /// its write buffer, and the upstream's last bytes would be lost to the client.
    cut_after_flush: bool,
    /// A successful ending, recorded once the client was handed the last byte.
    ok_when_drained: Option<Ending>,
    /// The client already got `200 text/event-stream` before the upstream answered.
    committed: bool,
    /// Boxed, like `failure`: each is taken once, just after the head wait.
    head: Option<Box<Parts>>,
    failure: Option<Box<ProxyError>>,
    path_and_query: String,
    headers_timeout: Duration,
    max_wrap_body: usize,
    wrap_budget: Arc<Budget>,
    /// The upstream's bytes kept for a resume (`on_disconnect = "finish"`), and whether the
    /// client already left (`keep.rs`).
    kept: Option<Arc<crate::progress::keep::Kept>>,
    detached: bool,
    /// Where the finish step goes to run after the flush (`later.rs`).
    later: Arc<Later>,
}

impl ExchangeBody {
    /// A body for `ex`, whose progress has been admitted (`ex.w` is set).
    pub fn new(ex: Box<Exchange>, spec: Spec, head: HeadFuture) -> Self {
        let heartbeat = spec.deadlines.heartbeat();
        let timer = Timer::new(&spec.deadlines);
        let mut body = ExchangeBody {
            committed: spec.mode == Mode::Events,
            inj: Injector::new(spec.mode, heartbeat),
            ex,
            src: Source::Pending(head),
            obs: None,
            dl: spec.deadlines,
            timer,
            out: VecDeque::new(),
            cut: None,
            cut_after_flush: false,
            ok_when_drained: None,
            head: None,
            failure: None,
            path_and_query: spec.path_and_query,
            headers_timeout: spec.headers_timeout,
            max_wrap_body: spec.max_wrap_body,
            wrap_budget: spec.wrap_budget,
            kept: None,
            detached: false,
            later: spec.later,
        };
        body.start();
        body
    }

    /// Announces the request: `accepted`, then `connecting`. In the events tier these are the
    /// client's first bytes.
    fn start(&mut self) {
        if let Some(accepted) = self.w().emit() {
            self.push_event(&accepted);
        }
        if let Some(p) = self.w().phase(Phase::Connecting) {
            self.push_event(&p);
        }
        if self.committed {
            self.ex.client_head(Instant::now(), 200);
        }
    }

    #[expect(
        clippy::expect_used,
        reason = "ExchangeBody::new is only given an admitted exchange"
    )]
    fn w(&mut self) -> &mut Watcher {
        self.ex
            .w
            .as_mut()
            .expect("an admitted exchange has progress")
    }

    fn at(&self) -> Duration {
        self.ex.elapsed()
    }

    /// Waits for the upstream head, or until the comments tier's hold runs out.
    pub async fn wait_head(&mut self, hold_until: Option<Instant>) -> HeadWait {
        if let Some(h) = hold_until {
            self.dl.hold_until(h);
        }
        let waited = std::future::poll_fn(|cx| {
            if !matches!(self.src, Source::Pending(_)) {
                return Poll::Ready(HeadWait::Settled);
            }
            match self.poll_pending(cx) {
                Poll::Ready(true) => Poll::Ready(HeadWait::HoldExpired),
                Poll::Ready(false) => Poll::Ready(HeadWait::Settled),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        self.dl.clear_hold();
        waited
    }

    /// Commits `200 text/event-stream` before the upstream answered (the comments tier after
    /// its hold): from now on failures travel inside the stream.
    pub fn commit(&mut self) {
        self.committed = true;
        self.inj.head_out();
        self.ex.client_head(Instant::now(), 200);
        // The comments start with the commit: the first one goes with the head, not at the
        // next heartbeat, up to an interval later (the next is due one interval after it).
        self.heartbeat();
    }

    /// The response headers of a stream committed before the upstream answered.
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

    /// The upstream's head, when it arrived before any commit. Taking it sends the client's.
    pub fn take_head(&mut self) -> Option<Parts> {
        let mut head = self.head.take()?;
        self.ex.client_head(Instant::now(), head.status.as_u16());
        self.inj.head_out();
        // A line of aloud's own next to the upstream's, which passes untouched.
        head.headers
            .append(super::timing::SERVER_TIMING, self.server_timing());
        Some(*head)
    }

    /// `Server-Timing` for the client's head, going out now.
    pub fn server_timing(&self) -> HeaderValue {
        self.ex.server_timing(true)
    }

    /// The failure before any head, when nothing was committed.
    pub fn take_failure(&mut self) -> Option<ProxyError> {
        self.failure.take().map(|f| *f)
    }

    /// Queues an `aloud.*` event for the events tier (feedback the client sees).
    fn push_event(&mut self, p: &Published) {
        if let Some(bytes) = self.inj.event(p) {
            self.out.push_back(bytes);
            let at = self.at();
            self.w().progress_mut().feedback(at);
        }
    }

    /// Polls the head future and the timer. `Ready(true)`: the hold ran out; `Ready(false)`: the
    /// head or a failure arrived.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        loop {
            self.note_request_sent();
            let Source::Pending(fut) = &mut self.src else {
                return Poll::Ready(false);
            };
            match poll_head(
                fut.as_mut(),
                cx,
                &self.dl,
                &mut self.timer,
                self.headers_timeout,
            ) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Waited::Head(response)) => {
                    self.on_head(response);
                    return Poll::Ready(false);
                }
                Poll::Ready(Waited::Failed(e)) => {
                    self.on_failure(e);
                    return Poll::Ready(false);
                }
                Poll::Ready(Waited::Due(due)) => {
                    if due.beat {
                        self.heartbeat();
                    }
                    if due.hold {
                        self.dl.clear_hold();
                        return Poll::Ready(true);
                    }
                    if !self.out.is_empty() {
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    /// A success waiting for the last byte to be handed over counts now, when nothing is left
    /// to send.
    fn settle_ok(&mut self) {
        if matches!(self.src, Source::Done)
            && self.out.is_empty()
            && self.cut.is_none()
            && let Some(ending) = self.ok_when_drained.take()
        {
            self.ex.end(ending);
        }
    }

    /// Ends with `e` (a failure aloud found itself after the head was handled).
    pub fn fail(&mut self, e: &ProxyError) {
        self.ex.end(ending_for(e));
    }

    /// Ends the exchange (the body is done): one record, one log line. The server's queue
    /// (`later.rs`) runs the finish step once hyper has written what it holds; when it refuses
    /// (no server task, or full), it runs here and now.
    fn finish(&mut self) {
        self.keep_finish();
        if self.ex.is_finished() {
            return;
        }
        let streamed = self.obs.as_ref().map(|obs| {
            let out = &obs.summary().output;
            (out.response_model.clone(), out.usage)
        });
        // Only a captured or traced exchange needs what the interpreter learnt.
        let wanted = self.ex.capture.is_some() || self.ex.trace.is_some();
        let summary = match self.obs.as_mut() {
            Some(obs) if wanted => Some(Box::new(obs.take_summary())),
            _ => None,
        };
        let job = Job {
            ex: Exchange::take_for_finish(&mut self.ex),
            streamed,
            summary,
        };
        if let Err(job) = self.later.defer(job) {
            job.run();
        }
    }
}

impl Body for ExchangeBody {
    type Data = Bytes;
    type Error = super::body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        loop {
            if let Some(b) = this.out.pop_front() {
                if !this.detached {
                    this.ex.client_bytes(b.len());
                }
                if this.out.is_empty() {
                    // The last byte of a body that ended well is handed over now (hyper may
                    // not poll a body of known length again).
                    this.settle_ok();
                }
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            if this.cut.is_some() && !this.cut_after_flush {
                // One turn for hyper to flush the bytes it holds before the transfer fails
                // (a direct upstream's last bytes reach the client before its failure).
                this.cut_after_flush = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if let Some(cut) = this.cut.take() {
                this.src = Source::Done;
                this.finish();
                return Poll::Ready(Some(Err(Box::new(cut))));
            }
            let step = match &mut this.src {
                Source::Done => {
                    this.settle_ok();
                    this.finish();
                    return Poll::Ready(None);
                }
                Source::Pending(_) => match this.poll_pending(cx) {
                    Poll::Pending if this.out.is_empty() => return Poll::Pending,
                    _ => continue,
                },
                Source::Stream { body, .. } => Pin::new(body).poll_frame(cx),
                Source::Collect(c) => Pin::new(&mut c.body).poll_frame(cx),
            };
            match step {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.on_data(data),
                    Err(trailers) if this.inj.mode() == Mode::Pass && !this.committed => {
                        // Trailers are the body's last frame.
                        this.on_end(flow::UpstreamEnd::Complete);
                        if this.out.is_empty() && this.cut.is_none() {
                            this.settle_ok();
                        }
                        return Poll::Ready(Some(Ok(trailers)));
                    }
                    Err(_) => {}
                },
                Poll::Ready(Some(Err(e))) => this.on_end(flow::UpstreamEnd::Failed(e.to_string())),
                Poll::Ready(None) => this.on_end(flow::UpstreamEnd::Complete),
                Poll::Pending => {
                    if !this.on_idle(cx) {
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.src, Source::Done) && self.out.is_empty() && self.cut.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.src, self.inj.mode()) {
            (Source::Stream { body, .. }, Mode::Pass) if self.out.is_empty() && !self.committed => {
                body.size_hint()
            }
            _ => SizeHint::default(),
        }
    }
}

impl Drop for ExchangeBody {
    fn drop(&mut self) {
        // The client left (or a shutdown cut the connection) before the end: the exchange's
        // finish step records that; at a normal end it already ran and this does nothing.
        self.finish();
    }
}

/// The ending for an error aloud answers itself.
pub fn ending_for(e: &ProxyError) -> Ending {
    let outcome = if e.status == StatusCode::GATEWAY_TIMEOUT {
        crate::capture::Outcome::Timeout
    } else {
        crate::capture::Outcome::ProxyError
    };
    Ending::new(outcome, false, e.label, e.message.clone())
}
