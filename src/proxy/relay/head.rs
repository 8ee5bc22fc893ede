//! The upstream's answer arrives (or never does): pick how the body is relayed.

use super::{Mode, Reframe, Relay, State};
use crate::apis::stream::{Dialect, Limits as StreamLimits, Phase, StreamInterpreter};
use crate::capture::Outcome;
use crate::progress::frames;
use crate::proxy::body::{OnEnd, TimedBody};
use crate::proxy::error::ProxyError;
use crate::sse::{JsonArraySplitter, LineSplitter};
use bytes::BytesMut;
use http::{HeaderValue, Response, StatusCode, header};
use hyper::body::Incoming;
use tokio::time::Instant;

impl Relay {
    pub(super) fn on_head(&mut self, response: Response<Incoming>) {
        let (mut parts, incoming) = response.into_parts();
        let status = parts.status;
        let at = self.at();
        self.ending.upstream_head(Instant::now(), status.as_u16());
        self.w.progress_mut().upstream_headers(status.as_u16(), at);
        if let Some(p) = self.w.phase(Phase::Waiting) {
            self.push_event(&p);
        }
        let on_end: Box<dyn OnEnd> = match self.make_on_end.take() {
            Some(make) => make(status),
            None => Box::new(super::finish::NoLog),
        };
        let body = TimedBody::new(incoming, self.spec.idle, self.spec.deadline, on_end);
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let encoding = parts
            .headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok());
        let dialect = Dialect::detect(self.spec.api, &self.spec.path_and_query, content_type);
        let compressed = encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
        self.ending.streamed = is_stream_type(content_type);
        self.interp = Some(Box::new(
            StreamInterpreter::with_dialect(dialect, StreamLimits::default())
                .with_content_encoding(encoding),
        ));
        let streams = dialect.is_some() && status.is_success();
        if !self.committed {
            // Off and comments tiers before any commit: the client gets the upstream's own head.
            let injectable =
                streams && dialect.is_some_and(Dialect::tolerates_comments) && !compressed;
            if self.spec.mode == Mode::Comments && !injectable {
                self.spec.mode = Mode::Pass;
            }
            crate::proxy::headers::strip_hop_by_hop(&mut parts.headers);
            if crate::proxy::headers::is_event_stream(&parts.headers) {
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
                reframe: Reframe::None,
            };
            return;
        }
        match self.spec.mode {
            Mode::Comments | Mode::Pass => {
                let note = serde_json::json!({
                    "upstream_status": status.as_u16(),
                    "upstream_headers": frames::headers_json(&parts.headers),
                });
                self.out.push_back(crate::sse::comment(&note.to_string()));
                self.state = if streams && !compressed {
                    State::Streaming {
                        body,
                        reframe: Reframe::None,
                    }
                } else {
                    State::Collecting {
                        body,
                        status,
                        headers: parts.headers,
                        buf: BytesMut::new(),
                    }
                };
            }
            Mode::Events if streams && !compressed => {
                let max = StreamLimits::default().max_event;
                let reframe = match dialect {
                    Some(Dialect::OllamaNdjson) => Reframe::Lines(LineSplitter::new(max)),
                    Some(Dialect::GeminiJsonArray) => Reframe::Array(JsonArraySplitter::new(max)),
                    _ => Reframe::None,
                };
                self.state = State::Streaming { body, reframe };
            }
            Mode::Events => {
                self.state = State::Collecting {
                    body,
                    status,
                    headers: parts.headers,
                    buf: BytesMut::new(),
                };
            }
        }
    }

    pub(super) fn on_failure(&mut self, e: ProxyError) {
        self.state = State::Done;
        let outcome = if e.status == StatusCode::GATEWAY_TIMEOUT {
            Outcome::Timeout
        } else {
            Outcome::ProxyError
        };
        self.ending.end(outcome, false, Some(e.message.clone()));
        if !self.committed {
            self.ending.client_head(Instant::now(), e.status.as_u16());
            self.w.finish(Phase::Error);
            self.failure = Some(e);
            return;
        }
        tracing::warn!(
            id = self.w.id(),
            status = e.status.as_u16(),
            label = e.label,
            message = %e.message,
            "request failed after the stream started"
        );
        match self.spec.mode {
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
                self.push_stream_error(e.status, None, &e.message);
                self.w.finish(Phase::Error);
            }
        }
    }
}

/// An event stream or NDJSON, by content type (the capture's "streamed").
fn is_stream_type(content_type: &str) -> bool {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    ct == "text/event-stream" || ct.contains("ndjson") || ct == "application/jsonl"
}
