//! One request's progress at the edge: the pure state machine plus its side-channel entry. The
//! exchange's single timer (in `proxy`) says when a heartbeat is due.
//!
//! Events cost only when someone sees them: an event is serialised and published when the
//! request is in the events tier (`eager`), when a side-channel subscriber listens now, or when
//! the caller needs its bytes (a comment). A request nobody watched leaves its side-channel
//! entry the final `aloud.done`, unserialised until someone asks.

use super::eta::EtaWatch;
use super::eta::watch::Said;
use super::frames::{self, DONE, PROGRESS};
use super::hub::{Hub, Listeners, Published};
use super::ladder::Ladder;
use super::live::LiveCell;
use super::state::{Progress, VERSION};
use crate::apis::stream::{Phase, Signal};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Publishes a request's progress to the hub, and hands the same events to the relay.
pub struct Watcher {
    id: Arc<str>,
    started: Instant,
    progress: Progress,
    hub: Arc<Hub>,
    listeners: Listeners,
    /// The client takes every event (the events tier).
    eager: bool,
    finished: bool,
    /// What the dashboard shows while the request runs (when the admin listener is on).
    live: Option<Arc<LiveCell>>,
    /// The exchange's ETA, when the estimator is on (boxed: most of it is idle).
    eta: Option<Box<EtaWatch>>,
}

impl Watcher {
    /// Starts watching; `first_seq` continues an earlier attempt with the same id.
    pub fn new(
        id: Arc<str>,
        started: Instant,
        first_seq: u64,
        hub: Arc<Hub>,
        ladder: Arc<Ladder>,
        listeners: Listeners,
        eager: bool,
    ) -> Self {
        Watcher {
            listeners,
            eager,
            progress: Progress::new(Arc::clone(&id), ladder).continue_from(first_seq),
            id,
            started,
            hub,
            finished: false,
            live: None,
            eta: None,
        }
    }

    /// Keeps `live` (the cell the hub shows the dashboard) up to date with phase and heading.
    pub fn with_live(mut self, live: Option<Arc<LiveCell>>) -> Self {
        self.live = live;
        self
    }

    fn show_live(&self) {
        if let Some(live) = &self.live {
            let (since, heading) = self.progress.phase_parts();
            live.update(self.progress.phase(), since, heading);
        }
    }

    /// Gives the exchange an ETA: its events carry one once there is enough history.
    pub fn set_eta(&mut self, eta: EtaWatch) {
        self.eta = Some(Box::new(eta));
    }

    /// The request body's bytes are about to be let go: learn the ETA key now or never.
    pub fn eta_last_chance(&mut self) {
        if let Some(e) = self.eta.as_mut() {
            e.resolve(true);
        }
    }

    /// The exchange ended (`ok`: well) after `total`: teaches the history, and says what the
    /// estimator said about it.
    pub fn eta_finish(&mut self, ok: bool, total: Duration) -> Option<Said> {
        let first_token = self.progress.milestones().first_token_ms;
        self.eta.as_mut()?.finish(ok, total, first_token)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// When the request head was parsed.
    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    pub fn progress_mut(&mut self) -> &mut Progress {
        &mut self.progress
    }

    /// Whether anyone sees events now: the events tier, or a side-channel subscriber.
    pub fn observed(&self) -> bool {
        self.eager || self.listeners.any()
    }

    /// Emits an `aloud.progress` event now, when someone sees it.
    pub fn emit(&mut self) -> Option<Published> {
        self.observed().then(|| self.emit_as(false))
    }

    /// Emits the heartbeat's `aloud.progress` event (the hub keeps only the latest of a run),
    /// when someone sees it or the caller needs its bytes (`needed`).
    pub fn emit_heartbeat(&mut self, needed: bool) -> Option<Published> {
        (needed || self.observed()).then(|| self.emit_as(true))
    }

    fn emit_as(&mut self, heartbeat: bool) -> Published {
        let at = self.elapsed();
        let mut event = self.progress.event(at);
        let first_token_seen = self.progress.milestones().first_token_ms.is_some();
        // An exchange that ended has no time left: `done` and `error` carry no estimate.
        let ended = matches!(event.phase, Phase::Done | Phase::Error);
        if let Some((fields, estimate)) = self
            .eta
            .as_mut()
            .filter(|_| !ended)
            .and_then(|e| e.fields(at, first_token_seen))
        {
            event.eta = Some(fields);
            if estimate.trusted
                && let Some(label) = self
                    .progress
                    .eta_label(Duration::from_millis(fields.eta_ms))
            {
                event.label = label;
            }
        }
        let mut published = frames::publish(event.seq, PROGRESS, &event);
        published.heartbeat = heartbeat;
        // A comment nobody else watches is not kept for replay: only the client needs it.
        if self.observed() && self.hub.publish(&self.id, published.clone()) {
            self.progress.feedback(at);
        }
        published
    }

    /// Moves to `phase`; returns the event to send when it changed.
    pub fn phase(&mut self, phase: Phase) -> Option<Published> {
        self.phase_at(phase, self.elapsed())
    }

    /// [`Watcher::phase`] at `at`, a time the caller already read (one clock read fewer).
    pub fn phase_at(&mut self, phase: Phase, at: Duration) -> Option<Published> {
        if self.progress.set_phase(phase, at) {
            self.show_live();
            self.emit()
        } else {
            None
        }
    }

    /// Applies interpreter signals; returns an event when one is worth sending now.
    pub fn signals(&mut self, signals: &[Signal]) -> Option<Published> {
        let at = self.elapsed();
        self.signals_at(signals, at)
    }

    /// Applies signals that arrived at `at` (the chunk's own reading, so the milestones they
    /// set agree with the feedback the same chunk gave).
    pub fn signals_at(&mut self, signals: &[Signal], at: Duration) -> Option<Published> {
        let mut changed = false;
        for s in signals {
            changed |= self.progress.apply(s, at);
        }
        if changed {
            self.show_live();
            self.emit()
        } else {
            None
        }
    }

    /// Publishes an event built elsewhere (`aloud.result`, `aloud.error`).
    pub fn publish(&mut self, event: Published) -> Published {
        self.hub.publish(&self.id, event.clone());
        event
    }

    /// The next sequence number, for events built elsewhere.
    pub fn next_seq(&mut self) -> u64 {
        self.progress.next_seq()
    }

    /// Ends the attempt: moves to `phase` (when not already final), publishes `aloud.done`, and
    /// tells the hub. Returns the events to send; only the first call returns any.
    pub fn finish(&mut self, phase: Phase) -> Vec<Published> {
        if self.finished {
            return Vec::new();
        }
        self.finished = true;
        // Nothing allocated for a request nobody watches: its phase change makes no event.
        let mut out = Vec::new();
        let at = self.elapsed();
        out.extend(self.phase_at(phase, at));
        let done = self.progress.done(at);
        if !self.observed() {
            // Nobody sees it now: the entry keeps it unserialised for a later subscriber.
            self.hub.finish(&self.id, Some(done));
            return out;
        }
        let published = frames::publish(done.seq, DONE, &done);
        self.hub.publish(&self.id, published.clone());
        self.hub.finish(&self.id, None);
        out.push(published);
        out
    }

    pub fn version(&self) -> u32 {
        VERSION
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // A request that ends without `finish` (the client left, the process is stopping) still
        // closes its side channel, with an error phase.
        if !self.finished {
            self.finish(Phase::Error);
        }
    }
}
