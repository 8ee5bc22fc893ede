//! What the dashboard shows of a request in flight: a small cell per request (route, tier,
//! model, phase, heading), updated by its watcher on a phase or heading change and read by
//! `Hub::live` only when someone asks. Cells exist only when the admin listener runs.

use super::ladder::Ladder;
use crate::apis::stream::Phase;
use serde::Serialize;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// Where a request's model can be read from, when someone asks (the proxy's request tap reads
/// it from the body's first bytes). Asked only by a dashboard, never on the request path.
pub trait ModelHint: Send + Sync {
    /// `None` while it cannot tell yet (the body is still on its way); then the model for good
    /// (`Some(None)`: the body names none, or its bytes were not all kept).
    fn model(&self) -> Option<Option<String>>;
}

/// What changes while a request runs.
#[derive(Debug)]
struct Moving {
    phase: Phase,
    phase_since: Duration,
    /// The upstream's own heading in this phase, when it sent one.
    heading: Option<Box<str>>,
}

/// One in-flight request as the dashboard sees it.
pub struct LiveCell {
    route: Arc<str>,
    tier: &'static str,
    started: Instant,
    ladder: Arc<Ladder>,
    /// Once known for good (`Some(None)`: the request names none), so the body is read once.
    model: OnceLock<Option<Box<str>>>,
    hint: OnceLock<Arc<dyn ModelHint>>,
    moving: Mutex<Moving>,
}

/// One row of `/dashboard/api/live`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LiveRequest {
    pub id: String,
    pub attempt: u32,
    pub route: String,
    pub model: Option<String>,
    pub tier: &'static str,
    pub phase: &'static str,
    pub label: String,
    pub elapsed_ms: u64,
    pub phase_elapsed_ms: u64,
}

impl LiveCell {
    pub fn new(
        route: Arc<str>,
        tier: &'static str,
        started: Instant,
        ladder: Arc<Ladder>,
    ) -> Arc<Self> {
        Arc::new(LiveCell {
            route,
            tier,
            started,
            ladder,
            model: OnceLock::new(),
            hint: OnceLock::new(),
            moving: Mutex::new(Moving {
                phase: Phase::Accepted,
                phase_since: Duration::ZERO,
                heading: None,
            }),
        })
    }

    fn moving(&self) -> MutexGuard<'_, Moving> {
        // Display state only: a poisoned lock is taken over.
        self.moving.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the request head was parsed.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The model, when known without reading the body (Gemini names it in the path).
    pub fn set_model(&self, model: &str) {
        let _ = self.model.set(Some(model.into()));
    }

    /// Where to read the model from when a dashboard asks.
    pub fn set_model_hint(&self, hint: Arc<dyn ModelHint>) {
        let _ = self.hint.set(hint);
    }

    /// The watcher's phase or heading changed.
    pub fn update(&self, phase: Phase, phase_since: Duration, heading: Option<&str>) {
        let mut m = self.moving();
        m.phase = phase;
        m.phase_since = phase_since;
        if m.heading.as_deref() != heading {
            m.heading = heading.map(Box::from);
        }
    }

    fn model(&self) -> Option<String> {
        if let Some(m) = self.model.get() {
            return m.as_deref().map(str::to_owned);
        }
        let found = self.hint.get()?.model()?;
        // Read once, found or not: later polls take the cached answer.
        let _ = self.model.set(found.as_deref().map(Box::from));
        found
    }

    /// The row for `id` at `now`.
    pub fn row(&self, id: &str, attempt: u32, now: Instant) -> LiveRequest {
        let elapsed = now.saturating_duration_since(self.started);
        let (phase, in_phase, label) = {
            let m = self.moving();
            let in_phase = elapsed.saturating_sub(m.phase_since);
            let label = match &m.heading {
                Some(h) => h.to_string(),
                None => self
                    .ladder
                    .text(m.phase, in_phase)
                    .unwrap_or(m.phase.as_str())
                    .to_owned(),
            };
            (m.phase, in_phase, label)
        };
        LiveRequest {
            id: id.to_owned(),
            attempt,
            route: self.route.to_string(),
            model: self.model(),
            tier: self.tier,
            phase: phase.as_str(),
            label,
            elapsed_ms: elapsed.as_millis() as u64,
            phase_elapsed_ms: in_phase.as_millis() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named;
    impl ModelHint for Named {
        fn model(&self) -> Option<Option<String>> {
            Some(Some("from-body".into()))
        }
    }

    /// A body that names no model (or was not all kept) is read once, not at every poll.
    #[test]
    fn a_body_without_a_model_is_read_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        struct Nameless(AtomicUsize);
        impl ModelHint for Nameless {
            fn model(&self) -> Option<Option<String>> {
                // The first ask comes while the body is still on its way.
                match self.0.fetch_add(1, Ordering::Relaxed) {
                    0 => None,
                    _ => Some(None),
                }
            }
        }
        let start = Instant::now();
        let cell = LiveCell::new(Arc::from("sim"), "off", start, Arc::default());
        let hint = Arc::new(Nameless(AtomicUsize::new(0)));
        cell.set_model_hint(Arc::clone(&hint) as Arc<dyn ModelHint>);
        for _ in 0..5 {
            assert_eq!(cell.row("a", 1, start).model, None);
        }
        assert_eq!(
            hint.0.load(Ordering::Relaxed),
            2,
            "asked again after it was known"
        );
    }

    #[test]
    fn a_row_has_the_phase_the_ladder_label_and_the_model() {
        let start = Instant::now();
        let cell = LiveCell::new(Arc::from("sim"), "events", start, Arc::default());
        let row = cell.row("a", 1, start + Duration::from_secs(4));
        assert_eq!((row.phase, row.label.as_str()), ("accepted", "Starting…"));
        assert_eq!(row.model, None);
        cell.update(Phase::Waiting, Duration::from_secs(1), None);
        cell.set_model_hint(Arc::new(Named));
        let row = cell.row("a", 1, start + Duration::from_secs(5));
        assert_eq!((row.phase, row.label.as_str()), ("waiting", "Thinking…"));
        assert_eq!((row.elapsed_ms, row.phase_elapsed_ms), (5000, 4000));
        assert_eq!(row.model.as_deref(), Some("from-body"));
        cell.update(Phase::Thinking, Duration::from_secs(5), Some("Planning"));
        let row = cell.row("a", 1, start + Duration::from_secs(6));
        assert_eq!((row.phase, row.label.as_str()), ("thinking", "Planning"));
    }
}
