//! Kept streams for `on_disconnect = "finish"`: the upstream's own bytes of each such request,
//! with where each event ends, bounded per request and in total, retained like the side
//! channel. No I/O; the HTTP edge is `endpoints/resume.rs`, the writer is the exchange body.
//!
//! **Invariant:** a kept stream is never silently shortened: past a bound its bytes are dropped
//! and it ends `Overflow`, which every reader reports as an error.

mod read;

pub use read::{Follow, FollowError, Start};

use crate::apis::Api;
use crate::config::Owner;
use crate::sse::{EventEnds, Framing};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How a kept stream ended. The first end set wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeptEnd {
    /// The upstream's body ended cleanly.
    Complete,
    /// The upstream failed, a timeout or a shutdown cut it: the kept bytes stop short.
    Failed(String),
    /// A bound was passed: the bytes were dropped.
    Overflow(String),
}

/// The upstream's head as a resume answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptHead {
    pub status: u16,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
}

/// The registry of kept streams, shared by every request (kept across reloads).
pub struct Keeper {
    entries: Mutex<Entries>,
    used: AtomicUsize,
    max_total: usize,
    retain: Duration,
    retain_max: usize,
    me: Weak<Keeper>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<Arc<str>, Arc<Kept>>,
    /// Finished entries in the order they finished.
    finished: VecDeque<(Instant, Weak<Kept>)>,
}

/// One request's kept stream.
pub struct Kept {
    pub id: Arc<str>,
    /// The route's api, for errors in its envelope.
    pub api: Api,
    owner: Option<Owner>,
    max_body: usize,
    started: Instant,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    keeper: Weak<Keeper>,
}

struct State {
    head: Option<KeptHead>,
    chunks: Vec<Bytes>,
    len: usize,
    /// What the chunks are charged against the bounds: their bytes and `CHUNK_OVERHEAD` each.
    charged: usize,
    /// Offsets right after each event's last byte.
    ends: Vec<usize>,
    split: Option<EventEnds>,
    end: Option<KeptEnd>,
    done_at: Option<Instant>,
    client_left: Option<Instant>,
    resumes: Vec<(Instant, u64)>,
}

/// What the capture record says about a disconnect and the resumes, in ms from the start.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Disconnected {
    pub client_left_ms: Option<f64>,
    pub upstream_done_ms: Option<f64>,
    /// Each resume: when, and after which event.
    pub resumes: Vec<(f64, u64)>,
}

/// What keeping one chunk costs besides its bytes (its `Bytes` handle and an event end),
/// charged against the bounds so many tiny chunks cannot outgrow them unseen.
pub const CHUNK_OVERHEAD: usize = 40;

/// Resumes remembered per answer for the capture record (later ones are only counted).
const MAX_RESUMES: usize = 64;

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl Keeper {
    /// `max_total` bounds every kept byte together; finished streams stay `retain`, at most
    /// `retain_max` of them.
    pub fn new(max_total: usize, retain: Duration, retain_max: usize) -> Arc<Keeper> {
        Arc::new_cyclic(|me| Keeper {
            entries: Mutex::new(Entries::default()),
            used: AtomicUsize::new(0),
            max_total,
            retain,
            retain_max,
            me: me.clone(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts keeping `id` (a new attempt of an id replaces the old one), at most `max_body`.
    pub fn begin(
        &self,
        (id, api): (&Arc<str>, Api),
        owner: Option<Owner>,
        max_body: usize,
        started: Instant,
    ) -> Arc<Kept> {
        let kept = Arc::new(Kept {
            id: Arc::clone(id),
            api,
            owner,
            max_body,
            started,
            state: Mutex::new(State {
                head: None,
                chunks: Vec::new(),
                len: 0,
                charged: 0,
                ends: Vec::new(),
                split: None,
                end: None,
                done_at: None,
                client_left: None,
                resumes: Vec::new(),
            }),
            changed: watch::Sender::new(0),
            keeper: self.me.clone(),
        });
        let mut entries = self.lock();
        self.prune(&mut entries, Instant::now());
        entries.map.insert(Arc::clone(id), Arc::clone(&kept));
        kept
    }

    /// The kept stream of `id` made with `owner`'s token; `None` for unknown or foreign ids.
    pub fn find(&self, id: &str, owner: Option<Owner>) -> Option<Arc<Kept>> {
        let mut entries = self.lock();
        self.prune(&mut entries, Instant::now());
        entries
            .map
            .get(id)
            .filter(|k| k.owner == owner)
            .map(Arc::clone)
    }

    /// Bytes kept now, over every request.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|t| *t <= self.max_total)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    fn finished(&self, kept: &Arc<Kept>, at: Instant) {
        let mut entries = self.lock();
        entries.finished.push_back((at, Arc::downgrade(kept)));
        self.prune(&mut entries, at);
    }

    /// Drops finished entries past `retain` or beyond `retain_max` (oldest first).
    fn prune(&self, entries: &mut Entries, now: Instant) {
        while let Some((at, kept)) = entries.finished.front() {
            let over = entries.finished.len() > self.retain_max;
            if !over && now.saturating_duration_since(*at) < self.retain {
                break;
            }
            let kept = kept.upgrade();
            entries.finished.pop_front();
            if let Some(k) = kept
                && entries.map.get(&k.id).is_some_and(|e| Arc::ptr_eq(e, &k))
            {
                entries.map.remove(&k.id);
            }
        }
    }
}

impl Kept {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    pub fn owner(&self) -> Option<Owner> {
        self.owner
    }

    /// The upstream's head arrived: its framing decides how events are counted.
    pub fn head(&self, head: KeptHead) {
        let mut s = self.lock();
        let compressed = head
            .content_encoding
            .as_deref()
            .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
        let framing = Framing::for_body(head.content_type.as_deref().unwrap_or(""), compressed);
        s.split = Some(EventEnds::new(framing));
        s.head = Some(head);
        drop(s);
        self.bump();
    }

    /// Keeps one upstream chunk. False once the stream overflowed (now or before).
    pub fn data(self: &Arc<Self>, chunk: &Bytes) -> bool {
        let mut s = self.lock();
        if matches!(s.end, Some(KeptEnd::Overflow(_))) {
            return false;
        }
        if s.end.is_some() || chunk.is_empty() {
            return true;
        }
        let keeper = self.keeper.upgrade();
        let cost = chunk.len() + CHUNK_OVERHEAD;
        let fits = s.charged + cost <= self.max_body;
        let taken = fits && keeper.as_ref().is_some_and(|k| k.take(cost));
        if !taken {
            let why = if fits {
                "the resume buffers of all requests are full (progress.resume_max_total)"
            } else {
                "the answer is larger than the resume buffer (progress.resume_max_body)"
            };
            self.overflow(s, keeper.as_deref(), why);
            return false;
        }
        let base = s.len;
        let mut ends = Vec::new();
        if let Some(split) = s.split.as_mut() {
            split.feed(chunk, &mut ends);
        }
        s.ends.extend(ends.into_iter().map(|e| base + e));
        s.len += chunk.len();
        s.charged += cost;
        s.chunks.push(chunk.clone());
        drop(s);
        self.bump();
        true
    }

    fn overflow(
        self: &Arc<Self>,
        mut s: MutexGuard<'_, State>,
        keeper: Option<&Keeper>,
        why: &str,
    ) {
        if let Some(k) = keeper {
            k.give(s.charged);
        }
        s.chunks = Vec::new();
        s.ends = Vec::new();
        s.len = 0;
        s.charged = 0;
        s.end = Some(KeptEnd::Overflow(why.to_owned()));
        let at = Instant::now();
        s.done_at = Some(at);
        drop(s);
        self.bump();
        if let Some(k) = keeper {
            k.finished(self, at);
        }
    }

    /// The upstream's body ended (the first call counts).
    pub fn end(self: &Arc<Self>, end: KeptEnd) {
        let mut s = self.lock();
        if s.end.is_some() {
            return;
        }
        if end == KeptEnd::Complete
            && let Some(split) = s.split.as_mut()
            && split.finish()
        {
            let len = s.len;
            s.ends.push(len);
        }
        s.end = Some(end);
        let at = Instant::now();
        s.done_at = Some(at);
        drop(s);
        self.bump();
        if let Some(k) = self.keeper.upgrade() {
            k.finished(self, at);
        }
    }

    pub fn is_over(&self) -> bool {
        self.lock().end.is_some()
    }

    pub fn overflowed(&self) -> bool {
        matches!(self.lock().end, Some(KeptEnd::Overflow(_)))
    }

    /// The client that made the request went away at `at`.
    pub fn client_left(&self, at: Instant) {
        self.lock().client_left.get_or_insert(at);
    }

    /// A resume after event `after` started now.
    pub fn resumed(&self, after: u64) {
        let mut s = self.lock();
        if s.resumes.len() < MAX_RESUMES {
            s.resumes.push((Instant::now(), after));
        }
    }

    /// For the capture record: `None` when the client never left and nobody resumed.
    pub fn disconnected(&self) -> Option<Disconnected> {
        let s = self.lock();
        if s.client_left.is_none() && s.resumes.is_empty() {
            return None;
        }
        let since = |t: Instant| ms(t.saturating_duration_since(self.started));
        Some(Disconnected {
            client_left_ms: s.client_left.map(since),
            upstream_done_ms: s.done_at.map(since),
            resumes: s.resumes.iter().map(|(t, n)| (since(*t), *n)).collect(),
        })
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        let charged = self.lock().charged;
        if let Some(k) = self.keeper.upgrade() {
            k.give(charged);
        }
    }
}

#[cfg(test)]
mod tests;
