//! The capture writer gives way to requests: it runs as a Linux `SCHED_IDLE` thread, so a
//! request's thread that wakes up always preempts it. With a normal priority a batch of
//! redaction and SQLite work held a request's core for a scheduler slice (p99 +2 to 3 ms at
//! 2,000 req/s, measured); `SCHED_IDLE` brought it under 0.7 ms. When requests keep every core
//! busy the writer falls behind, its queue fills, and the overflow thread (normal priority)
//! spills the excess to disk; the writer replays it once the CPU is free. An unprivileged thread
//! cannot leave `SCHED_IDLE` again, so this is set once, at the writer's start.
//!
//! Setting a policy is a libc call; the `thread-priority` crate wraps it safely (this crate
//! forbids `unsafe`).

use thread_priority::{
    NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
    set_thread_priority_and_policy, thread_native_id,
};

/// Puts the calling thread in the background. A failure is logged and otherwise ignored:
/// priority is an optimisation.
pub(crate) fn background() {
    if let Err(e) = set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
    ) {
        tracing::debug!(error = ?e, "cannot put the capture writer in the background");
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The calling thread's scheduling policy (field 41 of /proc/thread-self/stat).
    fn policy() -> u32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
        let after_comm = stat.rsplit(')').next().unwrap_or_default();
        // Fields after the command name start at field 3.
        after_comm
            .split_whitespace()
            .nth(41 - 3)
            .and_then(|f| f.parse().ok())
            .unwrap_or(u32::MAX)
    }

    #[test]
    fn the_writer_thread_goes_to_the_background() {
        std::thread::spawn(|| {
            assert_eq!(policy(), 0, "SCHED_OTHER at first");
            background();
            assert_eq!(policy(), 5, "SCHED_IDLE");
        })
        .join()
        .map_err(|_| "the thread panicked")
        .unwrap();
    }
}
