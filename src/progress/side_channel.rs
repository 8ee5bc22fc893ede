//! `GET /aloud/v1/progress/{id}`: the progress events of one request as an SSE stream that a
//! plain browser `EventSource` can read, with replay from `Last-Event-ID` or `?after=N`.

use super::hub::{Hub, Poll, Published};
use crate::config::Owner;
use crate::request_id;
use axum::body::Body;
use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;

/// Frames one event for the side channel: `id:` is the sequence number.
pub fn frame(event: &Published) -> Bytes {
    let mut out = String::with_capacity(event.data.len() + event.name.len() + 32);
    out.push_str("id: ");
    out.push_str(&event.seq.to_string());
    out.push_str("\nevent: ");
    out.push_str(event.name);
    out.push_str("\ndata: ");
    out.push_str(&event.data);
    out.push_str("\n\n");
    Bytes::from(out)
}

/// The `after` position: `Last-Event-ID` wins over `?after=N`; `None` when neither was sent.
fn after(headers: &HeaderMap, query: Option<&str>) -> Result<Option<u64>, String> {
    if let Some(v) = headers.get("last-event-id") {
        let text = v
            .to_str()
            .map_err(|_| "Last-Event-ID is not text".to_owned())?
            .trim();
        return text
            .parse()
            .map(Some)
            .map_err(|_| format!("Last-Event-ID {text:?} is not a sequence number"));
    }
    let Some(q) = query else { return Ok(None) };
    match q.split('&').find_map(|kv| kv.strip_prefix("after=")) {
        None => Ok(None),
        Some(n) => n
            .parse()
            .map(Some)
            .map_err(|_| format!("after={n:?} is not a sequence number")),
    }
}

fn no_content() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// A refusal in aloud's error shape (OpenAI's envelope, the code in `Aloud-Error-Code`), as
/// every other endpoint of aloud's answers.
fn plain(status: StatusCode, code: &'static str, message: String) -> Response<Body> {
    let body = crate::apis::envelope::error_body(crate::apis::Api::OpenAi, status, &message);
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("aloud-error-code", HeaderValue::from_static(code));
    h.insert("x-should-retry", HeaderValue::from_static("false"));
    r
}

/// How long a reconnect for an id this replica does not hold waits for another replica to
/// answer for it (one Postgres round trip each way, normally a few milliseconds).
const REMOTE_LOOKUP: std::time::Duration = std::time::Duration::from_secs(1);

/// Answers a subscription for `id` by `owner` (the subscriber's token, already checked). A
/// request made with another token is, to this subscriber, one that never arrives.
pub async fn subscribe(
    hub: &Arc<Hub>,
    id: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    owner: Option<Owner>,
) -> Response<Body> {
    if !request_id::is_valid(id) {
        return plain(
            StatusCode::BAD_REQUEST,
            "bad_request_id",
            "the id must be 16-64 characters of A-Z, a-z, 0-9, '_' or '-'".to_owned(),
        );
    }
    let after = match after(headers, query) {
        Ok(a) => a,
        Err(message) => return plain(StatusCode::BAD_REQUEST, "bad_after", message),
    };
    let reconnect = headers.contains_key("last-event-id");
    let mut changes = None;
    if let Some(n) = after
        && (reconnect || n > 0)
    {
        if hub.clustered() && hub.must_look_up(id, n) {
            // The request may be on another replica: ask, and wait a moment for its answer
            // before deciding that nothing is left.
            let mut rx = hub.watch_from(id, n);
            let _ = tokio::time::timeout(REMOTE_LOOKUP, rx.changed()).await;
            if hub.awaited(id) {
                return no_content();
            }
            changes = Some(rx);
        }
        if hub.nothing_left(id, n, owner) {
            return no_content();
        }
    }
    let changes = changes.unwrap_or_else(|| hub.watch_from(id, after.unwrap_or(0)));
    let closing = hub.closing();
    let state = Sub {
        _counted: hub.subscribed(),
        hub: Arc::clone(hub),
        id: Arc::from(id),
        owner,
        since: Instant::now(),
        after: after.unwrap_or(0),
        changes,
        closing,
        opened: false,
        done: false,
    };
    let body = Body::from_stream(stream::unfold(state, Sub::next));
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

struct Sub {
    /// Counts this stream among the hub's subscribers while it is open.
    _counted: super::hub::Subscribed,
    hub: Arc<Hub>,
    id: Arc<str>,
    owner: Option<Owner>,
    /// When this subscriber came: an id it may not see "never arrives" a wait after it.
    since: Instant,
    after: u64,
    changes: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    opened: bool,
    done: bool,
}

impl Sub {
    async fn next(mut self) -> Option<(Result<Bytes, std::convert::Infallible>, Sub)> {
        if self.done {
            return None;
        }
        if !self.opened {
            self.opened = true;
            return Some((Ok(Bytes::from_static(b": aloud progress\n\n")), self));
        }
        loop {
            self.changes.borrow_and_update();
            let wait = self.hub.limits().await_request;
            let poll = match self.hub.poll(&self.id, self.after, self.owner) {
                Poll::Hidden if self.since.elapsed() >= wait => Poll::NeverArrived,
                poll => poll,
            };
            let hidden = poll == Poll::Hidden;
            match poll {
                Poll::Events(events) => {
                    let mut out = Vec::new();
                    for e in &events {
                        out.extend_from_slice(&frame(e));
                    }
                    self.after = events.last().map_or(self.after, |e| e.seq);
                    return Some((Ok(Bytes::from(out)), self));
                }
                Poll::End => return None,
                Poll::NeverArrived => {
                    self.done = true;
                    let data = serde_json::json!({
                        "v": super::state::VERSION,
                        "request_id": &*self.id,
                        "status": 404,
                        "code": "never_arrived",
                        "type": null,
                        "message": "no request with this id arrived in time",
                    });
                    let e = Published {
                        seq: self.after + 1,
                        name: "aloud.error",
                        data: Arc::from(data.to_string()),
                        heartbeat: false,
                    };
                    return Some((Ok(frame(&e)), self));
                }
                Poll::Wait | Poll::Hidden => {}
            }
            if *self.closing.borrow() {
                return None;
            }
            // Wake up to notice a request that never arrived (for this subscriber, if hidden).
            let wake = if hidden {
                self.since + wait
            } else {
                Instant::now() + wait
            };
            tokio::select! {
                changed = self.changes.changed() => if changed.is_err() {
                    if !hidden {
                        return None;
                    }
                    // The other owner's entry went away: wait on the id afresh, as for any
                    // unknown id.
                    self.changes = self.hub.watch_from(&self.id, self.after);
                },
                _ = self.closing.changed() => return None,
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}
