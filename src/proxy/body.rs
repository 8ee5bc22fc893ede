//! Body wrappers on the forwarding path: a size-limited request body and a response body that
//! enforces idle and total deadlines. Both pass frames through untouched.

mod request;

pub use request::{BodyTooLarge, LimitedBody, RequestFault, RequestTap};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a forwarded response body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyEnd {
    /// The upstream finished the body.
    Complete,
    /// No chunk arrived within the idle timeout.
    IdleTimeout,
    /// The exchange ran past its total timeout.
    TotalTimeout,
    /// The upstream connection failed mid-body.
    UpstreamError,
    /// The client went away (the body was dropped before it ended).
    ClientGone,
}

impl BodyEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            BodyEnd::Complete => "complete",
            BodyEnd::IdleTimeout => "idle_timeout",
            BodyEnd::TotalTimeout => "total_timeout",
            BodyEnd::UpstreamError => "upstream_error",
            BodyEnd::ClientGone => "client_gone",
        }
    }
}

/// Called once when a response body ends, however it ends.
pub trait OnEnd: Send + 'static {
    fn on_end(self: Box<Self>, end: BodyEnd, bytes: u64);
}

pin_project! {
    /// A response body with deadlines. Past a deadline, or on an upstream error after the
    /// response has started, the client's stream ends cleanly and the cause is reported.
    pub struct TimedBody<B> {
        #[pin]
        inner: B,
        idle: Duration,
        idle_timer: Pin<Box<Sleep>>,
        total_timer: Pin<Box<Sleep>>,
        bytes: u64,
        on_end: Option<Box<dyn OnEnd>>,
        ended: Option<BodyEnd>,
    }

    impl<B> PinnedDrop for TimedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(cb) = this.on_end.take() {
                cb.on_end(BodyEnd::ClientGone, *this.bytes);
            }
        }
    }
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, idle: Duration, deadline: Instant, on_end: Box<dyn OnEnd>) -> Self {
        TimedBody {
            inner,
            idle,
            idle_timer: Box::pin(tokio::time::sleep(idle)),
            total_timer: Box::pin(tokio::time::sleep_until(deadline)),
            bytes: 0,
            on_end: Some(on_end),
            ended: None,
        }
    }
}

impl<B> TimedBody<B> {
    /// How the body ended, once it has.
    pub fn ended(&self) -> Option<BodyEnd> {
        self.ended
    }
}

impl<B> Body for TimedBody<B>
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
        if this.on_end.is_none() {
            return Poll::Ready(None);
        }
        let end = match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.bytes += data.len() as u64;
                }
                let next = Instant::now() + *this.idle;
                this.idle_timer.as_mut().reset(next);
                // A body of known length is complete after its last byte: hyper does not poll
                // it again, so the end is reported now rather than as a drop.
                if this.inner.is_end_stream() {
                    *this.ended = Some(BodyEnd::Complete);
                    if let Some(cb) = this.on_end.take() {
                        cb.on_end(BodyEnd::Complete, *this.bytes);
                    }
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                tracing::warn!(error = %e, "upstream failed mid-body; ending the client stream");
                BodyEnd::UpstreamError
            }
            Poll::Ready(None) => BodyEnd::Complete,
            Poll::Pending => {
                if this.total_timer.as_mut().poll(cx).is_ready() {
                    BodyEnd::TotalTimeout
                } else if this.idle_timer.as_mut().poll(cx).is_ready() {
                    BodyEnd::IdleTimeout
                } else {
                    return Poll::Pending;
                }
            }
        };
        *this.ended = Some(end);
        if let Some(cb) = this.on_end.take() {
            cb.on_end(end, *this.bytes);
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.on_end.is_none() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

use std::future::Future;

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::sync::{Arc, Mutex};

    struct Record(Arc<Mutex<Option<BodyEnd>>>);
    impl OnEnd for Record {
        fn on_end(self: Box<Self>, end: BodyEnd, _bytes: u64) {
            *self.0.lock().unwrap() = Some(end);
        }
    }

    fn silent_body()
    -> StreamBody<tokio_stream::wrappers::ReceiverStream<Result<Frame<Bytes>, BoxError>>> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        std::mem::forget(tx);
        StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx))
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_ends_the_stream_cleanly() {
        let seen = Arc::new(Mutex::new(None));
        let deadline = Instant::now() + Duration::from_secs(600);
        let body = TimedBody::new(
            silent_body(),
            Duration::from_secs(5),
            deadline,
            Box::new(Record(seen.clone())),
        );
        let started = Instant::now();
        let collected = body.collect().await.unwrap().to_bytes();
        assert!(collected.is_empty());
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(*seen.lock().unwrap(), Some(BodyEnd::IdleTimeout));
    }

    #[tokio::test(start_paused = true)]
    async fn total_timeout_wins_over_idle() {
        let seen = Arc::new(Mutex::new(None));
        let deadline = Instant::now() + Duration::from_secs(2);
        let body = TimedBody::new(
            silent_body(),
            Duration::from_secs(5),
            deadline,
            Box::new(Record(seen.clone())),
        );
        body.collect().await.unwrap();
        assert_eq!(*seen.lock().unwrap(), Some(BodyEnd::TotalTimeout));
    }
}
