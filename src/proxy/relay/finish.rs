//! How the exchange ended, and the capture record handed over when the relay is dropped
//! (completed, cut, or abandoned by the client).

use super::{Capture, Relay};
use crate::capture::Outcome;
use crate::capture::recorder::End;
use crate::proxy::body::{BodyEnd, OnEnd};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// The access-log callback of a relay whose upstream never answered.
pub(super) struct NoLog;

impl OnEnd for NoLog {
    fn on_end(self: Box<Self>, _: BodyEnd, _: u64) {}
}

/// What the relay learned about the exchange's ending.
#[derive(Debug, Default)]
pub(super) struct Ending {
    pub upstream_status: Option<u16>,
    pub client_status: Option<u16>,
    pub streamed: bool,
    upstream_head_at: Option<Instant>,
    client_head_at: Option<Instant>,
    outcome: Option<(Outcome, bool, Option<String>)>,
    ended_at: Option<Instant>,
}

impl Ending {
    pub fn client_head(&mut self, at: Instant, status: u16) {
        self.client_head_at.get_or_insert(at);
        self.client_status.get_or_insert(status);
    }

    pub fn upstream_head(&mut self, at: Instant, status: u16) {
        self.upstream_head_at.get_or_insert(at);
        self.upstream_status.get_or_insert(status);
    }

    /// Records the outcome; only the first call counts.
    pub fn end(&mut self, outcome: Outcome, partial: bool, error: Option<String>) {
        if self.outcome.is_none() {
            self.outcome = Some((outcome, partial, error));
            self.ended_at = Some(Instant::now());
        }
    }

    pub fn client_bytes(&mut self, at: Duration, capture: &mut Option<Capture>) {
        if let Some(c) = capture.as_mut() {
            c.recorder.client_bytes(at);
        }
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl Drop for Relay {
    fn drop(&mut self) {
        if self.ending.outcome.is_none() {
            let (outcome, why) = if self.spec.shutting_down.load(Ordering::Acquire) {
                (
                    Outcome::Shutdown,
                    "aloud shut down before the response ended",
                )
            } else {
                (
                    Outcome::ClientDisconnected,
                    "the client went away before the response ended",
                )
            };
            self.ending.end(outcome, true, Some(why.to_owned()));
        }
        let Some(capture) = self.spec.capture.take() else {
            return;
        };
        let started = self.w.started();
        let ended = self.ending.ended_at.unwrap_or_else(Instant::now);
        let done = ended.saturating_duration_since(started);
        let sent = self.spec.tap.sent_at();
        let head_gap = match (self.ending.upstream_head_at, self.ending.client_head_at) {
            (Some(up), Some(client)) => client.saturating_duration_since(up),
            _ => Duration::ZERO,
        };
        let overhead_ms = sent.map(|s| ms(s.saturating_duration_since(started) + head_gap));
        let upstream_ms = match (sent, self.ending.upstream_head_at) {
            (Some(s), Some(up)) => Some(ms(up.saturating_duration_since(s))),
            _ => None,
        };
        let (request, whole) = self.spec.tap.body();
        let (outcome, partial, error) =
            self.ending
                .outcome
                .take()
                .unwrap_or((Outcome::Ok, false, None));
        let progress = self.w.progress();
        let record = capture.recorder.finish(End {
            request: Some((&request, whole)),
            client_status: self.ending.client_status,
            upstream_status: self.ending.upstream_status,
            streamed: self.ending.streamed,
            outcome: Some(outcome),
            partial,
            milestones: Some(progress.milestones()),
            longest_silence_ms: Some(progress.longest_silence(done)),
            done_ms: ms(done),
            overhead_ms,
            upstream_ms,
            summary: self.interp.as_ref().map(|i| i.summary()),
            error,
        });
        capture.sink.submit(record);
    }
}
