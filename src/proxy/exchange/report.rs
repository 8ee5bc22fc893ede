//! What the finish step reports besides the record: the access-log line, the metrics update
//! and the span, each once per exchange; and the `Server-Timing` value of the client's head.

use super::{Ending, Exchange, Figures};
use crate::apis::stream::Summary;
use crate::capture::Outcome;
use crate::metrics::Done;
use crate::telemetry::Finished;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

impl Exchange {
    /// `Server-Timing` for the head going to the client now: aloud's own time and, once an
    /// attempt started (`attempted`), the upstream's time to its headers.
    pub fn server_timing(&self, attempted: bool) -> http::HeaderValue {
        crate::proxy::timing::header(&crate::proxy::timing::Marks {
            started: self.started,
            sent: self.tap.as_ref().and_then(|t| t.sent_at()),
            upstream_head: self.upstream_head_at,
            attempted,
            now: Instant::now(),
        })
    }

    /// The one metrics call of the finish step (nothing when metrics are off).
    pub(super) fn measure(&mut self, f: &Figures) {
        let Some(m) = self.metrics.as_ref() else {
            return;
        };
        let answered = self.answer.0.take();
        let s = |ms: f64| ms / 1e3;
        m.finished(
            &Done {
                tier: self.tier,
                streamed: f.streamed,
                status: f.status,
                outcome: f.outcome,
                cause: f.cause,
                admitted: self.admitted,
                headers: f.headers_ms.map(s),
                first_feedback: f.first_feedback_ms.map(s),
                first_token: f.first_token_ms.map(s),
                total: s(f.total_ms),
                longest_silence: s(f.longest_silence_ms),
                overhead: f.overhead_ms.map(s),
                usage: f.usage,
            },
            || answered.unwrap_or_else(|| m.model(self.request_model())),
        );
    }

    /// The exchange's span, when it is traced: plain data handed to the exporter, which does
    /// the JSON work on its own thread. Takes what the span needs of `summary` (all of it when
    /// capture does not keep it).
    pub(super) fn span(
        &mut self,
        f: &Figures,
        ending: &Ending,
        done: Duration,
        summary: &mut Option<Summary>,
    ) {
        let (Some(traced), Some(tracer)) = (self.trace.take(), self.tracer.take()) else {
            return;
        };
        let summary = if self.capture.is_some() {
            summary.as_ref().map(|s| tracer.span_summary(s))
        } else {
            summary.take()
        };
        let start = SystemTime::now()
            .checked_sub(self.started.elapsed())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let phases = self
            .w
            .as_mut()
            .map(|w| w.progress_mut().take_phases())
            .unwrap_or_default();
        tracer.submit(Finished {
            traced: *traced,
            start,
            done,
            api: self.api,
            path: self.path.clone(),
            method: self.method.as_str().to_owned(),
            request_id: self.id.to_string(),
            route: self.route.to_string(),
            tier: self.tier.as_str(),
            outcome: f.outcome,
            cause: f.cause,
            error: ending.error.clone(),
            status: f.status,
            upstream_status: f.upstream_status,
            streamed: f.streamed,
            first_feedback_ms: f.first_feedback_ms,
            first_token_ms: f.first_token_ms,
            longest_silence_ms: f.longest_silence_ms,
            overhead_ms: f.overhead_ms,
            phases,
            request: self.tap.as_ref().map(|t| t.body().0),
            summary,
        });
    }

    /// The access-log line: aloud's time kept apart from the upstream's, whole milliseconds
    /// (aloud's own time in microseconds); absent figures are absent fields.
    pub(super) fn log(&self, f: &Figures) {
        let whole = |v: f64| v.round() as u64;
        let status = f.status;
        let tier = self.tier.as_str();
        let outcome = f.outcome.as_str();
        let headers_ms = f.headers_ms.map(whole);
        let first_byte_ms = f.first_byte_ms.map(whole);
        let total_ms = whole(f.total_ms);
        let overhead_us = f.overhead_ms.map(|v| whole(v * 1e3));
        let (id, route, method, path) = (&*self.id, &*self.route, self.method.as_str(), &self.path);
        // One set of fields, two levels: a failed exchange is a warning.
        macro_rules! line {
            ($level:expr, $message:literal) => {
                tracing::event!(
                    $level,
                    id,
                    route,
                    method,
                    path,
                    status,
                    tier,
                    outcome,
                    end = f.cause,
                    bytes_in = f.bytes_in,
                    bytes_out = f.bytes,
                    headers_ms,
                    first_byte_ms,
                    total_ms,
                    overhead_us,
                    $message
                )
            };
        }
        match f.outcome {
            Outcome::Ok => line!(tracing::Level::INFO, "proxied"),
            _ => line!(tracing::Level::WARN, "proxied, failed"),
        }
    }
}
