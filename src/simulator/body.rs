//! The timing edge: a response body that sends a plan's frames on schedule.
//!
//! Deadlines are measured from the first poll, so a paused tokio clock drives it exactly.

use super::plan::Frame;
use bytes::Bytes;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Sends each frame when it is due; an `Abort` frame ends the body with an error.
#[derive(Debug)]
pub struct PlanBody {
    frames: VecDeque<Frame>,
    start: Option<Instant>,
    /// When the last data frame left (or the body started): an abort waits a little after it.
    last_sent: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
}

/// An abort is delayed at least this long after the last data frame, so hyper has flushed the
/// frames sent before it (an error discards whatever is still in its write buffer).
const ABORT_GRACE: Duration = Duration::from_millis(10);

impl PlanBody {
    pub fn new(frames: Vec<Frame>) -> Self {
        Self {
            frames: frames.into(),
            start: None,
            last_sent: None,
            sleep: None,
        }
    }
}

impl http_body::Body for PlanBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let start = *this.start.get_or_insert_with(Instant::now);
        let Some(next) = this.frames.front() else {
            return Poll::Ready(None);
        };
        let mut due = start + Duration::from_millis(next.at_ms());
        if let Frame::Abort { .. } = next {
            due = due.max(this.last_sent.unwrap_or(start) + ABORT_GRACE);
        }
        if due > Instant::now() {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        this.sleep = None;
        match this.frames.pop_front() {
            Some(Frame::Data { bytes, .. }) => {
                this.last_sent = Some(Instant::now());
                Poll::Ready(Some(Ok(http_body::Frame::data(bytes))))
            }
            Some(Frame::Abort { .. }) => {
                this.frames.clear();
                Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "simulated failure (x-sim-fail-after)",
                ))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn frames_arrive_on_schedule() {
        let frames = vec![
            Frame::Data {
                at_ms: 0,
                bytes: Bytes::from_static(b"a"),
            },
            Frame::Data {
                at_ms: 1_500,
                bytes: Bytes::from_static(b"b"),
            },
            Frame::Abort { at_ms: 2_000 },
            Frame::Data {
                at_ms: 3_000,
                bytes: Bytes::from_static(b"c"),
            },
        ];
        let mut body = PlanBody::new(frames);
        let t0 = Instant::now();
        let a = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!((&a[..], t0.elapsed().as_millis()), (&b"a"[..], 0));
        let b = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!((&b[..], t0.elapsed().as_millis()), (&b"b"[..], 1_500));
        assert!(body.frame().await.unwrap().is_err());
        assert_eq!(t0.elapsed().as_millis(), 2_000);
        assert!(body.frame().await.is_none());
    }
}
