//! The hub's side of the side channel across replicas: who elsewhere wants a request's events,
//! which replica sends a request's events here, and what to tell the others. No I/O: messages
//! go to a bounded queue that the cluster link (src/cluster/) drains; nothing here waits.
//!
//! **Invariant:** with no link attached, or with no replica interested in an entry, nothing in
//! this file runs on the request path beyond one `OnceLock` read and one `Option` check.

use super::{Entries, Entry, Hub, Published, Stage};
use crate::config::Owner;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A replica's name on the link (random per process start).
pub type Replica = Arc<str>;

/// What the hub asks the cluster link to send.
#[derive(Debug)]
pub enum Outgoing {
    /// A subscriber here waits for `id` and has its events up to `after` (to every replica).
    Interest { id: Arc<str>, after: u64 },
    /// An event of a request served here, for the replicas with a subscriber for it.
    Event {
        to: Vec<Replica>,
        id: Arc<str>,
        owner: Option<Owner>,
        event: Published,
    },
    /// The request finished here; `last_seq` is its last event's number.
    Finished {
        to: Vec<Replica>,
        id: Arc<str>,
        owner: Option<Owner>,
        last_seq: u64,
    },
    /// Nobody here listens to `id` any more: its replica may stop sending it.
    Forget { to: Replica, id: Arc<str> },
}

/// The hub's end of the cluster link.
pub(super) struct Link {
    out: mpsc::Sender<Outgoing>,
    /// Postgres is reachable: while it is not, nothing is queued (local subscribers only).
    up: AtomicBool,
    /// Messages dropped because the link's queue was full.
    dropped: AtomicU64,
    /// Messages sent to Postgres, and messages from other replicas handed to the hub.
    sent: AtomicU64,
    received: AtomicU64,
}

/// The cluster link's state, for a scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkState {
    /// The link reaches Postgres.
    pub up: bool,
    /// Messages for other replicas dropped (the link's queue was full).
    pub dropped: u64,
    /// Messages sent (NOTIFY payloads Postgres accepted).
    pub sent: u64,
    /// Messages from other replicas that arrived (this replica's own are not counted).
    pub received: u64,
}

/// An entry's cluster state (boxed: a single process never has one).
#[derive(Debug, Default)]
pub(super) struct EntryLink {
    /// Replicas with a subscriber for this request, which is (or will be) served here.
    watchers: Vec<Replica>,
    /// The replica that serves this request and sends its events here.
    source: Option<Replica>,
    /// A `Forget` went to `source` since a subscriber here last asked.
    forgot: bool,
}

impl Link {
    fn send(&self, message: Outgoing) {
        if self.out.try_send(message).is_err() {
            // The link is behind (or gone): remote subscribers miss this event, nobody waits.
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    "cluster: the link's queue is full; events for other replicas are dropped"
                );
            }
        }
    }

    /// A subscriber that has the events up to `after` came to `entry` (the first here when
    /// `first`): ask the other replicas when the request is not served here (awaited, or
    /// followed from another replica), or when this replica follows it but lacks events the
    /// subscriber needs (a reconnect for events older than the ones kept here).
    pub(super) fn ask(&self, id: &str, entry: &mut Entry, after: u64, first: bool) {
        let waiting = matches!(entry.stage, Stage::Awaited { .. } | Stage::Remote { .. });
        if !(waiting && first || lacks(entry, after)) {
            return;
        }
        if let Some(l) = entry.link.as_mut() {
            l.forgot = false;
        }
        self.send(Outgoing::Interest {
            id: Arc::from(id),
            after,
        });
    }

    /// `event` was published for `entry`: forward it to the replicas that asked.
    pub(super) fn forward(&self, id: &str, entry: &Entry, event: Published) {
        if let Some(l) = entry.link.as_ref().filter(|l| !l.watchers.is_empty()) {
            self.send(Outgoing::Event {
                to: l.watchers.clone(),
                id: Arc::from(id),
                owner: entry.owner,
                event,
            });
        }
    }

    /// `entry` finished: tell the replicas that asked.
    pub(super) fn finished(&self, id: &str, entry: &Entry) {
        if let Some(l) = entry.link.as_ref().filter(|l| !l.watchers.is_empty()) {
            self.send(Outgoing::Finished {
                to: l.watchers.clone(),
                id: Arc::from(id),
                owner: entry.owner,
                last_seq: entry.last_seq,
            });
        }
    }

    /// Sends what `entry` holds after `after` to `to`, and its end when it finished.
    fn catch_up(&self, to: &Replica, id: &str, entry: &Entry, after: u64) {
        for event in entry.events.iter().filter(|e| e.seq > after) {
            self.send(Outgoing::Event {
                to: vec![Arc::clone(to)],
                id: Arc::from(id),
                owner: entry.owner,
                event: event.clone(),
            });
        }
        if matches!(entry.stage, Stage::Finished { .. }) {
            self.send(Outgoing::Finished {
                to: vec![Arc::clone(to)],
                id: Arc::from(id),
                owner: entry.owner,
                last_seq: entry.last_seq,
            });
        }
    }
}

/// Whether `entry` follows a request of another replica and lacks events after `after` that
/// it had (the oldest kept is later than `after + 1`, or none is kept).
fn lacks(entry: &Entry, after: u64) -> bool {
    let followed = entry.link.as_ref().is_some_and(|l| l.source.is_some());
    let first_kept = entry.events.front().map_or(entry.last_seq + 1, |e| e.seq);
    followed && entry.last_seq > after && first_kept > after + 1
}

/// A request begins here on an entry that existed (awaited, or finished): it is served here now.
pub(super) fn begun_here(entry: &mut Entry) {
    if let Some(l) = entry.link.as_mut() {
        l.source = None;
    }
}

/// The request finished: nobody elsewhere needs more of it.
pub(super) fn forget_watchers(entry: &mut Entry) {
    if let Some(l) = entry.link.as_mut() {
        l.watchers.clear();
    }
    entry.version.remote.store(false, Ordering::Relaxed);
}

/// Adds `event` in sequence order (a repeat is ignored), as `publish` keeps them.
fn insert(entry: &mut Entry, event: Published, max_events: usize) {
    if entry.events.iter().any(|e| e.seq == event.seq) {
        return;
    }
    entry.last_seq = entry.last_seq.max(event.seq);
    let at = entry.events.partition_point(|e| e.seq < event.seq);
    if at == entry.events.len()
        && event.heartbeat
        && entry.events.back().is_some_and(|e| e.heartbeat)
    {
        entry.events.pop_back();
    }
    let at = at.min(entry.events.len());
    entry.events.insert(at, event);
    while entry.events.len() > max_events {
        entry.events.pop_front();
    }
}

impl Hub {
    /// Attaches the cluster link: returns the queue it drains (once; later calls get `None`).
    pub fn attach_link(&self, capacity: usize) -> Option<mpsc::Receiver<Outgoing>> {
        let (tx, rx) = mpsc::channel(capacity);
        self.link
            .set(Link {
                out: tx,
                up: AtomicBool::new(false),
                dropped: AtomicU64::new(0),
                sent: AtomicU64::new(0),
                received: AtomicU64::new(0),
            })
            .ok()
            .map(|()| rx)
    }

    /// The link reached Postgres (`true`) or lost it. On reaching it, every request that
    /// subscribers here wait for and that is not served here is asked for again.
    pub fn set_link_up(&self, up: bool) {
        let Some(link) = self.link.get() else { return };
        link.up.store(up, Ordering::Release);
        if !up {
            return;
        }
        let entries = self.lock();
        for (id, e) in &entries.map {
            if e.version.local() && matches!(e.stage, Stage::Awaited { .. } | Stage::Remote { .. })
            {
                link.send(Outgoing::Interest {
                    id: Arc::clone(id),
                    after: e.last_seq,
                });
            }
        }
    }

    /// With a link attached: whether it is up, and what it dropped, sent and received.
    pub fn link_state(&self) -> Option<LinkState> {
        self.link.get().map(|l| LinkState {
            up: l.up.load(Ordering::Acquire),
            dropped: l.dropped.load(Ordering::Relaxed),
            sent: l.sent.load(Ordering::Relaxed),
            received: l.received.load(Ordering::Relaxed),
        })
    }

    /// The link sent `n` messages (counted for metrics only).
    pub fn link_sent(&self, n: usize) {
        if let Some(l) = self.link.get() {
            l.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// A message from another replica arrived (counted for metrics only).
    pub fn link_received(&self) {
        if let Some(l) = self.link.get() {
            l.received.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The link, when it is attached and Postgres is reachable.
    pub(super) fn up_link(&self) -> Option<&Link> {
        self.link.get().filter(|l| l.up.load(Ordering::Acquire))
    }

    /// Whether a cluster link is attached (up or not): this process is one of several replicas.
    pub fn linked(&self) -> bool {
        self.link.get().is_some()
    }

    /// Whether the side channel spans replicas now (the link is attached and up).
    pub fn clustered(&self) -> bool {
        self.up_link().is_some()
    }

    /// Whether a subscriber that has the events up to `after` must ask other replicas for
    /// `id` first: this hub does not hold it (an id only other replicas asked for counts as
    /// not held), or follows it without the events needed.
    pub fn must_look_up(&self, id: &str, after: u64) -> bool {
        self.lock().map.get(id).is_none_or(|e| {
            matches!(e.stage, Stage::Awaited { .. }) && !e.version.local() || lacks(e, after)
        })
    }

    /// Whether `id` is still only awaited here (no replica has answered for it).
    pub fn awaited(&self, id: &str) -> bool {
        self.lock()
            .map
            .get(id)
            .is_none_or(|e| matches!(e.stage, Stage::Awaited { .. }))
    }

    /// Whether `id` is known here as a request of another owner than `owner`.
    pub fn foreign(&self, id: &str, owner: Option<Owner>) -> bool {
        self.lock()
            .map
            .get(id)
            .is_some_and(|e| !matches!(e.stage, Stage::Awaited { .. }) && e.owner != owner)
    }

    /// Replica `from` has a subscriber for `id` that holds its events up to `after`. If the
    /// request is served here (or arrives within the wait), its events go to `from`.
    pub fn remote_interest(&self, from: &Replica, id: &str, after: u64) {
        let Some(link) = self.up_link() else { return };
        let now = Instant::now();
        let mut entries = self.lock();
        self.prune(&mut entries, now);
        let Entries { map, awaited, .. } = &mut *entries;
        let entry = match map.get_mut(id) {
            Some(e) => e,
            None => {
                let key: Arc<str> = Arc::from(id);
                awaited.push_back((now, Arc::clone(&key)));
                map.entry(Arc::clone(&key))
                    .or_insert_with(|| Entry::new(key, Stage::Awaited { since: now }))
            }
        };
        let followed = entry.link.as_ref().is_some_and(|l| l.source.is_some());
        if matches!(entry.stage, Stage::Remote { .. }) || followed {
            // Another replica serves it and answers for itself.
            return;
        }
        let l = entry.link.get_or_insert_with(Box::default);
        if matches!(entry.stage, Stage::Finished { .. }) {
            entry.materialise_done();
        } else if !l.watchers.contains(from) {
            l.watchers.push(Arc::clone(from));
            entry.version.remote.store(true, Ordering::Relaxed);
        }
        link.catch_up(from, id, entry, after);
    }

    /// An event of request `id` served by replica `from`, made by `owner`.
    pub fn remote_event(&self, from: &Replica, id: &str, owner: Option<Owner>, event: Published) {
        let Some(link) = self.up_link() else { return };
        let now = Instant::now();
        let max_events = self.limits.max_events;
        let mut entries = self.lock();
        let Entries { map, awaited, .. } = &mut *entries;
        let Some(entry) = map.get_mut(id) else {
            // Nobody here asked (or the wait ran out): stop it coming.
            link.send(Outgoing::Forget {
                to: Arc::clone(from),
                id: Arc::from(id),
            });
            return;
        };
        let followed = entry.link.as_ref().is_some_and(|l| l.source.is_some());
        match entry.stage {
            Stage::InFlight => return,
            Stage::Finished { .. } if !followed => return,
            Stage::Remote { .. } => entry.stage = Stage::Remote { heard: now },
            Stage::Awaited { .. } | Stage::Finished { .. } => {
                if entry.owner != owner {
                    entry.events.clear();
                    entry.last_seq = 0;
                }
                entry.owner = owner;
                entry.stage = Stage::Remote { heard: now };
                awaited.push_back((now, Arc::from(id)));
            }
        }
        let l = entry.link.get_or_insert_with(Box::default);
        l.source = Some(Arc::clone(from));
        let forget = !entry.version.local() && !l.forgot;
        l.forgot |= forget;
        insert(entry, event, max_events);
        entry.bump();
        if forget {
            link.send(Outgoing::Forget {
                to: Arc::clone(from),
                id: Arc::from(id),
            });
        }
    }

    /// Request `id`, served by replica `from`, finished with `last_seq`.
    pub fn remote_finished(&self, from: &Replica, id: &str, owner: Option<Owner>, last_seq: u64) {
        let now = Instant::now();
        let mut entries = self.lock();
        let Some(entry) = entries.map.get_mut(id) else {
            return;
        };
        match entry.stage {
            Stage::Remote { .. } => {}
            Stage::Awaited { .. } => entry.owner = owner,
            _ => return,
        }
        entry.last_seq = entry.last_seq.max(last_seq);
        entry.stage = Stage::Finished { at: now };
        entry.link.get_or_insert_with(Box::default).source = Some(Arc::clone(from));
        entry.bump();
        entries.finished.push_back((now, Arc::from(id)));
    }

    /// Replica `from` has no subscriber for `id` any more.
    pub fn remote_forget(&self, from: &Replica, id: &str) {
        let mut entries = self.lock();
        if let Some(entry) = entries.map.get_mut(id)
            && let Some(l) = entry.link.as_mut()
        {
            l.watchers.retain(|r| r != from);
            if l.watchers.is_empty() {
                entry.version.remote.store(false, Ordering::Relaxed);
            }
        }
    }
}
