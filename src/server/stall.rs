//! A socket wrapper that fails a write which has made no progress for too long.
//!
//! A client that stops reading fills its receive window; hyper's writes then stay pending
//! forever and the upstream stream behind them stays open. After `timeout` without progress
//! the write fails, hyper closes the connection, and the upstream request is dropped with it.

use pin_project_lite::pin_project;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

pin_project! {
    pub struct StallGuard<T> {
        #[pin]
        io: T,
        timeout: Duration,
        stalled_since: Option<Pin<Box<Sleep>>>,
    }
}

impl<T> StallGuard<T> {
    pub fn new(io: T, timeout: Duration) -> Self {
        StallGuard {
            io,
            timeout,
            stalled_since: None,
        }
    }
}

/// Turns a pending write into an error once it has been pending for the whole timeout.
fn guard<R>(
    poll: Poll<io::Result<R>>,
    timer: &mut Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    cx: &mut Context<'_>,
) -> Poll<io::Result<R>> {
    match poll {
        Poll::Ready(r) => {
            *timer = None;
            Poll::Ready(r)
        }
        Poll::Pending => {
            let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
            ready!(sleep.as_mut().poll(cx));
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("client read nothing for {timeout:?} (write stall)"),
            )))
        }
    }
}

use std::future::Future;

impl<T: AsyncWrite> AsyncWrite for StallGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let poll = this.io.poll_write(cx, buf);
        guard(poll, this.stalled_since, *this.timeout, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let poll = this.io.poll_write_vectored(cx, bufs);
        guard(poll, this.stalled_since, *this.timeout, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let poll = this.io.poll_flush(cx);
        guard(poll, this.stalled_since, *this.timeout, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

impl<T: AsyncRead> AsyncRead for StallGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_write_pending_past_the_timeout_fails() {
        let (client, _server) = tokio::io::duplex(16);
        let mut guarded = StallGuard::new(client, Duration::from_secs(5));
        guarded.write_all(&[0; 16]).await.unwrap();
        let started = tokio::time::Instant::now();
        let err = guarded.write_all(&[0; 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
