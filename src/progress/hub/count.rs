//! The side channel's size for metrics: open subscriber streams (counted by a guard each stream
//! holds) and the ids the hub holds, read at scrape time only.

use super::{Hub, LinkState};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The hub's size now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubSnapshot {
    pub subscribers: usize,
    /// Ids held: in flight, finished and retained for replay, or awaited by a subscriber.
    pub requests: usize,
    /// With a cluster link: whether it reaches Postgres, and the messages it moved or dropped.
    pub cluster: Option<LinkState>,
}

/// Counts one open subscriber stream until dropped.
pub struct Subscribed(Arc<Hub>);

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Hub {
    /// A subscriber stream opened; it counts until the guard is dropped.
    pub fn subscribed(self: &Arc<Self>) -> Subscribed {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        Subscribed(Arc::clone(self))
    }

    /// The hub's size, for a scrape (takes the hub's lock once).
    pub fn snapshot(&self) -> HubSnapshot {
        HubSnapshot {
            subscribers: self.subscribers.load(Ordering::Relaxed),
            requests: self.len(),
            cluster: self.link_state(),
        }
    }
}
