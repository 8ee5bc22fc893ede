//! Exchanges whose client left on a route with `on_disconnect = "finish"`: each is read to its
//! end as a named, tracked task. Shutdown waits for them within the grace period, like
//! connections, and cuts them with the connections (`hard_stop`).

use super::Tasks;
use crate::proxy::finish::{Detach, Detached};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct Finishers {
    tasks: Tasks,
    cut: CancellationToken,
    /// Only these tasks, so the drain can wait for them apart from the others.
    tracker: TaskTracker,
}

impl Finishers {
    pub fn new(tasks: Tasks, cut: CancellationToken) -> Self {
        Finishers {
            tasks,
            cut,
            tracker: TaskTracker::new(),
        }
    }

    /// Resolves when every finishing exchange has ended (or was cut).
    pub async fn finished(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }
}

impl Detach for Finishers {
    fn detach(&self, fut: Detached) {
        let cut = self.cut.clone();
        self.tasks.spawn(
            "finishing",
            self.tracker.track_future(async move {
                tokio::select! {
                    () = fut => {}
                    // Dropping the exchange records it as cut by the shutdown.
                    () = cut.cancelled() => {}
                }
            }),
        );
    }
}
