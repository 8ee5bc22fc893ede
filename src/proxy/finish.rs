//! `on_disconnect = "finish"`: the per-request choice (`Aloud-On-Disconnect`, never above the
//! route's), and the response body that, when the client leaves, hands the exchange to a
//! tracked task which reads the upstream to its end so the kept answer can be resumed.
//!
//! A request that does not finish pays one `Option` check when its body drops: nothing is kept
//! and nothing detached.

use super::error::{Origin, ProxyError};
use super::response::ExchangeBody;
use crate::config::OnDisconnect;
use crate::progress::keep::{Keeper, Kept};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

/// The request header that lowers the route's `on_disconnect` for one request.
/// (A `HeaderName`: read on every request, see `request_id::HEADER`.)
pub const ON_DISCONNECT_HEADER: http::HeaderName =
    http::HeaderName::from_static("aloud-on-disconnect");

/// A detached exchange's future, run to its end by the server.
pub type Detached = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A kept answer and the detach that finishes its exchange, from `Finishing::begin`.
pub type Keeping = (Arc<Kept>, Option<Arc<dyn Detach>>);

/// Runs detached exchanges as named, tracked tasks (the server's: this floor cannot spawn).
pub trait Detach: Send + Sync {
    /// Runs `fut` until it ends or the server cuts it at shutdown.
    fn detach(&self, fut: Detached);
}

/// What finishing needs, shared by every request and kept across reloads (but `max_body`).
#[derive(Clone)]
pub struct Finishing {
    pub keeper: Arc<Keeper>,
    /// Installed by the server when it starts; unset (tests building an `App` alone), a client
    /// that leaves still cancels the upstream.
    pub detach: Arc<OnceLock<Arc<dyn Detach>>>,
    /// The most one answer may keep (`progress.resume_max_body`).
    pub max_body: usize,
    /// Finish steps waiting for the server's tasks to run them after the flush (`later.rs`),
    /// one queue per serving thread.
    pub later: Arc<super::later::Laters>,
}

impl Finishing {
    /// Starts keeping an exchange's answer, with the detach that will finish it.
    pub fn begin(
        &self,
        (id, api): (&Arc<str>, crate::apis::Api),
        owner: Option<crate::config::Owner>,
        started: tokio::time::Instant,
    ) -> Keeping {
        let kept = self.keeper.begin((id, api), owner, self.max_body, started);
        (kept, self.detach.get().cloned())
    }

    pub fn install(&self, detach: Arc<dyn Detach>) {
        // A second install (a second server over the same app) keeps the first.
        let _ = self.detach.set(detach);
    }
}

/// The request's `on_disconnect`: the route's, or lower by `Aloud-On-Disconnect`. Asking for
/// `finish` on a route that cancels is refused (400), so a client never counts on a resume
/// that cannot come.
pub fn decide(headers: &HeaderMap, route: OnDisconnect) -> Result<OnDisconnect, ProxyError> {
    let Some(value) = headers.get(ON_DISCONNECT_HEADER) else {
        return Ok(route);
    };
    let asked = value
        .to_str()
        .ok()
        .and_then(OnDisconnect::parse)
        .ok_or_else(|| {
            ProxyError::new(
                StatusCode::BAD_REQUEST,
                Origin::Downstream,
                "bad_on_disconnect",
                "Aloud-On-Disconnect must be cancel or finish",
            )
        })?;
    if asked > route {
        return Err(ProxyError::new(
            StatusCode::BAD_REQUEST,
            Origin::Downstream,
            "on_disconnect_not_allowed",
            "this route cancels the upstream when the client leaves (on_disconnect = \"cancel\"); \
             Aloud-On-Disconnect may only lower it",
        ));
    }
    Ok(asked)
}

/// Tells the client its answer is kept for a resume (`Aloud-On-Disconnect: finish`).
pub fn announce(
    mut response: http::Response<axum::body::Body>,
    finishes: bool,
) -> http::Response<axum::body::Body> {
    if finishes {
        response.headers_mut().insert(
            ON_DISCONNECT_HEADER,
            http::HeaderValue::from_static("finish"),
        );
    }
    response
}

/// The response body: the exchange's body, which a leaving client hands over to `detach`.
///
/// The body is boxed once, here: it is about 1.5 KB, and unboxed it was copied whole at each
/// move (into this, into the response's boxed body, into a detached reader), three times per
/// request (a `memmove` uprobe at saturation: 42 KB copied per request).
pub struct Detachable {
    inner: Option<Box<ExchangeBody>>,
    detach: Option<Arc<dyn Detach>>,
}

impl Detachable {
    /// `kept` is `Some` only for an exchange that finishes.
    pub fn new(inner: ExchangeBody, kept: Option<Keeping>) -> Self {
        let mut inner = Box::new(inner);
        let detach = kept.and_then(|(k, detach)| {
            inner.keep(k);
            detach
        });
        Detachable {
            inner: Some(inner),
            detach,
        }
    }
}

// The exchange's body until the response is handed over (waiting for the head, committing).
impl std::ops::Deref for Detachable {
    type Target = ExchangeBody;

    #[expect(
        clippy::expect_used,
        reason = "the body is only taken in Drop, after which nothing touches it"
    )]
    fn deref(&self) -> &ExchangeBody {
        self.inner.as_ref().expect("taken only on drop")
    }
}

impl std::ops::DerefMut for Detachable {
    #[expect(
        clippy::expect_used,
        reason = "the body is only taken in Drop, after which nothing touches it"
    )]
    fn deref_mut(&mut self) -> &mut ExchangeBody {
        self.inner.as_mut().expect("taken only on drop")
    }
}

impl Body for Detachable {
    type Data = Bytes;
    type Error = super::body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut().inner.as_mut() {
            Some(b) => Pin::new(&mut **b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_deref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_deref()
            .map_or_else(SizeHint::default, Body::size_hint)
    }
}

impl Drop for Detachable {
    fn drop(&mut self) {
        let (Some(detach), Some(mut body)) = (self.detach.take(), self.inner.take()) else {
            return;
        };
        if !body.upstream_pending() {
            return;
        }
        body.client_left();
        detach.detach(Box::pin(read_to_end(body)));
    }
}

/// Polls a detached body to its end, throwing away what the client would have got; stops
/// early once the kept answer overflowed (nobody could resume it).
async fn read_to_end(mut body: Box<ExchangeBody>) {
    loop {
        if body.keep_overflowed() {
            body.give_up();
            return;
        }
        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await;
        if !matches!(frame, Some(Ok(_))) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ON_DISCONNECT_HEADER, value.parse().unwrap());
        h
    }

    #[test]
    fn the_route_sets_the_most_a_request_may_ask() {
        use OnDisconnect::{Cancel, Finish};
        assert_eq!(decide(&HeaderMap::new(), Finish).unwrap(), Finish);
        assert_eq!(decide(&HeaderMap::new(), Cancel).unwrap(), Cancel);
        assert_eq!(decide(&with("cancel"), Finish).unwrap(), Cancel);
        assert_eq!(decide(&with("Finish"), Finish).unwrap(), Finish);
        let e = decide(&with("finish"), Cancel).unwrap_err();
        assert_eq!(
            (e.status, e.label),
            (StatusCode::BAD_REQUEST, "on_disconnect_not_allowed")
        );
        assert_eq!(
            decide(&with("later"), Finish).unwrap_err().label,
            "bad_on_disconnect"
        );
    }
}
