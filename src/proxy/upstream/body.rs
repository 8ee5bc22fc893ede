//! The upstream's response body, which puts a plain-http route's connection back in its pool
//! the moment the body has been read whole.
//!
//! hyper's connection is ready for the next request once its answer has been read; a pool
//! learns that by waiting on `SendRequest::ready`, which took a task per answer (hyper-util's
//! pool does the same). That task lived as long as the answer did: about 290 bytes on every
//! waiting request, and a spawn on every proxied one. The body knows when it has ended, and by
//! then the connection is nearly always ready; a task is spawned only when it is not yet.

use super::plain::Plain;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// An upstream answer's body: hyper's, plus the connection to put back at its end.
pub struct UpstreamBody {
    inner: Incoming,
    back: Option<Back>,
}

/// A plain-http connection whose answer is still being read, and its pool.
pub(super) struct Back {
    pub(super) tx: http1::SendRequest<axum::body::Body>,
    pub(super) pool: Arc<Plain>,
}

impl UpstreamBody {
    /// A body whose connection is not aloud's to put back (TLS routes: hyper-util's pool).
    pub fn new(inner: Incoming) -> Self {
        UpstreamBody { inner, back: None }
    }

    pub(super) fn with_back(inner: Incoming, back: Back) -> Self {
        UpstreamBody {
            inner,
            back: Some(back),
        }
    }

    fn read_whole(&mut self) {
        if let Some(Back { tx, pool }) = self.back.take() {
            pool.give_back(tx);
        }
    }
}

impl Drop for UpstreamBody {
    /// A body let go before its end was seen (a client that left as the last bytes came, an
    /// answer aloud stopped reading): its connection goes back only if hyper has already read
    /// the answer whole and made it ready for another request; otherwise it closes.
    fn drop(&mut self) {
        if let Some(Back { tx, pool }) = self.back.take()
            && tx.is_ready()
        {
            pool.give_back(tx);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.read_whole(),
            // A known length's last bytes, or the trailers (which end a chunked body): the
            // caller may not poll again.
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() || self.inner.is_end_stream() => {
                self.read_whole();
            }
            // A body that fails, or is dropped unread, closes its connection.
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
