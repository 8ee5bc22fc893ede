//! The pacer: one short timer per serving thread while exchanges start there, so that
//! registering an exchange's own timer never wakes the thread's I/O driver.
//!
//! Why: when a timer is inserted earlier than the wake-up tokio's time driver computed when it
//! last parked, tokio writes to the runtime's eventfd so that the park is computed again
//! (`tokio::runtime::time::Handle::reregister`). An exchange's first deadline (its heartbeat,
//! 1 s by default, `proxy::deadlines`) was nearly always that earliest timer: the exchange
//! before it had ended and taken its timer along. Measured pinned at 2,000 req/s: 0.6 eventfd
//! writes and 0.6 extra `epoll_wait` returns per request, every one from `Timer::poll_due`
//! (`perf record -e syscalls:sys_enter_write --call-graph dwarf`; benches/README.md, "Serving
//! threads"). With a timer due within [`PERIOD`] always in the wheel while exchanges come, the
//! computed wake-up is never later than that, and a deadline further off than [`PERIOD`] does
//! not move it.
//!
//! The pacer runs only while exchanges start on its thread: after a whole period in which
//! none started it waits, with no timer, until one does (a wake on its own thread: no
//! syscall). An idle aloud is not woken by it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::task::{Poll, Waker};
use std::time::Duration;

/// How often the pacer's timer fires while exchanges start. Shorter than every deadline an
/// exchange registers first by default (the 1 s heartbeat); a shorter configured heartbeat
/// only costs what it cost before.
pub const PERIOD: Duration = Duration::from_millis(250);

thread_local! {
    /// Exchanges started on this thread (their timers made), wrapping.
    static STARTED: Cell<u64> = const { Cell::new(0) };
    /// The pacer waiting for the next start, if it is.
    static WAITING: RefCell<Option<Waker>> = const { RefCell::new(None) };
}

/// An exchange's timer was made on this thread (`deadlines::Timer::new`).
pub fn note_start() {
    STARTED.with(|s| s.set(s.get().wrapping_add(1)));
    // Only a waiting pacer registers here: the common case reads an empty slot.
    let waiting = WAITING.with(|w| w.borrow_mut().take());
    if let Some(w) = waiting {
        w.wake();
    }
}

fn started() -> u64 {
    STARTED.with(Cell::get)
}

/// The pacer of the calling serving thread, until `stop` resolves. Run it on that thread's
/// runtime (a current-thread runtime: the task never leaves the thread whose counter it reads).
pub async fn run(stop: impl Future<Output = ()>) {
    let mut stop = std::pin::pin!(stop);
    loop {
        // Wait, timer-free, for an exchange to start.
        let seen = started();
        let begun = std::future::poll_fn(|cx| {
            if started() != seen {
                return Poll::Ready(());
            }
            WAITING.with(|w| *w.borrow_mut() = Some(cx.waker().clone()));
            Poll::Pending
        });
        tokio::select! {
            () = &mut stop => return,
            () = begun => {}
        }
        // Tick while they keep starting.
        loop {
            let seen = started();
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(PERIOD) => {}
            }
            if started() == seen {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ticks_only_while_exchanges_start() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async move {
                let pacer = tokio::task::spawn_local(run(async {
                    let _ = rx.await;
                }));
                tokio::task::yield_now().await;
                assert!(WAITING.with(|w| w.borrow().is_some()), "idle: waiting");
                tokio::time::sleep(Duration::from_secs(10)).await;
                assert!(
                    WAITING.with(|w| w.borrow().is_some()),
                    "still, with no timer"
                );
                note_start();
                tokio::task::yield_now().await;
                assert!(WAITING.with(|w| w.borrow().is_none()), "woken by the start");
                // Starts within each period keep it ticking; a quiet period sends it back to
                // waiting, where the next start finds it.
                for _ in 0..3 {
                    tokio::time::sleep(PERIOD / 2).await;
                    note_start();
                }
                tokio::time::sleep(PERIOD * 3).await;
                assert!(WAITING.with(|w| w.borrow().is_some()), "waiting again");
                tx.send(()).expect("the pacer listens");
                pacer.await.expect("the pacer ends when stopped");
            })
            .await;
    }
}
