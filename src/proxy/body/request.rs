//! The request body on its way upstream: a size limit, an idle deadline on the client's sending,
//! and a tap that records what passed and, when the body failed, whose fault it was.

use super::BoxError;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The request body grew past the route's `max_request_body`.
#[derive(Debug, thiserror::Error)]
#[error("request body over {}, the route's `max_request_body`", crate::config::units::ShownSize(*limit))]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// The client sent nothing of its body for the request body timeout.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no request body bytes for {}", humantime::format_duration(*.0))]
pub struct BodyStalled(pub Duration);

/// Why a request body failed: always the client's doing, never the upstream's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFault {
    /// More than the route's `max_request_body` bytes.
    TooLarge,
    /// The client went silent mid-body for longer than `request_body_timeout`.
    Stalled,
    /// The body could not be read: bad chunked framing, or the client's connection ended early.
    Malformed,
}

impl RequestFault {
    fn code(self) -> u8 {
        match self {
            RequestFault::TooLarge => 1,
            RequestFault::Stalled => 2,
            RequestFault::Malformed => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(RequestFault::TooLarge),
            2 => Some(RequestFault::Stalled),
            3 => Some(RequestFault::Malformed),
            _ => None,
        }
    }
}

/// What the proxy learns from a request body as it streams past: whether it failed (and why),
/// whether it was sent whole, and its first bytes (kept as refcounted chunks, not copied).
#[derive(Debug, Default)]
pub struct RequestTap {
    /// A `RequestFault` code; 0 while the body is fine.
    fault: AtomicU8,
    pub sent: AtomicBool,
    /// When the whole body had gone upstream (the upstream request was written).
    sent_at: std::sync::OnceLock<Instant>,
    /// A copy of the first bytes (a copy, so hyper's read buffers are not kept alive), and the
    /// body's total length so far.
    kept: std::sync::Mutex<(Vec<u8>, usize)>,
    /// Body bytes read from the client so far (the access log's `bytes_in`).
    received: std::sync::atomic::AtomicU64,
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

    /// Why the request body failed, if it did. When the upstream request fails and this is set,
    /// the failure is the client's (`ProxyError::from_request_fault`), not the upstream's.
    pub fn fault(&self) -> Option<RequestFault> {
        RequestFault::from_code(self.fault.load(Ordering::Acquire))
    }

    fn set_fault(&self, fault: RequestFault) {
        // The first fault is the cause; later ones are consequences.
        let _ = self
            .fault
            .compare_exchange(0, fault.code(), Ordering::AcqRel, Ordering::Acquire);
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, (Vec<u8>, usize)> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn observe(&self, data: &Bytes) {
        self.received
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let mut kept = self.kept();
        if kept.1 < self.keep {
            let take = data.len().min(self.keep - kept.1);
            kept.0.extend_from_slice(&data[..take]);
        }
        kept.1 += data.len();
    }

    fn mark_sent(&self) {
        self.sent.store(true, Ordering::Release);
        let _ = self.sent_at.set(Instant::now());
    }

    /// Body bytes read from the client so far.
    pub fn bytes_in(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// When the upstream request was written in full.
    pub fn sent_at(&self) -> Option<Instant> {
        self.sent_at.get().copied()
    }

    /// Lets the kept bytes go (and keeps no more): once the head arrived, an exchange that is
    /// not captured has no use for them, and a long wait should not hold them.
    pub fn forget(&self) {
        let mut kept = self.kept();
        kept.0 = Vec::new();
        kept.1 = kept.1.max(self.keep);
    }

    /// Reads the kept bytes in place (no copy) once the body has gone upstream whole; `None`
    /// before that, or when they are not the whole body.
    pub fn with_whole_body<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        if !self.sent.load(Ordering::Acquire) {
            return None;
        }
        let kept = self.kept();
        (kept.1 == kept.0.len()).then(|| f(&kept.0))
    }

    /// The kept bytes, and whether they are the whole body.
    pub fn body(&self) -> (Vec<u8>, bool) {
        let kept = self.kept();
        let bytes = kept.0.clone();
        let whole = self.sent.load(Ordering::Acquire) && kept.1 == bytes.len();
        (bytes, whole)
    }
}

/// The dashboard's live view reads a request's model from the kept first bytes, only when it
/// asks (never on the request path); a body not yet whole, or let go, names none.
impl crate::progress::live::ModelHint for RequestTap {
    fn model(&self) -> Option<Option<String>> {
        #[derive(serde::Deserialize)]
        struct Named {
            model: Option<String>,
        }
        let bytes = {
            let kept = self.kept();
            if !self.sent.load(Ordering::Acquire) {
                return None;
            }
            if kept.1 != kept.0.len() {
                // Not all kept, or let go: it will never be known.
                return Some(None);
            }
            // A copy, so the body's own reads never wait on the parse.
            kept.0.clone()
        };
        Some(
            serde_json::from_slice::<Named>(&bytes)
                .ok()
                .and_then(|n| n.model),
        )
    }
}

pin_project! {
    /// A request body that fails once more than `limit` bytes have passed, or when the client
    /// sends nothing for `idle` while the body is being read, and reports to a tap. Failing the
    /// body makes hyper abort the upstream request and close that connection.
    pub struct LimitedBody<B> {
        #[pin]
        inner: B,
        seen: u64,
        limit: u64,
        idle: Duration,
        // Armed when the client's body has nothing ready; disarmed by the next frame. Time
        // during which hyper does not poll (the upstream is slow to read) is not counted.
        idle_timer: Option<Pin<Box<Sleep>>>,
        waiting: bool,
        tap: Arc<RequestTap>,
    }
}

impl<B> LimitedBody<B> {
    pub fn new(inner: B, limit: u64, idle: Duration, tap: Arc<RequestTap>) -> Self {
        LimitedBody {
            inner,
            seen: 0,
            limit,
            idle,
            idle_timer: None,
            waiting: false,
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
                *this.waiting = false;
                if let Some(data) = frame.data_ref() {
                    *this.seen += data.len() as u64;
                    if *this.seen > *this.limit {
                        this.tap.set_fault(RequestFault::TooLarge);
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
            Poll::Ready(Some(Err(e))) => {
                this.tap.set_fault(RequestFault::Malformed);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.tap.mark_sent();
                Poll::Ready(None)
            }
            Poll::Pending => {
                let deadline = Instant::now() + *this.idle;
                let timer = this
                    .idle_timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !*this.waiting {
                    *this.waiting = true;
                    timer.as_mut().reset(deadline);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    this.tap.set_fault(RequestFault::Stalled);
                    return Poll::Ready(Some(Err(Box::new(BodyStalled(*this.idle)))));
                }
                Poll::Pending
            }
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
    use http_body_util::{BodyExt, StreamBody};
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::ReceiverStream;

    type Item = Result<Frame<Bytes>, BoxError>;

    fn channel_body() -> (mpsc::Sender<Item>, StreamBody<ReceiverStream<Item>>) {
        let (tx, rx) = mpsc::channel(1);
        (tx, StreamBody::new(ReceiverStream::new(rx)))
    }

    const IDLE: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn limited_body_trips_past_the_limit() {
        let tap = RequestTap::new(4);
        let body = LimitedBody::new(
            http_body_util::Full::new(Bytes::from(vec![0u8; 11])),
            10,
            IDLE,
            tap.clone(),
        );
        assert!(body.collect().await.is_err());
        assert_eq!(tap.fault(), Some(RequestFault::TooLarge));
    }

    #[tokio::test]
    async fn the_tap_keeps_the_first_bytes_and_knows_when_the_body_was_sent() {
        let tap = RequestTap::new(4);
        let body = LimitedBody::new(
            http_body_util::Full::new(Bytes::from_static(b"{}")),
            10,
            IDLE,
            tap.clone(),
        );
        body.collect().await.unwrap();
        assert_eq!(tap.body(), (b"{}".to_vec(), true));
        assert_eq!(tap.fault(), None);
        let tap = RequestTap::new(4);
        let body = LimitedBody::new(
            http_body_util::Full::new(Bytes::from_static(b"abcdefgh")),
            10,
            IDLE,
            tap.clone(),
        );
        body.collect().await.unwrap();
        assert_eq!(tap.body(), (b"abcd".to_vec(), false));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_fails_the_body_after_the_idle_timeout() {
        let (tx, inner) = channel_body();
        let tap = RequestTap::new(4);
        let mut body = std::pin::pin!(LimitedBody::new(inner, 100, IDLE, tap.clone()));
        tx.send(Ok(Frame::data(Bytes::from_static(b"ab"))))
            .await
            .unwrap();
        let started = Instant::now();
        assert!(body.frame().await.unwrap().is_ok());
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<BodyStalled>(), "{err}");
        assert_eq!(started.elapsed(), IDLE);
        assert_eq!(tap.fault(), Some(RequestFault::Stalled));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn each_frame_restarts_the_silence_and_unpolled_time_does_not_count() {
        let (tx, inner) = channel_body();
        let tap = RequestTap::new(4);
        let mut body = std::pin::pin!(LimitedBody::new(inner, 100, IDLE, tap.clone()));
        for _ in 0..3 {
            let sender = tx.clone();
            let feed = async move {
                tokio::time::sleep(IDLE - Duration::from_secs(1)).await;
                sender
                    .send(Ok(Frame::data(Bytes::from_static(b"x"))))
                    .await
                    .unwrap();
            };
            let (frame, ()) = tokio::join!(body.frame(), feed);
            assert!(frame.unwrap().is_ok());
        }
        // Nobody polls for longer than the timeout (hyper waiting on the upstream): not the
        // client's silence, so the next wait gets the whole timeout again.
        tokio::time::sleep(IDLE * 2).await;
        let sender = tx.clone();
        let feed = async move {
            tokio::time::sleep(IDLE - Duration::from_secs(1)).await;
            sender
                .send(Ok(Frame::data(Bytes::from_static(b"y"))))
                .await
                .unwrap();
        };
        let (frame, ()) = tokio::join!(body.frame(), feed);
        assert!(frame.unwrap().is_ok());
        drop(tx);
        assert!(body.frame().await.is_none());
        assert_eq!(tap.fault(), None);
    }

    #[tokio::test]
    async fn a_body_error_is_the_clients_fault() {
        let (tx, inner) = channel_body();
        let tap = RequestTap::new(4);
        let body = LimitedBody::new(inner, 100, IDLE, tap.clone());
        tx.send(Err("invalid chunk size line".into()))
            .await
            .unwrap();
        assert!(body.collect().await.is_err());
        assert_eq!(tap.fault(), Some(RequestFault::Malformed));
    }
}
