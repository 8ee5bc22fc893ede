//! The body as it flows: upstream chunks, heartbeats, deadlines, and how the body ends.

use super::{Collecting, Cut, ExchangeBody, Source};
use crate::apis::stream::{Dialect, Phase};
use crate::apis::upstream_error;
use crate::capture::Outcome;
use crate::progress::frames;
use crate::proxy::exchange::Ending;
use crate::proxy::inject::{Beat, Mode};
use crate::proxy::wrap::{Collector, Over};
use crate::sse::GzipError;
use bytes::Bytes;
use http::StatusCode;
use std::sync::atomic::Ordering;
use std::task::Context;
use tokio::time::Instant;

/// How the upstream body ended.
#[derive(Debug)]
pub(super) enum UpstreamEnd {
    Complete,
    Failed(String),
    IdleTimeout,
    TotalTimeout,
}

impl ExchangeBody {
    /// Connecting becomes waiting once the whole request body went upstream.
    pub(super) fn note_request_sent(&mut self) {
        let sent = self
            .ex
            .tap
            .as_ref()
            .is_some_and(|t| t.sent.load(Ordering::Acquire));
        if sent && self.w().progress().phase() == Phase::Connecting {
            let now = Instant::now();
            let at = self.ex.since_start(now);
            if let Some(p) = self.w().phase_at(Phase::Waiting, at) {
                self.push_event(&p);
                self.dl.beat_done(now);
            }
        }
    }

    /// A heartbeat came due.
    pub(super) fn heartbeat(&mut self) {
        let now = Instant::now();
        self.note_request_sent();
        let quiet = self
            .dl
            .last_upstream()
            .map(|t| now.saturating_duration_since(t));
        self.dl.beat_done(now);
        let beat = self.inj.heartbeat(quiet);
        // The side channel gets the heartbeat when someone listens; the client when it is due.
        let p = self.w().emit_heartbeat(beat == Beat::Send);
        match (beat, p) {
            (Beat::Send, Some(p)) => {
                // An event or a comment: either is something the client can paint.
                let at = self.at();
                self.w().progress_mut().feedback(at);
                let bytes = self.inj.heartbeat_bytes(&p);
                self.out.push_back(bytes);
            }
            (Beat::Defer(wait), _) => self.dl.beat_at(now + wait),
            _ => {}
        }
    }

    /// The upstream body is pending: act on any deadline. True when there is output or the
    /// state changed.
    pub(super) fn on_idle(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(due) = self.timer.poll_due(cx, &self.dl) else {
            return false;
        };
        if due.total {
            self.on_end(UpstreamEnd::TotalTimeout);
        } else if due.idle {
            self.on_end(UpstreamEnd::IdleTimeout);
        } else if due.beat {
            self.heartbeat();
        }
        // Whatever else came due is re-read on the next poll.
        true
    }

    /// One upstream data chunk.
    pub(super) fn on_data(&mut self, data: Bytes) {
        self.keep_data(&data);
        let now = Instant::now();
        self.dl.upstream_spoke(now);
        let at = self.ex.since_start(now);
        let Some(w) = self.ex.w.as_mut() else { return };
        let (Some(obs), progress) = (self.obs.as_mut(), w.progress_mut()) else {
            return;
        };
        let recorder = self.ex.capture.as_mut().map(|c| &mut c.recorder);
        let seen = obs.chunk(&data, at, progress, recorder);
        if obs.dialect().is_none() {
            if let Some(t) = self.ex.trace.as_mut() {
                // A whole answer: its span reads model, id and usage from it (on the exporter).
                t.answer_bytes(&data);
            }
            // And the metrics their model and tokens (at the finish step).
            self.ex.keep_whole_answer(&data);
        }
        match &mut self.src {
            Source::Stream { reframe, .. } => {
                let reframes = reframe.reframes();
                if let Err(over) = reframe.feed(data, &mut self.out) {
                    self.wrap_failed(over);
                    return;
                }
                self.inj
                    .set_boundary(reframes && self.inj.mode() == Mode::Events || seen.boundary);
            }
            Source::Collect(c) => {
                if let Err(over) = c.buf.push(&data) {
                    self.wrap_failed(over);
                    return;
                }
            }
            Source::Pending(_) | Source::Done => {}
        }
        if let Some(p) = self.w().signals_at(&seen.signals, at) {
            self.push_event(&p);
            self.dl.beat_done(now);
        }
        let ended = match &self.src {
            Source::Stream { body, .. } => http_body::Body::is_end_stream(body),
            Source::Collect(c) => http_body::Body::is_end_stream(&c.body),
            _ => false,
        };
        if ended {
            // Its last byte (known length): end now, hyper may not poll the body again.
            self.on_end(UpstreamEnd::Complete);
        }
    }

    /// The upstream body ended, completely or not.
    pub(super) fn on_end(&mut self, end: UpstreamEnd) {
        if matches!(end, UpstreamEnd::Complete)
            && self.obs.as_ref().is_some_and(|o| o.dialect().is_none())
        {
            // A whole answer's reasoning (if any) arrived with its last byte.
            let at = self.at();
            if let Some(c) = self.ex.capture.as_mut() {
                c.recorder.whole_body_done(at);
            }
        }
        self.keep_end(&end);
        match std::mem::replace(&mut self.src, Source::Done) {
            Source::Collect(c) => {
                let Collecting {
                    status,
                    headers,
                    buf,
                    ..
                } = *c;
                self.on_collected(end, status, &headers, buf);
            }
            Source::Stream { mut reframe, .. } => {
                if let Err(over) = reframe.finish(&mut self.out) {
                    self.wrap_failed(over);
                    return;
                }
                self.on_stream_end(end);
            }
            Source::Pending(_) | Source::Done => {}
        }
    }

    /// The observer's last word on the stream: its error, if any. What the end itself signals
    /// (Gemini's `done`, known only when its stream closes) goes to the client like any event,
    /// not only to the side channel: `seq` has no gap.
    fn observe_end(&mut self, complete: bool) -> Option<String> {
        let at = self.at();
        let w = self.ex.w.as_mut()?;
        let obs = self.obs.as_mut()?;
        let recorder = self.ex.capture.as_mut().map(|c| &mut c.recorder);
        let (signals, error) = obs.finish(at, complete, w.progress_mut(), recorder);
        if let Some(p) = w.signals_at(&signals, at) {
            if self.inj.mode() == Mode::Events {
                self.close_partial_event();
            }
            self.push_event(&p);
        }
        error
    }

    fn on_stream_end(&mut self, end: UpstreamEnd) {
        let stream_error = self.observe_end(matches!(end, UpstreamEnd::Complete));
        let end = match end {
            UpstreamEnd::Complete if self.obs.as_ref().is_some_and(|o| o.corrupt()) => {
                UpstreamEnd::Failed(NOT_GZIP.into())
            }
            end => end,
        };
        let upstream_ok = self
            .ex
            .upstream_status
            .is_some_and(|s| (200..300).contains(&s));
        let unterminated = self.obs.as_ref().is_some_and(|o| o.unterminated());
        let ending = match end {
            UpstreamEnd::Complete if upstream_ok && stream_error.is_none() && unterminated => {
                Ending::new(
                    Outcome::UpstreamError,
                    true,
                    UNTERMINATED,
                    UNTERMINATED_MSG.into(),
                )
            }
            UpstreamEnd::Complete if upstream_ok && stream_error.is_none() => Ending::ok(),
            UpstreamEnd::Complete => Ending {
                outcome: Outcome::UpstreamError,
                partial: false,
                cause: "upstream_status",
                error: stream_error,
            },
            end => cut(end),
        };
        let phase = if ending.outcome == Outcome::Ok {
            Phase::Done
        } else {
            Phase::Error
        };
        if ending.cause == UNTERMINATED {
            // The upstream ended its body cleanly: the off and comments tiers pass that end as
            // it came (a direct client would see it so); the events tier says what it was.
            if self.inj.mode() == Mode::Events {
                self.push_error(502, None, UNTERMINATED, UNTERMINATED_MSG);
            }
        } else if ending.partial {
            let message = ending.error.clone().unwrap_or_default();
            match (self.inj.mode(), self.committed) {
                (Mode::Events, _) => self.push_error(502, None, ending.cause, &message),
                // Cut inside an event: closing it would hand the client's parser the broken
                // half as an event before the error. Cut, as the upstream did: a parser drops
                // an unfinished event at the end of its stream.
                (_, true) if !self.inj.at_boundary() => self.cut = Some(Cut(message)),
                (_, true) => self.push_stream_error(StatusCode::BAD_GATEWAY, None, &message),
                // The client has the upstream's own head: its transfer must fail as it would
                // without aloud.
                (_, false) => self.cut = Some(Cut(message)),
            }
        } else if ending.outcome != Outcome::Ok && self.inj.mode() == Mode::Events {
            // The upstream's stream carried its own error event and ended: the events tier
            // still ends with `aloud.error`.
            let message = ending.error.clone().unwrap_or_default();
            let status = self.ex.upstream_status.unwrap_or(502);
            self.push_error(status, None, "upstream_stream_error", &message);
        }
        self.end(ending);
        self.finish_progress(phase);
    }

    /// Records the ending. A success counts once the client was handed the last byte: until
    /// then a client that leaves makes it `client_disconnected` (see `poll_frame`).
    pub(super) fn end(&mut self, ending: Ending) {
        if ending.outcome == Outcome::Ok {
            self.ok_when_drained = Some(ending);
        } else {
            self.ex.end(ending);
        }
    }

    /// Before aloud adds an event of its own at the end of a stream, a partial upstream event is
    /// closed, so the client's SSE parser sees aloud's event as an event.
    fn close_partial_event(&mut self) {
        if !self.inj.at_boundary() {
            self.out.push_back(Bytes::from_static(b"\n\n"));
            self.inj.set_boundary(true);
        }
    }

    /// The collected body ended: wrap it for the events tier, or turn an error into the
    /// stream's own error shape after an early commit.
    fn on_collected(
        &mut self,
        end: UpstreamEnd,
        status: StatusCode,
        headers: &http::HeaderMap,
        buf: Collector,
    ) {
        let (bytes, end) = match decode_body(headers, buf.bytes(), self.max_wrap_body) {
            Ok(bytes) => (bytes, end),
            // Decoded, it is past the bound the collected body was held to.
            Err(GzipError::TooLarge { limit }) => {
                drop(buf);
                self.wrap_failed(Over::Body { limit });
                return;
            }
            // Not the gzip its Content-Encoding says: a failed transfer, as the stream's
            // observer counts it (`on_stream_end`), never a success with the raw bytes. (An
            // error status stays what it was, its raw body attached.)
            Err(GzipError::Invalid(_)) if status.is_success() => (
                buf.bytes().to_vec(),
                match end {
                    UpstreamEnd::Complete => UpstreamEnd::Failed(NOT_GZIP.into()),
                    end => end,
                },
            ),
            Err(GzipError::Invalid(_)) => (buf.bytes().to_vec(), end),
        };
        drop(buf);
        let cut_short = !matches!(end, UpstreamEnd::Complete);
        if let Some(c) = self.ex.capture.as_mut() {
            // Decoded, in place of the pieces the observer kept as they passed.
            c.recorder.set_upstream_body(&bytes);
        }
        let ok = status.is_success() && !cut_short;
        if ok {
            let at = self.at();
            self.w().progress_mut().whole_answer(at);
        }
        let ending = match end {
            UpstreamEnd::Complete if ok => Ending::ok(),
            UpstreamEnd::Complete => Ending::new(
                Outcome::UpstreamError,
                false,
                "upstream_status",
                format!("the upstream answered {status}"),
            ),
            end => cut(end),
        };
        let phase = if ok { Phase::Done } else { Phase::Error };
        match self.inj.mode() {
            Mode::Events if ok => {
                let seq = self.w().next_seq();
                let v = self.w().version();
                let id = self.ex.id.clone();
                let event = frames::result(v, &id, seq, status, headers, &bytes);
                let event = self.w().publish(event);
                self.push_event(&event);
            }
            Mode::Events => {
                let message = ending.error.clone().unwrap_or_default();
                let code = if cut_short {
                    ending.cause
                } else {
                    "upstream_status"
                };
                self.push_error(status.as_u16(), Some(&bytes), code, &message);
            }
            Mode::Comments | Mode::Pass => {
                let message = ending.error.clone().unwrap_or_default();
                self.push_stream_error(status, Some(&bytes), &message);
            }
        }
        self.end(ending);
        self.finish_progress(phase);
    }

    /// The events tier's wrapping hit a bound: say so and stop reading the upstream.
    fn wrap_failed(&mut self, over: Over) {
        self.src = Source::Done;
        let message = over.message();
        self.keep_cut(&message);
        match self.inj.mode() {
            Mode::Events => self.push_error(502, None, over.code(), &message),
            // After an early commit in the comments tier (a collected error body past the
            // bound): the stream's own error shape, which the SDKs raise.
            Mode::Comments | Mode::Pass => {
                self.push_stream_error(StatusCode::BAD_GATEWAY, None, &message);
            }
        }
        self.ex
            .end(Ending::new(Outcome::ProxyError, true, over.code(), message));
        self.finish_progress(Phase::Error);
    }

    /// `aloud.error` (events tier) with a machine-readable `code`; with an upstream error body,
    /// its message and type are the upstream's own.
    pub(super) fn push_error(
        &mut self,
        status: u16,
        body: Option<&[u8]>,
        code: &str,
        message: &str,
    ) {
        self.close_partial_event();
        let theirs = body
            .map(|b| upstream_error::read(self.ex.api, b))
            .unwrap_or_default();
        let failure = frames::Failure {
            status,
            code,
            message: theirs.message.as_deref().unwrap_or(message),
            kind: theirs.kind.as_deref(),
            body,
        };
        let seq = self.w().next_seq();
        let v = self.w().version();
        let id = self.ex.id.clone();
        let err = frames::error(v, &id, seq, &failure);
        let err = self.w().publish(err);
        self.out.push_back(frames::event_bytes(&err));
    }

    /// After a commit, an error goes inside the stream in its dialect's own shape, which the
    /// SDKs raise (docs/streams.md).
    pub(super) fn push_stream_error(
        &mut self,
        status: StatusCode,
        body: Option<&[u8]>,
        message: &str,
    ) {
        self.close_partial_event();
        let dialect = Dialect::detect(self.ex.api, &self.path_and_query, "text/event-stream");
        self.out.push_back(frames::in_stream_error(
            self.ex.api,
            dialect,
            status,
            body,
            message,
        ));
    }

    /// Ends the progress: the final phase and `aloud.done` (sent in the events tier).
    pub(super) fn finish_progress(&mut self, phase: Phase) {
        if self.inj.mode() == Mode::Events {
            self.close_partial_event();
        }
        for p in self.w().finish(phase) {
            self.push_event(&p);
        }
    }
}

/// The ending of a body that did not complete.
/// The cause of a model stream that ended cleanly without its end marker or a finish reason.
const UNTERMINATED: &str = "upstream_unterminated";
const UNTERMINATED_MSG: &str = "the upstream's stream ended before its end marker";

fn cut(end: UpstreamEnd) -> Ending {
    let (outcome, cause, message) = match end {
        UpstreamEnd::IdleTimeout => (
            Outcome::Timeout,
            "idle_timeout",
            "no upstream bytes within the idle timeout".to_owned(),
        ),
        UpstreamEnd::TotalTimeout => (
            Outcome::Timeout,
            "total_timeout",
            "the exchange ran past its total timeout".to_owned(),
        ),
        UpstreamEnd::Failed(e) => (
            Outcome::UpstreamError,
            "upstream_error",
            format!("the upstream failed mid-body: {e}"),
        ),
        // Not called for a complete body; were it, it would still not read as a success.
        UpstreamEnd::Complete => (
            Outcome::UpstreamError,
            "upstream_error",
            "the upstream body ended early".to_owned(),
        ),
    };
    Ending::new(outcome, true, cause, message)
}

/// Why a body declared gzip failed to decode.
const NOT_GZIP: &str = "its body is not the gzip its Content-Encoding says";

/// The body after content decoding (gzip), bounded by `max`; an error when it is declared gzip
/// and is not (or is cut short), or decodes past `max`.
fn decode_body(headers: &http::HeaderMap, raw: &[u8], max: usize) -> Result<Vec<u8>, GzipError> {
    // The names the stream observer decodes too (`apis::stream`).
    let gzip = headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .is_some_and(|e| e.eq_ignore_ascii_case("gzip") || e.eq_ignore_ascii_case("x-gzip"));
    // An empty body (a 204, `Content-Length: 0`) is empty whatever its header says.
    if !gzip || raw.is_empty() {
        return Ok(raw.to_vec());
    }
    let mut d = crate::sse::GzipDecoder::new(max);
    let mut out = d.feed(raw)?;
    out.extend(d.finish()?);
    Ok(out)
}
