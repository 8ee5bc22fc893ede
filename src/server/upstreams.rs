//! Upstream connection tasks (a plain-http route's pooled connections, `proxy::upstream`):
//! named and tracked like every task, and ended once the proxy has drained, when no exchange
//! can use them any more. Idle pooled connections would otherwise keep the drain waiting.

use super::Tasks;
use crate::proxy::upstream::Spawner;
use std::future::Future;
use std::pin::Pin;
use tokio_util::sync::CancellationToken;

pub struct UpstreamTasks {
    tasks: Tasks,
    /// Cancelled after the drain: every connection task ends with it.
    done: CancellationToken,
}

impl UpstreamTasks {
    pub fn new(tasks: Tasks, done: CancellationToken) -> Self {
        UpstreamTasks { tasks, done }
    }
}

impl Spawner for UpstreamTasks {
    fn spawn(&self, name: &'static str, task: Pin<Box<dyn Future<Output = ()> + Send>>) {
        let done = self.done.clone();
        self.tasks.spawn(name, async move {
            tokio::select! {
                () = task => {}
                () = done.cancelled() => {}
            }
        });
    }
}
