//! The upstream's answer arrives (or never does): pick how its body reaches the client.

use super::{Collecting, ExchangeBody, Source, ending_for};
use crate::apis::Api;
use crate::apis::stream::{Dialect, Limits as StreamLimits, Phase};
use crate::capture::Outcome;
use crate::progress::frames;
use crate::proxy::error::{Origin, ProxyError};
use crate::proxy::exchange::Ending;
use crate::proxy::inject::Mode;
use crate::proxy::observe::Observer;
use crate::proxy::upstream::UpstreamBody;
use crate::proxy::wrap::{Collector, Reframe};
use http::{HeaderValue, Response, StatusCode, header};
use tokio::time::Instant;

impl ExchangeBody {
    pub(super) fn on_head(&mut self, response: Response<UpstreamBody>) {
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // aloud never asks for an upgrade and refuses the client's; an upstream that
            // switches anyway has not answered the request.
            self.on_failure(
                ProxyError::new(
                    StatusCode::BAD_GATEWAY,
                    Origin::Upstream,
                    "upstream_switched_protocols",
                    "the upstream answered 101 Switching Protocols to a plain HTTP request",
                )
                // The same upstream would switch again: a retry cannot help.
                .no_retry(),
            );
            return;
        }
        let (mut parts, incoming) = response.into_parts();
        let status = parts.status;
        self.keep_head(&parts);
        let now = Instant::now();
        // The ETA key is read from the request's bytes, which may be let go below.
        self.w().eta_last_chance();
        if self.ex.capture.is_none()
            && self.ex.trace.is_none()
            && let Some(tap) = &self.ex.tap
        {
            // Only capture and the span need the request's bytes after this point.
            tap.forget();
        }
        let at = self.ex.since_start(now);
        self.ex.upstream_head(now, status.as_u16());
        self.dl.head_arrived(now);
        self.w()
            .progress_mut()
            .upstream_headers(status.as_u16(), at);
        if let Some(p) = self.w().phase_at(Phase::Waiting, at) {
            self.push_event(&p);
            self.dl.beat_done(now);
        }
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let encoding = parts
            .headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok());
        let compressed = encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
        let obs = Observer::new(
            self.ex.api,
            &self.path_and_query,
            content_type,
            encoding,
            status.is_success(),
        );
        let dialect = obs.dialect();
        self.ex.streamed = is_stream_type(content_type);
        self.obs = Some(obs);
        let streams = dialect.is_some() && status.is_success() && !compressed;
        if !self.committed {
            // Off and comments tiers before any commit: the client gets the upstream's own head.
            // Comments only go into a stream whose clients tolerate them, and never on a Gemini
            // or Ollama route, even from its OpenAI-compatible endpoints (docs/protocol.md).
            let route_allows = !matches!(self.ex.api, Api::Gemini | Api::Ollama);
            if !(streams && route_allows && dialect.is_some_and(Dialect::tolerates_comments)) {
                self.inj.pass_only();
            }
            crate::proxy::headers::response_headers_for_client(&mut parts.headers);
            // An HTTP/1.0 upstream's version is not the client's: answered as HTTP/1.0, an
            // HTTP/1.1 client would get a close-delimited body, whose cut looks like its end.
            if parts.version < http::Version::HTTP_11 {
                parts.version = http::Version::HTTP_11;
            }
            if self.inj.mode() != Mode::Pass {
                // Comments change the body's length.
                parts.headers.remove(header::CONTENT_LENGTH);
            }
            if crate::proxy::headers::is_event_stream(&parts.headers) {
                parts
                    .headers
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                parts
                    .headers
                    .insert("x-accel-buffering", HeaderValue::from_static("no"));
            }
            self.head = Some(Box::new(parts));
            self.src = Source::Stream {
                body: incoming,
                reframe: Reframe::None,
            };
            return;
        }
        let collect = |this: &Self| Collector::new(this.max_wrap_body, this.wrap_budget.clone());
        match self.inj.mode() {
            Mode::Comments | Mode::Pass => {
                let note = serde_json::json!({
                    "upstream_status": status.as_u16(),
                    "upstream_headers": frames::headers_json(&parts.headers),
                });
                self.out.push_back(crate::sse::comment(&note.to_string()));
                if status.is_success() && compressed {
                    // aloud asks for identity encoding; a body compressed anyway cannot pass
                    // under the head already sent (which has no Content-Encoding): the client
                    // would get bytes it cannot parse. A failed transfer, not a success.
                    self.src = Source::Done;
                    let message = format!(
                        "the upstream compressed its answer ({}) though aloud asked for \
                         identity encoding, after aloud had started the response",
                        encoding.unwrap_or_default()
                    );
                    self.push_stream_error(StatusCode::BAD_GATEWAY, None, &message);
                    self.ex.end(Ending::new(
                        Outcome::UpstreamError,
                        true,
                        "upstream_encoding",
                        message,
                    ));
                    self.finish_progress(Phase::Error);
                    return;
                }
                self.src = if status.is_success() {
                    // A stream (or, unexpectedly, a whole answer) passes as it comes.
                    Source::Stream {
                        body: incoming,
                        reframe: Reframe::None,
                    }
                } else {
                    // An error becomes the stream's own error event: collect it, bounded.
                    Source::Collect(Box::new(Collecting {
                        body: incoming,
                        status,
                        headers: parts.headers,
                        buf: collect(self),
                    }))
                };
            }
            Mode::Events if streams => {
                let reframe = Reframe::for_events(dialect, StreamLimits::default().max_event);
                self.src = Source::Stream {
                    body: incoming,
                    reframe,
                };
            }
            Mode::Events => {
                self.src = Source::Collect(Box::new(Collecting {
                    body: incoming,
                    status,
                    headers: parts.headers,
                    buf: collect(self),
                }));
            }
        }
    }

    /// The attempt failed before any upstream head.
    pub(super) fn on_failure(&mut self, e: ProxyError) {
        self.src = Source::Done;
        self.ex.end(ending_for(&e));
        if !self.committed {
            self.ex.client_head(Instant::now(), e.status.as_u16());
            self.failure = Some(Box::new(e));
            return;
        }
        match self.inj.mode() {
            Mode::Events => self.push_error(e.status.as_u16(), None, "upstream_failed", &e.message),
            Mode::Comments | Mode::Pass => self.push_stream_error(e.status, None, &e.message),
        }
        self.finish_progress(Phase::Error);
    }
}

/// An event stream or NDJSON, by content type (the capture's "streamed").
fn is_stream_type(content_type: &str) -> bool {
    let ct = crate::apis::media_type(content_type);
    ct == "text/event-stream" || crate::apis::contains(&ct, "ndjson") || ct == "application/jsonl"
}
