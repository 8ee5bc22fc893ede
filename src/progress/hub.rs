//! The side channel's registry: progress events per request id, kept for replay and fanned out
//! to subscribers. No I/O; the HTTP edge is `side_channel`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// One published event, serialised once and shared by every subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub seq: u64,
    pub name: &'static str,
    pub data: Arc<str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubLimits {
    /// How long a finished request's events stay available.
    pub retain: Duration,
    /// How many requests are remembered at most (oldest finished go first).
    pub max_requests: usize,
    /// Events kept per request (the oldest are dropped beyond it).
    pub max_events: usize,
    /// How long a subscriber waits for a request that has not arrived.
    pub await_request: Duration,
}

impl Default for HubLimits {
    fn default() -> Self {
        HubLimits {
            retain: Duration::from_secs(300),
            max_requests: 10_000,
            max_events: 512,
            await_request: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// A subscriber came first; the request has not arrived.
    Awaited {
        since: Instant,
    },
    InFlight,
    Finished {
        at: Instant,
    },
}

struct Entry {
    stage: Stage,
    /// How many requests used this id (retries reuse it).
    attempts: u32,
    events: VecDeque<Published>,
    last_seq: u64,
    /// Bumped on every change; subscribers wait on it.
    version: watch::Sender<u64>,
}

impl Entry {
    fn new(stage: Stage) -> Self {
        Entry {
            stage,
            attempts: 0,
            events: VecDeque::new(),
            last_seq: 0,
            version: watch::Sender::new(0),
        }
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }
}

/// The registry, shared by the proxy (publishers) and the side-channel endpoint (subscribers).
pub struct Hub {
    entries: Mutex<HashMap<Arc<str>, Entry>>,
    /// When `prune` last swept; sweeps are at most once a second (they walk every entry).
    last_prune: Mutex<Option<Instant>>,
    limits: HubLimits,
    closed: watch::Sender<bool>,
}

/// A request with this id is still in flight.
#[derive(Debug, thiserror::Error)]
#[error("a request with this Aloud-Request-Id is still in flight")]
pub struct InFlight;

/// What a subscriber should do now.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll {
    /// Send these events (all with seq greater than asked).
    Events(Vec<Published>),
    /// Nothing new yet: wait for a change.
    Wait,
    /// Everything was sent and the request finished: close the stream.
    End,
    /// The request never arrived within the wait: send an error and close.
    NeverArrived,
}

impl Hub {
    pub fn new(limits: HubLimits) -> Arc<Hub> {
        Arc::new(Hub {
            entries: Mutex::default(),
            last_prune: Mutex::new(None),
            limits,
            closed: watch::Sender::new(false),
        })
    }

    pub fn limits(&self) -> HubLimits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Entry>> {
        // A panic while holding this lock cannot leave an entry half-written in a way that
        // matters more than losing progress, so a poisoned lock is simply taken over.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts an attempt for `id`. Returns the last sequence number of earlier attempts (0 for
    /// none) and this attempt's number (1 for the first), or `InFlight` when another request
    /// with this id has not finished.
    pub fn begin(&self, id: &Arc<str>) -> Result<(u64, u32), InFlight> {
        let now = Instant::now();
        let mut entries = self.lock();
        self.prune(&mut entries, now);
        match entries.get_mut(id) {
            Some(entry) if entry.stage == Stage::InFlight => Err(InFlight),
            Some(entry) => {
                entry.stage = Stage::InFlight;
                entry.attempts += 1;
                entry.bump();
                Ok((entry.last_seq, entry.attempts))
            }
            None => {
                let mut entry = Entry::new(Stage::InFlight);
                entry.attempts = 1;
                entries.insert(Arc::clone(id), entry);
                Ok((0, 1))
            }
        }
    }

    /// Records an event of an in-flight request; returns whether a subscriber is listening (the
    /// event then counts as feedback the user saw).
    pub fn publish(&self, id: &str, event: Published) -> bool {
        let mut entries = self.lock();
        let mut listened = false;
        if let Some(entry) = entries.get_mut(id) {
            listened = entry.version.receiver_count() > 0;
            entry.last_seq = entry.last_seq.max(event.seq);
            if entry.events.len() >= self.limits.max_events {
                entry.events.pop_front();
            }
            entry.events.push_back(event);
            entry.bump();
        }
        listened
    }

    /// Marks the attempt finished; its events stay for `retain`.
    pub fn finish(&self, id: &str) {
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(id) {
            entry.stage = Stage::Finished { at: Instant::now() };
            entry.bump();
        }
    }

    /// Whether a reconnect (with `Last-Event-ID: after`) has nothing left to get: the request
    /// finished and `after` is at or past its last event, or the id is unknown (expired).
    pub fn nothing_left(&self, id: &str, after: u64) -> bool {
        let entries = self.lock();
        match entries.get(id) {
            None => true,
            Some(e) => matches!(e.stage, Stage::Finished { .. }) && after >= e.last_seq,
        }
    }

    /// Registers interest in `id` (creating an awaited entry when the request has not arrived)
    /// and returns a receiver that changes whenever the entry does.
    pub fn watch(&self, id: &str) -> watch::Receiver<u64> {
        let now = Instant::now();
        let mut entries = self.lock();
        self.prune(&mut entries, now);
        let entry = entries
            .entry(Arc::from(id))
            .or_insert_with(|| Entry::new(Stage::Awaited { since: now }));
        entry.version.subscribe()
    }

    /// Events after `after`, or what the subscriber should do instead.
    pub fn poll(&self, id: &str, after: u64) -> Poll {
        let entries = self.lock();
        let Some(entry) = entries.get(id) else {
            return Poll::End;
        };
        let fresh: Vec<Published> = entry
            .events
            .iter()
            .filter(|e| e.seq > after)
            .cloned()
            .collect();
        if !fresh.is_empty() {
            return Poll::Events(fresh);
        }
        match entry.stage {
            Stage::Finished { .. } => Poll::End,
            Stage::Awaited { since } if since.elapsed() >= self.limits.await_request => {
                Poll::NeverArrived
            }
            _ => Poll::Wait,
        }
    }

    /// A receiver that turns true when shutdown starts (subscribers then close).
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// Closes every subscriber stream (at shutdown).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Drops finished entries past `retain`, awaited ones nobody watches past the wait, and the
    /// oldest finished ones beyond `max_requests`.
    fn prune(&self, entries: &mut HashMap<Arc<str>, Entry>, now: Instant) {
        let limits = self.limits;
        {
            let mut last = self.last_prune.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
            if !due && entries.len() <= limits.max_requests {
                return;
            }
            *last = Some(now);
        }
        entries.retain(|_, e| match e.stage {
            Stage::Finished { at } => now.duration_since(at) < limits.retain,
            Stage::Awaited { since } => {
                now.duration_since(since) < limits.await_request || e.version.receiver_count() > 0
            }
            Stage::InFlight => true,
        });
        if entries.len() > limits.max_requests {
            let mut finished: Vec<(Instant, Arc<str>)> = entries
                .iter()
                .filter_map(|(k, e)| match e.stage {
                    Stage::Finished { at } => Some((at, Arc::clone(k))),
                    _ => None,
                })
                .collect();
            finished.sort();
            let excess = entries.len() - limits.max_requests;
            for (_, k) in finished.into_iter().take(excess) {
                entries.remove(&k);
            }
        }
    }

    /// Whether a request with `id` is in flight or finished and still remembered.
    pub fn knows(&self, id: &str) -> bool {
        self.lock()
            .get(id)
            .is_some_and(|e| !matches!(e.stage, Stage::Awaited { .. }))
    }

    /// How many ids the hub remembers (for tests and stats).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64) -> Published {
        Published {
            seq,
            name: "aloud.progress",
            data: Arc::from("{}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn replays_after_a_seq_and_ends_after_finish() {
        let hub = Hub::new(HubLimits::default());
        let id: Arc<str> = Arc::from("abcdefghijklmnop");
        assert_eq!(hub.begin(&id).unwrap(), (0, 1));
        hub.publish(&id, ev(1));
        hub.publish(&id, ev(2));
        assert_eq!(hub.poll(&id, 1), Poll::Events(vec![ev(2)]));
        assert_eq!(hub.poll(&id, 2), Poll::Wait);
        assert!(hub.begin(&id).is_err(), "in flight: 409");
        hub.finish(&id);
        assert_eq!(hub.poll(&id, 2), Poll::End);
        assert!(hub.nothing_left(&id, 2));
        assert!(!hub.nothing_left(&id, 1));
        // A retry continues the sequence.
        assert_eq!(hub.begin(&id).unwrap(), (2, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn an_awaited_request_that_never_comes_ends_with_an_error() {
        let hub = Hub::new(HubLimits::default());
        let rx = hub.watch("abcdefghijklmnop");
        assert_eq!(hub.poll("abcdefghijklmnop", 0), Poll::Wait);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(hub.poll("abcdefghijklmnop", 0), Poll::NeverArrived);
        drop(rx);
    }

    #[tokio::test(start_paused = true)]
    async fn finished_requests_expire_and_the_count_is_bounded() {
        let limits = HubLimits {
            max_requests: 3,
            ..HubLimits::default()
        };
        let hub = Hub::new(limits);
        for i in 0..5 {
            let id: Arc<str> = Arc::from(format!("request-id-{i:06}"));
            hub.begin(&id).unwrap();
            hub.publish(&id, ev(1));
            hub.finish(&id);
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        hub.watch("request-id-999999");
        assert!(hub.len() <= 4);
        tokio::time::advance(Duration::from_secs(301)).await;
        drop(hub.watch("another-id-00000001"));
        assert!(hub.len() <= 2);
    }
}
