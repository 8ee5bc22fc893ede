//! An exchange's deadlines on one timer: heartbeat, hold, upstream headers, idle and total.
//!
//! `Deadlines` is pure (it is handed every instant it compares); `Timer` is the single tokio
//! sleep an exchange registers. The timer is re-armed only when the next deadline moves earlier,
//! or after it fired: an upstream chunk only notes the time, so a busy stream costs no timer
//! operations per chunk, and a request that answers within a heartbeat registers one timer.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// About thirty years: what "never" means for a deadline.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `t + d`, saturating at a far future instead of overflowing on absurd configured durations.
pub fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d.min(FAR))
        .or_else(|| t.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(t)
}

/// What came due at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Due {
    pub beat: bool,
    pub hold: bool,
    pub headers: bool,
    pub idle: bool,
    pub total: bool,
}

impl Due {
    pub fn any(self) -> bool {
        self.beat || self.hold || self.headers || self.idle || self.total
    }
}

/// Every deadline of one exchange.
#[derive(Clone, Debug)]
pub struct Deadlines {
    heartbeat: Duration,
    next_beat: Instant,
    hold: Option<Instant>,
    /// Until the upstream head arrives.
    headers: Option<Instant>,
    total: Instant,
    idle: Duration,
    /// Set when the head arrived, then on every upstream chunk: the idle clock.
    last_upstream: Option<Instant>,
}

impl Deadlines {
    /// Deadlines for an exchange that started at `started`.
    pub fn new(
        started: Instant,
        heartbeat: Duration,
        headers_timeout: Duration,
        total_timeout: Duration,
        idle: Duration,
    ) -> Self {
        let total = later(started, total_timeout);
        Deadlines {
            heartbeat,
            next_beat: later(started, heartbeat),
            hold: None,
            headers: Some(later(started, headers_timeout).min(total)),
            total,
            idle,
            last_upstream: None,
        }
    }

    /// Holds the client's head until `at` (the comments tier).
    pub fn hold_until(&mut self, at: Instant) {
        self.hold = Some(at);
    }

    pub fn clear_hold(&mut self) {
        self.hold = None;
    }

    /// The upstream head arrived at `now`: the headers deadline is over, the idle clock starts.
    pub fn head_arrived(&mut self, now: Instant) {
        self.headers = None;
        self.last_upstream = Some(now);
    }

    /// The upstream sent body bytes at `now`.
    pub fn upstream_spoke(&mut self, now: Instant) {
        self.last_upstream = Some(now);
    }

    /// When the upstream last sent anything (its head or a chunk).
    pub fn last_upstream(&self) -> Option<Instant> {
        self.last_upstream
    }

    /// A heartbeat went out (or was skipped) at `now`: the next is one interval later.
    pub fn beat_done(&mut self, now: Instant) {
        self.next_beat = later(now, self.heartbeat);
    }

    /// Brings the next heartbeat forward (or back) to `at`.
    pub fn beat_at(&mut self, at: Instant) {
        self.next_beat = at;
    }

    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    fn idle_deadline(&self) -> Option<Instant> {
        self.last_upstream.map(|t| later(t, self.idle))
    }

    /// The earliest deadline.
    pub fn next(&self) -> Instant {
        [
            Some(self.next_beat),
            self.hold,
            self.headers,
            self.idle_deadline(),
            Some(self.total),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.total)
    }

    /// What is due at `now`.
    pub fn due(&self, now: Instant) -> Due {
        Due {
            beat: self.next_beat <= now,
            hold: self.hold.is_some_and(|h| h <= now),
            headers: self.headers.is_some_and(|h| h <= now),
            idle: self.idle_deadline().is_some_and(|i| i <= now),
            total: self.total <= now,
        }
    }
}

/// The one tokio timer of an exchange.
pub struct Timer {
    sleep: Pin<Box<Sleep>>,
    armed: Instant,
}

impl Timer {
    pub fn new(deadlines: &Deadlines) -> Self {
        // Keeps this thread's pacer ticking, so arming this timer wakes no driver (`pace`).
        super::pace::note_start();
        let armed = deadlines.next();
        Timer {
            sleep: Box::pin(tokio::time::sleep_until(armed)),
            armed,
        }
    }

    /// What is due now, if anything; otherwise registers the waker for the next deadline.
    pub fn poll_due(&mut self, cx: &mut Context<'_>, deadlines: &Deadlines) -> Option<Due> {
        loop {
            let next = deadlines.next();
            // Later deadlines are found when the earlier arming fires; only an earlier one
            // needs the timer moved now.
            if next < self.armed {
                self.arm(next);
            }
            if self.sleep.as_mut().poll(cx).is_pending() {
                return None;
            }
            let due = deadlines.due(Instant::now());
            if due.any() {
                // Arm for what comes next once the caller has acted on this.
                self.armed = Instant::now();
                return Some(due);
            }
            self.arm(next);
        }
    }

    fn arm(&mut self, at: Instant) {
        self.armed = at;
        self.sleep.as_mut().reset(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deadlines(now: Instant) -> Deadlines {
        Deadlines::new(
            now,
            Duration::from_secs(1),
            Duration::from_secs(10),
            Duration::from_secs(60),
            Duration::from_secs(3),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn the_earliest_deadline_wins_and_idle_starts_with_the_head() {
        let t0 = Instant::now();
        let mut d = deadlines(t0);
        assert_eq!(d.next(), t0 + Duration::from_secs(1));
        d.beat_done(t0 + Duration::from_secs(9));
        assert_eq!(d.next(), t0 + Duration::from_secs(10), "headers timeout");
        assert!(d.due(t0 + Duration::from_secs(10)).headers);
        d.head_arrived(t0 + Duration::from_secs(5));
        assert_eq!(d.next(), t0 + Duration::from_secs(8), "idle after the head");
        d.upstream_spoke(t0 + Duration::from_secs(7));
        assert!(!d.due(t0 + Duration::from_secs(9)).idle);
        assert!(d.due(t0 + Duration::from_secs(10)).idle);
    }

    #[tokio::test(start_paused = true)]
    async fn absurd_durations_do_not_overflow() {
        let t0 = Instant::now();
        let d = Deadlines::new(
            t0,
            Duration::MAX,
            Duration::MAX,
            Duration::MAX,
            Duration::MAX,
        );
        assert!(d.next() > t0 + Duration::from_secs(365 * 24 * 3600));
        assert!(!d.due(t0 + Duration::from_secs(3600)).any());
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_fires_per_deadline_not_per_chunk() {
        let t0 = Instant::now();
        let mut d = deadlines(t0);
        d.head_arrived(t0);
        d.beat_done(t0 + Duration::from_secs(100));
        let mut timer = Timer::new(&d);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert_eq!(timer.poll_due(&mut cx, &d), None);
        // Chunks every 2 s keep the 3 s idle deadline away.
        for i in 1..=5 {
            tokio::time::advance(Duration::from_secs(2)).await;
            d.upstream_spoke(t0 + Duration::from_secs(2 * i));
            assert_eq!(timer.poll_due(&mut cx, &d), None, "chunk {i}");
        }
        tokio::time::advance(Duration::from_secs(3)).await;
        let due = timer.poll_due(&mut cx, &d).expect("idle");
        assert!(due.idle && !due.total);
    }
}
