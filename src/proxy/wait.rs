//! Waiting for the upstream head: it arrives, the attempt fails, or another deadline (a
//! heartbeat, the comments tier's hold) comes due meanwhile and the caller acts on it.

use super::deadlines::{Deadlines, Due, Timer};
use super::error::{Origin, ProxyError};
use http::StatusCode;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// One step of waiting for the head.
#[derive(Debug)]
pub enum Waited<R> {
    Head(R),
    Failed(ProxyError),
    /// Something else came due (never the headers or total deadline: those are `Failed`).
    Due(Due),
}

/// Polls the head future and the exchange's timer once.
pub fn poll_head<F, R>(
    fut: Pin<&mut F>,
    cx: &mut Context<'_>,
    deadlines: &Deadlines,
    timer: &mut Timer,
    headers_timeout: Duration,
) -> Poll<Waited<R>>
where
    F: Future<Output = Result<R, ProxyError>> + ?Sized,
{
    match fut.poll(cx) {
        Poll::Ready(Ok(head)) => return Poll::Ready(Waited::Head(head)),
        Poll::Ready(Err(e)) => return Poll::Ready(Waited::Failed(e)),
        Poll::Pending => {}
    }
    match timer.poll_due(cx, deadlines) {
        None => Poll::Pending,
        Some(due) if due.headers || due.total => {
            Poll::Ready(Waited::Failed(headers_timed_out(headers_timeout)))
        }
        Some(due) => Poll::Ready(Waited::Due(due)),
    }
}

pub fn headers_timed_out(after: Duration) -> ProxyError {
    ProxyError::new(
        StatusCode::GATEWAY_TIMEOUT,
        Origin::Upstream,
        "upstream_headers_timeout",
        format!("the upstream sent no response headers within {after:?}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;
    use tokio::time::Instant;

    fn deadlines() -> Deadlines {
        Deadlines::new(
            Instant::now(),
            Duration::from_secs(1),
            Duration::from_secs(10),
            Duration::from_secs(60),
            Duration::from_secs(30),
        )
    }

    async fn step(
        fut: &mut Pin<Box<dyn Future<Output = Result<u16, ProxyError>> + Send>>,
        d: &Deadlines,
        t: &mut Timer,
    ) -> Waited<u16> {
        std::future::poll_fn(|cx| poll_head(fut.as_mut(), cx, d, t, Duration::from_secs(10))).await
    }

    fn head(
        rx: oneshot::Receiver<u16>,
    ) -> Pin<Box<dyn Future<Output = Result<u16, ProxyError>> + Send>> {
        Box::pin(async move {
            rx.await.map_err(|_| {
                ProxyError::new(StatusCode::BAD_GATEWAY, Origin::Upstream, "gone", "gone")
            })
        })
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_and_the_hold_come_due_while_waiting_then_the_head_arrives() {
        let t0 = Instant::now();
        let (tx, rx) = oneshot::channel();
        let mut fut = head(rx);
        let mut d = deadlines();
        d.hold_until(t0 + Duration::from_millis(1500));
        let mut timer = Timer::new(&d);
        let Waited::Due(due) = step(&mut fut, &d, &mut timer).await else {
            panic!("a heartbeat first")
        };
        assert!(due.beat && !due.hold);
        assert_eq!(t0.elapsed(), Duration::from_secs(1));
        d.beat_done(Instant::now());
        let Waited::Due(due) = step(&mut fut, &d, &mut timer).await else {
            panic!("then the hold")
        };
        assert!(due.hold && !due.beat);
        assert_eq!(t0.elapsed(), Duration::from_millis(1500));
        d.clear_hold();
        tx.send(200).unwrap();
        assert!(matches!(
            step(&mut fut, &d, &mut timer).await,
            Waited::Head(200)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn no_head_within_the_headers_timeout_is_a_504() {
        let t0 = Instant::now();
        let (_tx, rx) = oneshot::channel::<u16>();
        let mut fut = head(rx);
        let mut d = deadlines();
        let mut timer = Timer::new(&d);
        loop {
            match step(&mut fut, &d, &mut timer).await {
                Waited::Due(_) => d.beat_done(Instant::now()),
                Waited::Failed(e) => {
                    assert_eq!(e.status, StatusCode::GATEWAY_TIMEOUT);
                    break;
                }
                Waited::Head(_) => panic!("no head was sent"),
            }
        }
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_attempt_is_reported_at_once() {
        let (tx, rx) = oneshot::channel::<u16>();
        let mut fut = head(rx);
        let d = deadlines();
        let mut timer = Timer::new(&d);
        drop(tx);
        let Waited::Failed(e) = step(&mut fut, &d, &mut timer).await else {
            panic!("failure expected")
        };
        assert_eq!(e.label, "gone");
    }
}
