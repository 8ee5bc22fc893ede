//! Finish steps run after the client's last bytes went out: a queue of ended exchanges per
//! serving thread, each drained by a server task on that thread.
//!
//! hyper's HTTP/1 server drops a response body as soon as it holds the body's last bytes,
//! before it writes them to the socket; finishing there (the record, the log line, the
//! metrics, the side channel's `done`) delayed every response by that much. The body hands
//! its ended exchange here instead, and the server's `finish` task runs it once the
//! connection's task has yielded, which on HTTP/1 is after hyper's flush (benches/README.md,
//! "Results after the finish-after-flush work"). On HTTP/2 the stream's task hands the bytes to
//! the connection's task, which may run after this one: there it only moves work, it does not
//! delay it.
//!
//! The hand-over fixes the ending (and its instant) and frees the exchange's concurrency slot
//! and upstream stream slot, so a client that sends its next request the moment its answer
//! ended finds its slot free, and the figures (record, log line, metrics, span) are what
//! happened, not when the step ran. With no task draining the queue (an `App` built alone, or
//! before the server opened it or after it closed it) or with the queue full, the caller
//! finishes at once: nothing waits and nothing is dropped. A job that is dropped instead of run
//! (a task that ended early) still finishes as it drops, with everything it carries.
//!
//! Each serving thread (its `home`) has a queue of its own, drained by a task on its own
//! runtime ([`Laters`]): a body hands its exchange to the thread it runs on, so handing over
//! never wakes another thread (a wake across threads is a syscall and a context switch per
//! request).

use super::exchange::Exchange;
use crate::apis::stream::{Summary, Usage};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

/// Past this many waiting exchanges the caller finishes its own at once: the queue is bounded
/// whatever the load, and finishing never falls further behind than this.
const MAX_WAITING: usize = 4096;

/// An ended exchange and what its stream interpreter learnt, waiting for its finish step. Its
/// finish step runs when it drops: `run` is that drop, said plainly.
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
    pub fn run(self) {
        drop(self);
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some((model, usage)) = self.streamed.take() {
            self.ex.answered_from((model.as_deref(), usage));
        }
        self.ex.finish(self.summary.take().map(|s| *s));
    }
}

/// One [`Later`] per home (`proxy::home`).
pub struct Laters {
    homes: Box<[Arc<Later>]>,
}

impl Default for Laters {
    fn default() -> Self {
        Laters {
            homes: (0..super::home::HOMES)
                .map(|_| Arc::new(Later::new()))
                .collect(),
        }
    }
}

impl Laters {
    pub fn new() -> Self {
        Self::default()
    }

    /// The calling thread's queue.
    pub fn here(&self) -> &Arc<Later> {
        &self.homes[super::home::get()]
    }

    /// Home `home`'s queue (taken modulo the number of homes, as `home::set` does).
    pub fn at(&self, home: usize) -> &Arc<Later> {
        &self.homes[home % self.homes.len()]
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

    /// Opens the queue for a task that will drive [`Later::run`]; `false` when one already
    /// does, and that one keeps it.
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
    /// as a tracked task once [`Later::open`] said so. However the future ends (dropped before
    /// its first poll, cancelled, or done), the queue closes with it and the jobs left finish
    /// as they drop. A finish step that panics is logged and the others run on.
    pub fn run(self: Arc<Self>) -> impl Future<Output = ()> + Send {
        let guard = CloseOnDrop(Arc::clone(&self));
        async move {
            let _guard = guard;
            let mut batch: Vec<Job> = Vec::new();
            while self.take(&mut batch).await {
                for job in batch.drain(..) {
                    // A finish step is a few microseconds: the budget makes a long batch yield
                    // to the worker's other tasks now and then.
                    tokio::task::coop::consume_budget().await;
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()));
                    if ran.is_err() {
                        tracing::error!("an exchange's finish step panicked");
                    }
                }
            }
        }
    }

    /// Waits for jobs and swaps them into `batch`; `false` once the queue closed and is empty.
    async fn take(&self, batch: &mut Vec<Job>) -> bool {
        std::future::poll_fn(|cx| {
            let Ok(mut s) = self.state.lock() else {
                return Poll::Ready(false);
            };
            if !s.jobs.is_empty() {
                std::mem::swap(batch, &mut s.jobs);
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
        .await
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

/// Closes the queue when `run`'s future goes, however it goes; the jobs still queued then
/// finish as they drop.
struct CloseOnDrop(Arc<Later>);

impl Drop for CloseOnDrop {
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
    use crate::progress::Ladder;
    use crate::progress::Watcher;
    use crate::progress::hub::{Hub, HubLimits, Poll as Seen};
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::sync::Semaphore;
    use tokio::time::Instant;

    /// Exchanges that hold a slot of `slots` and are watched on `hub`: a finished one's side
    /// channel says so (`End`), a running one's says `Wait`.
    struct Bench {
        slots: Arc<Semaphore>,
        hub: Arc<Hub>,
        shutting_down: Arc<AtomicBool>,
        n: usize,
    }

    impl Bench {
        fn new(slots: usize) -> Self {
            Bench {
                slots: Arc::new(Semaphore::new(slots)),
                hub: Hub::new(HubLimits::default()),
                shutting_down: Arc::new(AtomicBool::new(false)),
                n: 0,
            }
        }

        fn exchange(&mut self) -> Box<Exchange> {
            self.n += 1;
            let id: Arc<str> = Arc::from(format!("req-{}", self.n));
            let mut ex = Box::new(Exchange::new(
                Arc::clone(&id),
                Arc::from("r"),
                Api::OpenAi,
                Tier::Off,
                (http::Method::POST, "/v1/chat/completions".into()),
                Instant::now(),
                Arc::clone(&self.shutting_down),
            ));
            ex.hold(Arc::clone(&self.slots).try_acquire_owned().unwrap());
            let begun = self.hub.begin(&id, None).unwrap();
            ex.w = Some(Watcher::new(
                id,
                Instant::now(),
                begun.last_seq,
                Arc::clone(&self.hub),
                Arc::new(Ladder::default()),
                begun.listeners,
                false,
            ));
            ex
        }

        /// A job for a new exchange, handed over as a body does it.
        fn job(&mut self) -> Job {
            let mut ex = self.exchange();
            Job {
                ex: Exchange::take_for_finish(&mut ex),
                streamed: None,
                summary: None,
            }
        }

        fn finished(&self, n: usize) -> bool {
            matches!(
                self.hub.poll(&format!("req-{n}"), u64::MAX, None),
                Seen::End
            )
        }

        fn all_finished(&self) -> bool {
            (1..=self.n).all(|n| self.finished(n))
        }

        fn none_finished(&self) -> bool {
            (1..=self.n).all(|n| {
                matches!(
                    self.hub.poll(&format!("req-{n}"), u64::MAX, None),
                    Seen::Wait
                )
            })
        }
    }

    /// A queue with its task spawned, and `jobs` new exchanges handed to it.
    fn running(b: &mut Bench, jobs: usize) -> (Arc<Later>, tokio::task::JoinHandle<()>) {
        let later = Arc::new(Later::new());
        assert!(later.open());
        let task = tokio::spawn(Arc::clone(&later).run());
        for _ in 0..jobs {
            assert!(later.defer(b.job()).is_ok());
        }
        (later, task)
    }

    #[tokio::test]
    async fn without_a_task_or_past_the_bound_the_caller_gets_its_job_back() {
        let mut b = Bench::new(MAX_WAITING + 2);
        let later = Arc::new(Later::new());
        // Nobody runs the queue: the job comes back to be finished by its caller.
        let Err(back) = later.defer(b.job()) else {
            panic!("taken with nobody to run it");
        };
        assert!(b.none_finished());
        back.run();
        assert!(b.all_finished());
        assert!(later.open());
        assert!(!later.open(), "a second task does not run the same queue");
        for _ in 0..MAX_WAITING {
            assert!(later.defer(b.job()).is_ok());
        }
        assert_eq!(later.len(), MAX_WAITING);
        assert!(later.defer(b.job()).is_err(), "the queue is bounded");
        // Handed over, not finished; but every slot is free already: the answers are out.
        assert!(!b.finished(2) && !b.finished(MAX_WAITING + 1));
        assert_eq!(b.slots.available_permits(), MAX_WAITING + 2);
        // The queue's end runs what it holds.
        later.close();
        Arc::clone(&later).run().await;
        assert!(b.all_finished());
        assert!(later.is_empty());
    }

    #[tokio::test]
    async fn a_job_runs_once_the_task_gets_its_turn_and_close_ends_the_task() {
        let mut b = Bench::new(4);
        let (later, task) = running(&mut b, 2);
        // Handed over, not run: the caller went on at once.
        assert!(b.none_finished());
        tokio::task::yield_now().await;
        assert!(b.all_finished(), "the task ran both at its turn");
        assert!(later.defer(b.job()).is_ok());
        later.close();
        task.await.unwrap();
        assert!(b.all_finished(), "what was queued at the close ran");
        assert!(later.defer(b.job()).is_err());
        assert!(later.open(), "a later server may run it again");
    }

    #[tokio::test]
    async fn a_task_that_ends_early_closes_the_queue_and_its_jobs_still_finish() {
        let mut b = Bench::new(4);
        let (later, task) = running(&mut b, 2);
        // Cut before it ran them (a shutdown dropping the runtime's tasks).
        task.abort();
        let _ = task.await;
        assert!(
            b.all_finished(),
            "queued jobs finish as the queue lets them go"
        );
        // The queue closed with its task: a job handed over now comes back to its caller.
        assert!(later.defer(b.job()).is_err());
        // A future dropped before its first poll closes the queue too.
        assert!(later.open());
        drop(Arc::clone(&later).run());
        assert!(later.defer(b.job()).is_err());
    }

    #[test]
    fn each_thread_hands_over_to_its_own_homes_queue() {
        let laters = Arc::new(Laters::new());
        assert!(Arc::ptr_eq(laters.here(), laters.at(0)));
        let other = Arc::clone(&laters);
        let (here, at_3) = std::thread::spawn(move || {
            crate::proxy::home::set(3);
            (Arc::clone(other.here()), Arc::clone(other.at(3)))
        })
        .join()
        .map_err(|_| "the thread panicked")
        .unwrap();
        assert!(Arc::ptr_eq(&here, &at_3));
        assert!(!Arc::ptr_eq(&here, laters.here()));
        assert!(Arc::ptr_eq(laters.at(super::super::home::HOMES + 3), &at_3));
        // Opened on one home, closed on another: they are separate queues.
        let mut b = Bench::new(2);
        assert!(at_3.open());
        assert!(at_3.defer(b.job()).is_ok());
        assert!(laters.here().defer(b.job()).is_err());
    }

    #[test]
    fn an_exchange_handed_over_keeps_the_ending_it_had_at_the_hand_over() {
        let mut b = Bench::new(1);
        let mut ex = b.exchange();
        // The client left; the finish step runs only after a shutdown began.
        let mut taken = Exchange::take_for_finish(&mut ex);
        b.shutting_down.store(true, Ordering::Release);
        assert!(ex.is_finished(), "the stand-in records nothing");
        assert!(ex.finish(None).is_none());
        assert_eq!(
            b.slots.available_permits(),
            1,
            "the slot is free at the hand-over"
        );
        assert!(!b.finished(1));
        let figures = taken.finish(None).unwrap();
        assert_eq!(figures.outcome, Outcome::ClientDisconnected);
        assert_eq!(figures.cause, "client_gone");
        assert!(b.finished(1));
    }
}
