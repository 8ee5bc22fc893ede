//! The side channel's registry: progress events per request id, kept for replay and fanned out
//! to subscribers. No I/O; the HTTP edge is `side_channel`.

use super::frames;
use super::live::LiveCell;
use super::state::DoneEvent;
use crate::config::Owner;
use std::collections::{VecDeque, hash_map};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The hub's map of ids (foldhash, seeded per process: see Cargo.toml).
type HashMap<K, V> = foldhash::HashMap<K, V>;

/// One published event, serialised once and shared by every subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub seq: u64,
    pub name: &'static str,
    pub data: Arc<str>,
    /// A heartbeat (nothing changed but time): the hub keeps only the latest of a run of them.
    pub heartbeat: bool,
}

/// Events kept for one id however the limits are set (a kept `aloud.done` may add one).
const MAX_EVENTS_HARD: usize = 1024;

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
    /// In flight on another replica, whose events arrive over the cluster link (`remote`).
    Remote {
        heard: Instant,
    },
    Finished {
        at: Instant,
    },
}

struct Entry {
    /// The map's key, shared (the finished and awaited queues hold clones of it).
    id: Arc<str>,
    stage: Stage,
    /// Who made the request (`None` when client tokens are off, or while awaited).
    owner: Option<Owner>,
    /// How many requests used this id (retries reuse it).
    attempts: u32,
    events: VecDeque<Published>,
    /// The final event of an attempt nobody watched, serialised only if someone asks.
    done: Option<Box<DoneEvent>>,
    last_seq: u64,
    /// Bumped on every change; subscribers wait on it. Shared with the request (a
    /// `Listeners` handle), which reads from it, without a lock, whether anyone listens.
    version: Arc<Signal>,
    /// Cluster state (replicas that want this request's events, or the replica that sends
    /// them); `None` for every entry of a single process.
    link: Option<Box<remote::EntryLink>>,
    /// What the dashboard shows while the attempt runs (only when the admin listener is on).
    live: Option<Arc<LiveCell>>,
}

/// Change notification for one entry. The channel (a few hundred bytes) is made by the first
/// subscriber: an entry nobody watches carries only this pointer-sized cell.
#[derive(Debug, Default)]
struct Signal {
    tx: OnceLock<watch::Sender<u64>>,
    /// Another replica has a subscriber for this request (cluster only).
    remote: AtomicBool,
}

impl Signal {
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.get_or_init(|| watch::Sender::new(0)).subscribe()
    }

    /// Someone listens: here, or on another replica.
    fn any(&self) -> bool {
        self.local() || self.remote.load(Ordering::Relaxed)
    }

    /// A subscriber of this process listens.
    fn local(&self) -> bool {
        self.tx.get().is_some_and(|tx| tx.receiver_count() > 0)
    }

    fn bump(&self) {
        if let Some(tx) = self.tx.get()
            && tx.receiver_count() > 0
        {
            tx.send_modify(|v| *v += 1);
        }
    }
}

/// A request's handle on its side-channel entry: whether anyone subscribes to it now.
#[derive(Clone, Debug)]
pub struct Listeners(Arc<Signal>);

impl Listeners {
    /// Someone is subscribed, here or on another replica (no lock: atomics).
    pub fn any(&self) -> bool {
        self.0.any()
    }

    /// A handle nobody will ever subscribe to (tests, tools).
    pub fn none() -> Self {
        Listeners(Arc::default())
    }
}

/// What `begin` hands the request.
#[derive(Debug)]
pub struct Begun {
    /// The last sequence number of earlier attempts (0 for none).
    pub last_seq: u64,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    pub listeners: Listeners,
}

impl Entry {
    /// Serialises a kept `aloud.done` into the event list (when someone asks, or before a
    /// retry continues the sequence).
    fn materialise_done(&mut self) {
        if let Some(done) = self.done.take() {
            if self.events.len() >= MAX_EVENTS_HARD {
                self.events.pop_front();
            }
            self.events
                .push_back(frames::publish(done.seq, frames::DONE, &*done));
        }
    }

    fn new(id: Arc<str>, stage: Stage) -> Self {
        Entry {
            id,
            stage,
            owner: None,
            attempts: 0,
            events: VecDeque::new(),
            done: None,
            last_seq: 0,
            version: Arc::default(),
            link: None,
            live: None,
        }
    }

    /// Whether a subscriber of `owner` must not see this entry: a request arrived, and it was
    /// made with another token.
    fn hidden_from(&self, owner: Option<Owner>) -> bool {
        !matches!(self.stage, Stage::Awaited { .. }) && self.owner != owner
    }

    /// Wakes subscribers; with none (the common case) there is no one to wake.
    fn bump(&self) {
        self.version.bump();
    }
}

/// The ids, plus queues in time order for pruning without walking the map.
#[derive(Default)]
struct Entries {
    map: HashMap<Arc<str>, Entry>,
    finished: VecDeque<(Instant, Arc<str>)>,
    awaited: VecDeque<(Instant, Arc<str>)>,
}

/// The entry for `id` with the map's own key (shared, so the finished queue holds no copy of the
/// id), in one lookup.
fn find_mut<'a>(
    map: &'a mut HashMap<Arc<str>, Entry>,
    id: &str,
) -> Option<(Arc<str>, &'a mut Entry)> {
    let entry = map.get_mut(id)?;
    Some((Arc::clone(&entry.id), entry))
}

/// The registry, shared by the proxy (publishers) and the side-channel endpoint (subscribers).
pub struct Hub {
    entries: Mutex<Entries>,
    limits: HubLimits,
    closed: watch::Sender<bool>,
    /// Open subscriber streams (`count::Subscribed` guards).
    subscribers: std::sync::atomic::AtomicUsize,
    /// The way to other replicas, once the cluster link attached (`remote`).
    link: OnceLock<remote::Link>,
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
    /// The id belongs to another owner: to this subscriber it has not arrived (the subscriber
    /// times its own wait, so nothing it sees differs from an unknown id).
    Hidden,
}

impl Hub {
    pub fn new(limits: HubLimits) -> Arc<Hub> {
        Arc::new(Hub {
            entries: Mutex::default(),
            limits,
            closed: watch::Sender::new(false),
            subscribers: std::sync::atomic::AtomicUsize::new(0),
            link: OnceLock::new(),
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

    /// Starts an attempt for `id` made by `owner`. Returns the last sequence number of earlier
    /// attempts (0 for none) and this attempt's number (1 for the first), or `InFlight` when
    /// another request with this id has not finished.
    ///
    /// A finished request of another owner is forgotten here (its events are not replayed to
    /// the new owner); the attempt count goes on, so stored records keep distinct attempts.
    pub fn begin(&self, id: &Arc<str>, owner: Option<Owner>) -> Result<Begun, InFlight> {
        self.begin_live(id, owner, None)
    }

    /// `begin`, with the cell the dashboard reads while this attempt runs.
    pub fn begin_live(
        &self,
        id: &Arc<str>,
        owner: Option<Owner>,
        live: Option<Arc<LiveCell>>,
    ) -> Result<Begun, InFlight> {
        let now = Instant::now();
        let mut entries = self.lock();
        self.prune(&mut entries, now);
        match entries.map.entry(Arc::clone(id)) {
            hash_map::Entry::Occupied(o)
                if matches!(o.get().stage, Stage::InFlight | Stage::Remote { .. }) =>
            {
                Err(InFlight)
            }
            hash_map::Entry::Occupied(mut o) => {
                let entry = o.get_mut();
                let awaited = matches!(entry.stage, Stage::Awaited { .. });
                if !awaited && entry.owner != owner {
                    // Nothing of the other owner's request may show through, not even its
                    // sequence numbers.
                    entry.events.clear();
                    entry.done = None;
                    entry.last_seq = 0;
                }
                entry.materialise_done();
                remote::begun_here(entry);
                entry.owner = owner;
                entry.stage = Stage::InFlight;
                entry.live = live;
                entry.attempts += 1;
                entry.bump();
                Ok(Begun {
                    last_seq: entry.last_seq,
                    attempt: entry.attempts,
                    listeners: Listeners(Arc::clone(&entry.version)),
                })
            }
            hash_map::Entry::Vacant(v) => {
                let mut entry = Entry::new(Arc::clone(v.key()), Stage::InFlight);
                entry.owner = owner;
                entry.live = live;
                entry.attempts = 1;
                let listeners = Listeners(Arc::clone(&entry.version));
                v.insert(entry);
                Ok(Begun {
                    last_seq: 0,
                    attempt: 1,
                    listeners,
                })
            }
        }
    }

    /// Records an event of an in-flight request; returns whether a subscriber is listening (the
    /// event then counts as feedback the user saw).
    pub fn publish(&self, id: &str, event: Published) -> bool {
        let mut entries = self.lock();
        let mut listened = false;
        if let Some(entry) = entries.map.get_mut(id) {
            listened = entry.version.any();
            entry.last_seq = entry.last_seq.max(event.seq);
            // Replay needs the changes, not every tick: a heartbeat replaces the one before it.
            if event.heartbeat && entry.events.back().is_some_and(|e| e.heartbeat) {
                entry.events.pop_back();
            }
            if entry.events.len() >= self.limits.max_events {
                entry.events.pop_front();
            }
            entry.events.push_back(event.clone());
            entry.bump();
            if let Some(link) = self.up_link() {
                link.forward(id, entry, event);
            }
        }
        listened
    }

    /// Marks the attempt finished; its events stay for `retain`. `done` is the final event of
    /// an attempt nobody watched, kept unserialised until a subscriber asks for it.
    pub fn finish(&self, id: &str, done: Option<DoneEvent>) {
        let mut entries = self.lock();
        let at = Instant::now();
        let Entries { map, finished, .. } = &mut *entries;
        if let Some((key, entry)) = find_mut(map, id) {
            if let Some(done) = done {
                entry.last_seq = entry.last_seq.max(done.seq);
                entry.done = Some(Box::new(done));
            }
            entry.stage = Stage::Finished { at };
            entry.live = None;
            entry.bump();
            if let Some(link) = self.up_link() {
                link.finished(id, entry);
            }
            remote::forget_watchers(entry);
            finished.push_back((at, key));
        }
    }

    /// Whether a reconnect (with `Last-Event-ID: after`) by `owner` has nothing left to get:
    /// the request finished and `after` is at or past its last event, or the id is unknown
    /// (expired) to this owner.
    pub fn nothing_left(&self, id: &str, after: u64, owner: Option<Owner>) -> bool {
        let entries = self.lock();
        match entries.map.get(id) {
            None => true,
            Some(e) if e.hidden_from(owner) => true,
            Some(e) => matches!(e.stage, Stage::Finished { .. }) && after >= e.last_seq,
        }
    }

    /// Registers interest in `id` (creating an awaited entry when the request has not arrived)
    /// and returns a receiver that changes whenever the entry does.
    pub fn watch(&self, id: &str) -> watch::Receiver<u64> {
        self.watch_from(id, 0)
    }

    /// `watch` for a subscriber that has the events up to `after`. In a cluster, the first
    /// subscriber here to a request this replica does not serve asks the others for it.
    pub fn watch_from(&self, id: &str, after: u64) -> watch::Receiver<u64> {
        let now = Instant::now();
        let mut entries = self.lock();
        self.prune(&mut entries, now);
        if let Some(entry) = entries.map.get_mut(id) {
            let first = !entry.version.local();
            let rx = entry.version.subscribe();
            if let Some(link) = self.up_link() {
                link.ask(id, entry, after, first);
            }
            return rx;
        }
        let key: Arc<str> = Arc::from(id);
        let mut entry = Entry::new(Arc::clone(&key), Stage::Awaited { since: now });
        let rx = entry.version.subscribe();
        if let Some(link) = self.up_link() {
            link.ask(id, &mut entry, after, true);
        }
        entries.map.insert(Arc::clone(&key), entry);
        entries.awaited.push_back((now, key));
        rx
    }

    /// Events after `after` for a subscriber of `owner`, or what it should do instead. A
    /// request of another owner is answered as one that has not arrived: `Hidden`.
    pub fn poll(&self, id: &str, after: u64, owner: Option<Owner>) -> Poll {
        let mut entries = self.lock();
        let Some(entry) = entries.map.get_mut(id) else {
            return Poll::End;
        };
        if entry.hidden_from(owner) {
            return Poll::Hidden;
        }
        entry.materialise_done();
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
            if let hash_map::Entry::Occupied(o) = entries.map.entry(id)
                && o.get().stage == (Stage::Finished { at })
            {
                o.remove();
            }
        }
        while let Some((since, id)) = entries.awaited.front() {
            if now.duration_since(*since) < limits.await_request {
                break;
            }
            let (since, id) = (*since, Arc::clone(id));
            entries.awaited.pop_front();
            match entries.map.get_mut(&id) {
                // Another replica's interest lasts one wait too.
                Some(e) if e.stage == (Stage::Awaited { since }) && !e.version.local() => {
                    entries.map.remove(&id);
                }
                // Still watched: look again after another wait.
                Some(e) if e.stage == (Stage::Awaited { since }) => {
                    entries.awaited.push_back((now, id))
                }
                // A request on another replica that went silent for a wait (that replica
                // stopped, or the link did) ends here.
                Some(e) if matches!(e.stage, Stage::Remote { heard } if now.duration_since(heard) >= limits.await_request) =>
                {
                    e.stage = Stage::Finished { at: now };
                    e.bump();
                    entries.finished.push_back((now, id));
                }
                Some(e) if matches!(e.stage, Stage::Remote { .. }) => {
                    entries.awaited.push_back((now, id))
                }
                _ => {}
            }
        }
    }

    /// Whether a request with `id` made by `owner` is in flight or finished and still
    /// remembered.
    pub fn knows(&self, id: &str, owner: Option<Owner>) -> bool {
        self.lock()
            .map
            .get(id)
            .is_some_and(|e| !matches!(e.stage, Stage::Awaited { .. }) && e.owner == owner)
    }

    /// How many ids the hub remembers (for tests and stats).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

mod count;
mod live;
mod remote;
pub use count::{HubSnapshot, Subscribed};
pub use live::LiveSnapshot;
pub use remote::{LinkState, Outgoing, Replica};

#[cfg(test)]
mod tests;
