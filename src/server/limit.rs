//! The cap on open client connections (`[server] max_connections`): a permit per connection,
//! refusals answered with a canned 503 and closed at once, and logged at a bounded rate.
//!
//! Why a cap: each connection holds a file descriptor and some memory whether or not it sends
//! anything, so idle sockets (20,000 side-channel subscribers, say) could otherwise use up the
//! process's open-file limit and leave no room for the requests aloud exists to proxy.

use crate::metrics::{Metrics, Refusal};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The body a refused connection gets: no request was read, so no route's envelope is known;
/// OpenAI's shape (`error.message`) is what most clients read.
const REFUSAL_BODY: &str = "{\"error\":{\"message\":\"aloud is at its limit of open connections; retry shortly\",\"type\":\"overloaded\",\"code\":\"too_many_connections\"}}";

/// What a refused connection gets, if its socket takes it without waiting (never awaited):
/// written by hand, since no request was read for hyper to answer; like every response, it
/// carries an `Aloud-Request-Id` (a fresh one) and its reason in `Aloud-Error-Code`.
fn refusal(id: &str) -> String {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         x-should-retry: true\r\naloud-request-id: {id}\r\naloud-error-code: too_many_connections\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{REFUSAL_BODY}",
        REFUSAL_BODY.len()
    )
}

/// At most one log line per this period, carrying how many were refused since the last.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Counts repeated events (refusals, accept failures) and says when to log them: at most once
/// per [`LOG_EVERY`], with how many there were since the last line. Pure: the caller gives
/// the time.
#[derive(Debug, Default)]
pub struct LogThrottle {
    count: u64,
    logged_at: Option<Instant>,
}

impl LogThrottle {
    /// One more event at `now`: how many to report, when a line is due.
    pub fn note(&mut self, now: Instant) -> Option<u64> {
        self.count += 1;
        if self
            .logged_at
            .is_some_and(|at| now.duration_since(at) < LOG_EVERY)
        {
            return None;
        }
        self.logged_at = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    metrics: Option<Arc<Metrics>>,
    max: usize,
    /// Whether a refused connection is sent the canned 503 (plain HTTP only).
    answer: bool,
    refusals: LogThrottle,
}

impl ConnectionLimit {
    /// A cap of `max`; with `metrics`, open connections are readable at scrape time and
    /// refusals are counted.
    pub fn new(max: usize, metrics: Option<Arc<Metrics>>) -> Self {
        let permits = Arc::new(Semaphore::new(max));
        if let Some(m) = &metrics {
            let permits = Arc::downgrade(&permits);
            m.watch_connections(move || {
                permits
                    .upgrade()
                    .map_or(0, |p| max.saturating_sub(p.available_permits()) as u64)
            });
        }
        ConnectionLimit {
            metrics,
            permits,
            max,
            answer: true,
            refusals: LogThrottle::default(),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Refused connections are closed without the canned answer (HTTPS: the client expects a
    /// TLS handshake, not plain text).
    pub fn closing_silently(mut self) -> Self {
        self.answer = false;
        self
    }

    /// A permit for a new connection (held until the connection ends), or `None` when the cap
    /// is reached: the stream is then answered 503 if that does not block, and closed.
    pub fn admit(&mut self, stream: TcpStream) -> Option<(TcpStream, OwnedSemaphorePermit)> {
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => Some((stream, permit)),
            Err(_) => {
                // Best effort: a full send buffer just means a plain close.
                if self.answer {
                    let _ = stream.try_write(refusal(&crate::request_id::generate()).as_bytes());
                }
                drop(stream);
                if let Some(m) = &self.metrics {
                    m.refused(Refusal::Connections);
                }
                if let Some(refused) = self.refusals.note(Instant::now()) {
                    tracing::warn!(
                        refused,
                        max_connections = self.max,
                        "at the limit of open connections; refusing new ones"
                    );
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canned_refusal_declares_its_length() {
        let text = refusal("abcdefghijklmnop");
        let (_, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(text.contains("\r\naloud-request-id: abcdefghijklmnop\r\n"));
        assert!(text.contains(&format!("content-length: {}\r\n", body.len())));
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
    }

    #[test]
    fn repeated_events_are_logged_at_most_once_a_period_with_their_count() {
        let mut throttle = LogThrottle::default();
        let t0 = Instant::now();
        assert_eq!(throttle.note(t0), Some(1), "the first is logged at once");
        for _ in 0..4 {
            assert_eq!(throttle.note(t0 + Duration::from_millis(999)), None);
        }
        assert_eq!(
            throttle.note(t0 + LOG_EVERY),
            Some(5),
            "the four held back, and this one"
        );
        assert_eq!(throttle.note(t0 + LOG_EVERY), None);
    }
}
