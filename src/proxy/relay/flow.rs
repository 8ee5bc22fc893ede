//! The body as it flows: upstream chunks, heartbeats, and the end of the upstream body.

use super::{Mode, Reframe, Relay, State};
use crate::apis::stream::{Dialect, Phase, Signal};
use crate::capture::Outcome;
use crate::progress::frames;
use crate::proxy::body::BodyEnd;
use crate::sse::Record;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use tokio::time::Instant;

/// Largest upstream body collected for `aloud.result` or an in-stream error.
pub(super) const MAX_COLLECT: usize = 32 << 20;

impl Relay {
    /// Connecting becomes waiting once the whole request body went upstream.
    pub(super) fn note_request_sent(&mut self) {
        if self.w.progress().phase() == Phase::Connecting
            && self.spec.tap.sent.load(Ordering::Acquire)
            && let Some(p) = self.w.phase(Phase::Waiting)
        {
            self.push_event(&p);
        }
    }

    pub(super) fn heartbeat_tick(&mut self) {
        self.note_request_sent();
        let p = self.w.emit_heartbeat();
        match self.spec.mode {
            Mode::Events if self.at_boundary => self.push_event(&p),
            // Before the head is sent, nothing may be queued (the client has no body yet).
            Mode::Comments if self.committed || !matches!(self.state, State::Pending(_)) => {
                let quiet_since = self.last_upstream.elapsed();
                if quiet_since < self.spec.heartbeat {
                    // The upstream spoke less than a heartbeat ago: the comment is due one
                    // heartbeat after that, not a whole heartbeat from now.
                    self.w.beat_by(self.last_upstream + self.spec.heartbeat);
                } else if self.at_boundary {
                    self.out.push_back(frames::comment_bytes(&p));
                }
            }
            _ => {}
        }
    }

    /// Handles one upstream data chunk in the streaming state.
    pub(super) fn on_chunk(&mut self, data: Bytes) {
        self.last_upstream = Instant::now();
        let at = self.at();
        self.w.progress_mut().upstream_bytes(at);
        let (Some(interp), State::Streaming { reframe, .. }) =
            (self.interp.as_mut(), &mut self.state)
        else {
            return;
        };
        let step = interp.feed(&data);
        let boundary_after = interp.at_boundary();
        let whole_answer = interp.dialect().is_none();
        if let Some(c) = self.spec.capture.as_mut() {
            if whole_answer {
                c.recorder.upstream_body(&data);
            } else {
                c.recorder.after_feed(&interp.summary().output, at);
            }
        }
        if whole_answer
            && self
                .ending
                .upstream_status
                .is_some_and(|s| (200..300).contains(&s))
        {
            // A non-streaming answer: its first bytes carry the first token.
            self.w.progress_mut().whole_answer(at);
        }
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
        self.at_boundary = match (self.spec.mode, reframe) {
            (Mode::Events, Reframe::Lines(_) | Reframe::Array(_)) => true,
            _ => boundary_after,
        };
        if step
            .signals
            .iter()
            .any(|s| matches!(s, Signal::AnswerDelta { .. }))
        {
            // Answer content is feedback in every tier.
            self.w.progress_mut().feedback(at);
        }
        if let Some(p) = self.w.signals(&step.signals)
            && self.at_boundary
        {
            self.push_event(&p);
        }
    }

    /// The upstream body ended (or was cut).
    pub(super) fn on_stream_end(&mut self) {
        let State::Streaming { body, reframe } = &mut self.state else {
            return;
        };
        let end = body.ended().unwrap_or(BodyEnd::Complete);
        if let Reframe::Lines(s) = reframe {
            let mut records = Vec::new();
            s.finish(&mut records);
            push_records(&mut self.out, records);
        }
        self.state = State::Done;
        let at = self.at();
        let (signals, errored) = match self.interp.as_mut() {
            Some(interp) => {
                let signals = interp.finish();
                if let Some(c) = self.spec.capture.as_mut() {
                    c.recorder.after_feed(&interp.summary().output, at);
                }
                let error = interp.summary().output.error.clone();
                (signals, error)
            }
            None => (Vec::new(), None),
        };
        if signals
            .iter()
            .any(|s| matches!(s, Signal::AnswerDelta { .. }))
        {
            self.w.progress_mut().feedback(at);
        }
        let _ = self.w.signals(&signals);
        let upstream_ok = self
            .ending
            .upstream_status
            .is_some_and(|s| (200..300).contains(&s));
        let (outcome, partial) = match end {
            BodyEnd::Complete if upstream_ok && errored.is_none() => (Outcome::Ok, false),
            BodyEnd::Complete => (Outcome::UpstreamError, false),
            BodyEnd::IdleTimeout | BodyEnd::TotalTimeout => (Outcome::Timeout, true),
            BodyEnd::UpstreamError => (Outcome::UpstreamError, true),
            BodyEnd::ClientGone => (Outcome::ClientDisconnected, true),
        };
        let message = (end != BodyEnd::Complete)
            .then(|| format!("the upstream stream ended early: {}", end.as_str()));
        self.ending
            .end(outcome, partial, message.clone().or(errored));
        if let (Some(message), Mode::Events) = (&message, self.spec.mode) {
            let seq = self.w.next_seq();
            let err = frames::error(self.w.version(), self.w.id(), seq, 502, None, message);
            let err = self.w.publish(err);
            self.out.push_back(frames::event_bytes(&err));
        }
        let phase = if outcome == Outcome::Ok {
            Phase::Done
        } else {
            Phase::Error
        };
        for p in self.w.finish(phase) {
            self.push_event(&p);
        }
    }

    /// The collected body ended: wrap it for the events tier, or turn an error into the
    /// stream's own error shape after an early commit.
    pub(super) fn on_collected(&mut self) {
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
        if let Some(c) = self.spec.capture.as_mut() {
            c.recorder.upstream_body(&bytes);
        }
        let ok = status.is_success() && !cut;
        if ok {
            let at = self.at();
            self.w.progress_mut().whole_answer(at);
        }
        let outcome = match body.ended() {
            Some(BodyEnd::IdleTimeout | BodyEnd::TotalTimeout) => Outcome::Timeout,
            _ if ok => Outcome::Ok,
            _ => Outcome::UpstreamError,
        };
        let error = (!ok).then(|| {
            format!(
                "the upstream answered {status}{}",
                if cut { " and the body was cut" } else { "" }
            )
        });
        self.ending.end(outcome, cut, error);
        let phase = if ok { Phase::Done } else { Phase::Error };
        match self.spec.mode {
            Mode::Events => {
                let seq = self.w.next_seq();
                let v = self.w.version();
                let event = if ok {
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
                self.push_event(&event);
                for p in self.w.finish(phase) {
                    self.push_event(&p);
                }
            }
            Mode::Comments | Mode::Pass => {
                if status.is_success() {
                    self.out.push_back(Bytes::from(bytes));
                } else {
                    let message = format!("the upstream answered {status}");
                    self.push_stream_error(status, Some(&bytes), &message);
                }
                self.w.finish(phase);
            }
        }
    }
}

impl Relay {
    /// After a commit, an error goes inside the stream in its dialect's own shape (SDKs raise it).
    pub(super) fn push_stream_error(
        &mut self,
        status: http::StatusCode,
        body: Option<&[u8]>,
        message: &str,
    ) {
        let dialect = Dialect::detect(
            self.spec.api,
            &self.spec.path_and_query,
            "text/event-stream",
        );
        self.out.push_back(frames::in_stream_error(
            self.spec.api,
            dialect,
            status,
            body,
            message,
        ));
    }
}

/// One `data:` event per record (NDJSON line or JSON array element) for the events tier.
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
        .get(http::header::CONTENT_ENCODING)
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
