//! Named, tracked background tasks: everything spawned goes through here and is drained at shutdown.

use std::future::Future;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// The set of tasks a server owns. Cloning shares the set.
#[derive(Clone, Debug, Default)]
pub struct Tasks {
    tracker: TaskTracker,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `fut` under a tracing span carrying `name`, tracked so `drain` waits for it.
    pub fn spawn<F>(&self, name: &'static str, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker
            .spawn(fut.instrument(tracing::debug_span!("task", name)))
    }

    /// Runs blocking `f` (a database read) on tokio's blocking pool, tracked so `drain` waits
    /// for it.
    pub fn spawn_blocking<F, T>(&self, f: F) -> tokio::task::JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.tracker.spawn_blocking(f)
    }

    /// Waits until every task spawned so far (and any they spawn) has finished.
    pub async fn drain(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// How many tracked tasks are still running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }
}
