//! Finish steps run after the client's last bytes went out: a queue of ended exchanges that
//! one server task drains.
//!
//! hyper drops a response body as soon as it has its last bytes, before it writes them to the
//! socket; finishing there (the record, the log line, the metrics, the side channel's `done`)
//! would delay every response by that much. The body hands its ended exchange here instead;
//! the server's `finish` task runs it once the connection's task has yielded, which is after
//! hyper's flush (benches/README.md, "Results after the finish-after-flush work").
//!
//! The ending (and its instant) is settled before the hand-over, so what the finish step
//! records is what happened, not when it ran. With no task draining the queue (an `App` built
//! alone, before the server opened it, after it closed it) or with the queue full, the caller
//! finishes at once: nothing waits and nothing is dropped.

use super::exchange::Exchange;
use crate::apis::stream::{Summary, Usage};
use std::sync::Mutex;
use std::task::{Poll, Waker};

/// Past this many waiting exchanges the caller finishes its own at once: the queue is bounded
/// whatever the load (the task drains it on the same runtime, so it rarely holds more than a
/// batch of connections' worth).
const MAX_WAITING: usize = 4096;

/// An ended exchange and what its stream interpreter learnt, waiting for its finish step.
pub struct Job {
    pub ex: Box<Exchange>,
    /// The model and tokens the stream named, for the metrics.
    pub streamed: Option<(Option<String>, Option<Usage>)>,
    /// The interpreter's summary, when the exchange is captured or traced (boxed: most jobs
    /// have none, and the queue's slots stay small).
    pub summary: Option<Box<Summary>>,
}

impl Job {
    /// The exchange's finish step.
    pub fn run(mut self) {
        if let Some((model, usage)) = self.streamed.take() {
            self.ex.answered_from((model.as_deref(), usage));
        }
        self.ex.finish(self.summary.take().map(|s| *s));
    }
}

#[derive(Default)]
pub struct Later {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    jobs: Vec<Job>,
    waker: Option<Waker>,
    /// Jobs are taken: a task runs (or is about to run) `run`.
    open: bool,
    /// A task was given `run` and has not ended.
    running: bool,
}

impl Later {
    pub fn new() -> Self {
        Self::default()
    }

    /// Hands `job` to the draining task; gives it back when there is none or the queue is full.
    pub fn defer(&self, job: Job) -> Result<(), Job> {
        let waker = {
            let Ok(mut s) = self.state.lock() else {
                return Err(job);
            };
            if !s.open || s.jobs.len() >= MAX_WAITING {
                return Err(job);
            }
            s.jobs.push(job);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Opens the queue for a task that will [`Later::run`] it; `false` when one already does
    /// (a second server over the same app), and that one keeps it.
    pub fn open(&self) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        if s.running {
            return false;
        }
        s.running = true;
        s.open = true;
        true
    }

    /// Runs every job handed over until [`Later::close`], then those left; the server spawns it
    /// as a tracked task once [`Later::open`] said so. If it ends any other way (a panic in a
    /// finish step), the queue closes and the jobs left finish as they drop.
    pub async fn run(&self) {
        let guard = CloseOnDrop(self);
        let mut batch: Vec<Job> = Vec::new();
        loop {
            let more = std::future::poll_fn(|cx| {
                let Ok(mut s) = self.state.lock() else {
                    return Poll::Ready(false);
                };
                if !s.jobs.is_empty() {
                    std::mem::swap(&mut batch, &mut s.jobs);
                    return Poll::Ready(true);
                }
                if !s.open {
                    return Poll::Ready(false);
                }
                match &s.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => s.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            })
            .await;
            if !more {
                break;
            }
            for job in batch.drain(..) {
                job.run();
            }
        }
        drop(guard);
    }

    /// No more jobs: callers finish their own from now on, and `run` ends once it has run the
    /// ones it holds.
    pub fn close(&self) {
        let waker = match self.state.lock() {
            Ok(mut s) => {
                s.open = false;
                s.waker.take()
            }
            Err(_) => None,
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// How many jobs wait.
    pub fn len(&self) -> usize {
        self.state.lock().map_or(0, |s| s.jobs.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Closes the queue when `run` ends, however it ends; the jobs still queued then finish as
/// they drop (an exchange's drop runs its finish step).
struct CloseOnDrop<'a>(&'a Later);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        let left = match self.0.state.lock() {
            Ok(mut s) => {
                s.open = false;
                s.running = false;
                std::mem::take(&mut s.jobs)
            }
            Err(_) => Vec::new(),
        };
        drop(left);
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the tests' own tasks, each awaited or aborted by its test
mod tests {
    use super::*;
    use crate::apis::Api;
    use crate::capture::Outcome;
    use crate::config::Tier;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::sync::Semaphore;
    use tokio::time::Instant;

    /// An exchange holding one slot of `slots`: its finish step gives the slot back.
    fn exchange(slots: &Arc<Semaphore>, shutting_down: &Arc<AtomicBool>) -> Box<Exchange> {
        let mut ex = Box::new(Exchange::new(
            Arc::from("req-1"),
            Arc::from("r"),
            Api::OpenAi,
            Tier::Off,
            (http::Method::POST, "/v1/chat/completions".into()),
            Instant::now(),
            Arc::clone(shutting_down),
        ));
        ex.hold(Arc::clone(slots).try_acquire_owned().unwrap());
        ex
    }

    fn job(ex: Box<Exchange>) -> Job {
        Job {
            ex,
            streamed: None,
            summary: None,
        }
    }

    #[tokio::test]
    async fn without_a_task_or_past_the_bound_the_caller_gets_its_job_back() {
        let slots = Arc::new(Semaphore::new(MAX_WAITING + 2));
        let flag = Arc::new(AtomicBool::new(false));
        let later = Later::new();
        // Nobody runs the queue: the job comes back to be finished by its caller.
        let Err(back) = later.defer(job(exchange(&slots, &flag))) else {
            panic!("taken with nobody to run it");
        };
        back.run();
        assert_eq!(slots.available_permits(), MAX_WAITING + 2);
        assert!(later.open());
        assert!(!later.open(), "a second task does not run the same queue");
        for _ in 0..MAX_WAITING {
            assert!(later.defer(job(exchange(&slots, &flag))).is_ok());
        }
        assert_eq!(later.len(), MAX_WAITING);
        assert!(later.defer(job(exchange(&slots, &flag))).is_err());
        // Nothing ran yet: every queued exchange still holds its slot.
        assert_eq!(slots.available_permits(), 2);
        // The queue's end finishes what it holds.
        later.close();
        later.run().await;
        assert_eq!(slots.available_permits(), MAX_WAITING + 2);
        assert!(later.is_empty());
    }

    #[tokio::test]
    async fn a_job_runs_once_the_task_gets_its_turn_and_close_ends_the_task() {
        let slots = Arc::new(Semaphore::new(4));
        let flag = Arc::new(AtomicBool::new(false));
        let later = Arc::new(Later::new());
        assert!(later.open());
        let task = tokio::spawn({
            let later = Arc::clone(&later);
            async move { later.run().await }
        });
        assert!(later.defer(job(exchange(&slots, &flag))).is_ok());
        assert!(later.defer(job(exchange(&slots, &flag))).is_ok());
        // Handed over, not run: the caller went on at once.
        assert_eq!(slots.available_permits(), 2);
        tokio::task::yield_now().await;
        assert_eq!(slots.available_permits(), 4, "the task ran both");
        assert!(later.defer(job(exchange(&slots, &flag))).is_ok());
        later.close();
        task.await.unwrap();
        assert_eq!(
            slots.available_permits(),
            4,
            "what was queued at the close ran"
        );
        assert!(later.defer(job(exchange(&slots, &flag))).is_err());
        assert!(later.open(), "a later server may run it again");
    }

    #[tokio::test]
    async fn a_task_that_ends_early_closes_the_queue_and_the_jobs_left_still_finish() {
        let slots = Arc::new(Semaphore::new(2));
        let flag = Arc::new(AtomicBool::new(false));
        let later = Arc::new(Later::new());
        assert!(later.open());
        let task = tokio::spawn({
            let later = Arc::clone(&later);
            async move { later.run().await }
        });
        tokio::task::yield_now().await;
        task.abort();
        let _ = task.await;
        // The queue closed with its task: a job handed over now comes back to its caller.
        assert!(later.defer(job(exchange(&slots, &flag))).is_err());
        assert_eq!(slots.available_permits(), 2);
    }

    #[test]
    fn an_exchange_handed_over_keeps_the_ending_it_had_at_the_hand_over() {
        let slots = Arc::new(Semaphore::new(1));
        let flag = Arc::new(AtomicBool::new(false));
        let mut ex = exchange(&slots, &flag);
        // The client left; the finish step runs only after a shutdown began.
        let mut taken = ex.take_for_finish();
        flag.store(true, Ordering::Release);
        assert!(ex.is_finished(), "the stand-in records nothing");
        assert!(ex.finish(None).is_none());
        assert_eq!(
            slots.available_permits(),
            0,
            "the slot went with the exchange"
        );
        let figures = taken.finish(None).unwrap();
        assert_eq!(figures.outcome, Outcome::ClientDisconnected);
        assert_eq!(figures.cause, "client_gone");
        assert_eq!(slots.available_permits(), 1);
    }
}
