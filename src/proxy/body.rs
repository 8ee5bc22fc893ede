//! The request body on the forwarding path: size-limited, observed by a tap, passed through
//! untouched.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::time::Instant;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body grew past the route's `max_request_body`.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit of {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// What the proxy learns from a request body as it streams past: whether it went over the
/// limit, whether it was sent whole, and its first bytes (kept as refcounted chunks, not copied).
#[derive(Debug, Default)]
pub struct RequestTap {
    pub tripped: AtomicBool,
    pub sent: AtomicBool,
    /// When the whole body had gone upstream (the upstream request was written).
    sent_at: std::sync::OnceLock<Instant>,
    /// A copy of the first bytes (a copy, so hyper's read buffers are not kept alive), and the
    /// body's total length so far.
    kept: std::sync::Mutex<(Vec<u8>, usize)>,
    keep: usize,
}

impl RequestTap {
    /// A tap that keeps up to `keep` bytes of the body.
    pub fn new(keep: usize) -> Arc<Self> {
        Arc::new(RequestTap {
            keep,
            ..RequestTap::default()
        })
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, (Vec<u8>, usize)> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn observe(&self, data: &Bytes) {
        let mut kept = self.kept();
        if kept.1 < self.keep {
            let take = data.len().min(self.keep - kept.1);
            kept.0.extend_from_slice(&data[..take]);
            kept.1 += data.len();
        } else {
            kept.1 += data.len();
        }
    }

    fn mark_sent(&self) {
        self.sent.store(true, Ordering::Release);
        let _ = self.sent_at.set(Instant::now());
    }

    /// When the upstream request was written in full.
    pub fn sent_at(&self) -> Option<Instant> {
        self.sent_at.get().copied()
    }

    /// The kept bytes, and whether they are the whole body.
    pub fn body(&self) -> (Vec<u8>, bool) {
        let kept = self.kept();
        let bytes = kept.0.clone();
        let whole = self.sent.load(Ordering::Acquire) && kept.1 == bytes.len();
        (bytes, whole)
    }
}

pin_project! {
    /// A request body that fails once more than `limit` bytes have passed, and reports to a tap.
    pub struct LimitedBody<B> {
        #[pin]
        inner: B,
        seen: u64,
        limit: u64,
        tap: Arc<RequestTap>,
    }
}

impl<B> LimitedBody<B> {
    pub fn new(inner: B, limit: u64, tap: Arc<RequestTap>) -> Self {
        LimitedBody {
            inner,
            seen: 0,
            limit,
            tap,
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.seen += data.len() as u64;
                    if *this.seen > *this.limit {
                        this.tap.tripped.store(true, Ordering::Release);
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge {
                            limit: *this.limit,
                        }))));
                    }
                    this.tap.observe(data);
                }
                // hyper stops polling a body of known length after its last byte.
                if this.inner.is_end_stream() {
                    this.tap.mark_sent();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.tap.mark_sent();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.tap.mark_sent();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn limited_body_trips_past_the_limit() {
        let tap = RequestTap::new(4);
        let body = LimitedBody::new(
            http_body_util::Full::new(Bytes::from(vec![0u8; 11])),
            10,
            tap.clone(),
        );
        assert!(body.collect().await.is_err());
        assert!(tap.tripped.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn the_tap_keeps_the_first_bytes_and_knows_when_the_body_was_sent() {
        let tap = RequestTap::new(4);
        let body = LimitedBody::new(
            http_body_util::Full::new(Bytes::from_static(b"{}")),
            10,
            tap.clone(),
        );
        body.collect().await.unwrap();
        assert_eq!(tap.body(), (b"{}".to_vec(), true));
        let tap = RequestTap::new(4);
        let body = LimitedBody::new(
            http_body_util::Full::new(Bytes::from_static(b"abcdefgh")),
            10,
            tap.clone(),
        );
        body.collect().await.unwrap();
        assert_eq!(tap.body(), (b"abcd".to_vec(), false));
    }
}
