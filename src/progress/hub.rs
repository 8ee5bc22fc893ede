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
    /// A heartbeat (nothing changed but time): the hub keeps only the latest of a run of them.
    pub heartbeat: bool,
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
            max_events: 64,
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

    /// Wakes subscribers; with none (the common case) there is no one to wake.
    fn bump(&self) {
        if self.version.receiver_count() > 0 {
            self.version.send_modify(|v| *v += 1);
        }
    }
}

/// The ids, plus queues in time order for pruning without walking the map.
#[derive(Default)]
struct Entries {
    map: HashMap<Arc<str>, Entry>,
    finished: VecDeque<(Instant, Arc<str>)>,
    awaited: VecDeque<(Instant, Arc<str>)>,
}

/// The registry, shared by the proxy (publishers) and the side-channel endpoint (subscribers).
pub struct Hub {
    entries: Mutex<Entries>,
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
            limits,
            closed: watch::Sender::new(false),
        })
    }

    pub fn limits(&self) -> HubLimits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
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
        match entries.map.get_mut(id) {
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
                entries.map.insert(Arc::clone(id), entry);
                Ok((0, 1))
            }
        }
    }

    /// Records an event of an in-flight request; returns whether a subscriber is listening (the
    /// event then counts as feedback the user saw).
    pub fn publish(&self, id: &str, event: Published) -> bool {
        let mut entries = self.lock();
        let mut listened = false;
        if let Some(entry) = entries.map.get_mut(id) {
            listened = entry.version.receiver_count() > 0;
            entry.last_seq = entry.last_seq.max(event.seq);
            // Replay needs the changes, not every tick: a heartbeat replaces the one before it.
            if event.heartbeat && entry.events.back().is_some_and(|e| e.heartbeat) {
                entry.events.pop_back();
            }
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
        let at = Instant::now();
        let key = entries.map.get_key_value(id).map(|(k, _)| Arc::clone(k));
        if let (Some(key), Some(entry)) = (key, entries.map.get_mut(id)) {
            entry.stage = Stage::Finished { at };
            entry.bump();
            entries.finished.push_back((at, key));
        }
    }

    /// Whether a reconnect (with `Last-Event-ID: after`) has nothing left to get: the request
    /// finished and `after` is at or past its last event, or the id is unknown (expired).
    pub fn nothing_left(&self, id: &str, after: u64) -> bool {
        let entries = self.lock();
        match entries.map.get(id) {
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
        if let Some(entry) = entries.map.get(id) {
            return entry.version.subscribe();
        }
        let key: Arc<str> = Arc::from(id);
        let entry = Entry::new(Stage::Awaited { since: now });
        let rx = entry.version.subscribe();
        entries.map.insert(Arc::clone(&key), entry);
        entries.awaited.push_back((now, key));
        rx
    }

    /// Events after `after`, or what the subscriber should do instead.
    pub fn poll(&self, id: &str, after: u64) -> Poll {
        let entries = self.lock();
        let Some(entry) = entries.map.get(id) else {
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

    /// Drops finished entries past `retain` or beyond `max_requests` (oldest first), and awaited
    /// ones nobody watches past the wait. Amortised O(1): it pops queues kept in time order.
    fn prune(&self, entries: &mut Entries, now: Instant) {
        let limits = self.limits;
        while let Some((at, id)) = entries.finished.front() {
            let over = entries.map.len() > limits.max_requests;
            if !over && now.duration_since(*at) < limits.retain {
                break;
            }
            let (at, id) = (*at, Arc::clone(id));
            entries.finished.pop_front();
            // A retry may have restarted the id since: only the same finish counts.
            if entries
                .map
                .get(&id)
                .is_some_and(|e| e.stage == Stage::Finished { at })
            {
                entries.map.remove(&id);
            }
        }
        while let Some((since, id)) = entries.awaited.front() {
            if now.duration_since(*since) < limits.await_request {
                break;
            }
            let (since, id) = (*since, Arc::clone(id));
            entries.awaited.pop_front();
            match entries.map.get(&id) {
                Some(e)
                    if e.stage == (Stage::Awaited { since }) && e.version.receiver_count() == 0 =>
                {
                    entries.map.remove(&id);
                }
                // Still watched: look again after another wait.
                Some(e) if e.stage == (Stage::Awaited { since }) => {
                    entries.awaited.push_back((now, id))
                }
                _ => {}
            }
        }
    }

    /// Whether a request with `id` is in flight or finished and still remembered.
    pub fn knows(&self, id: &str) -> bool {
        self.lock()
            .map
            .get(id)
            .is_some_and(|e| !matches!(e.stage, Stage::Awaited { .. }))
    }

    /// How many ids the hub remembers (for tests and stats).
    pub fn len(&self) -> usize {
        self.lock().map.len()
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
            heartbeat: false,
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
    async fn a_run_of_heartbeats_keeps_only_the_latest() {
        let hub = Hub::new(HubLimits::default());
        let id: Arc<str> = Arc::from("abcdefghijklmnop");
        hub.begin(&id).unwrap();
        hub.publish(&id, ev(1));
        for seq in 2..=30 {
            hub.publish(
                &id,
                Published {
                    heartbeat: true,
                    ..ev(seq)
                },
            );
        }
        hub.publish(&id, ev(31));
        let Poll::Events(kept) = hub.poll(&id, 0) else {
            panic!("no events")
        };
        assert_eq!(kept.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 30, 31]);
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
