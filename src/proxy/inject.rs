//! The injector: what aloud adds to a response, and only where it may — comments and events at
//! event boundaries, heartbeats after upstream silence. Pure: it is handed the time since the
//! upstream last spoke and returns bytes or a decision.

use crate::progress::frames;
use crate::progress::hub::Published;
use bytes::Bytes;
use std::time::Duration;

/// What aloud adds to the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The upstream's bytes only.
    Pass,
    /// Plus `: aloud {...}` lines at event boundaries while the upstream is silent.
    Comments,
    /// An SSE stream of `aloud.*` events around the upstream's own events.
    Events,
}

/// What a due heartbeat does.
#[derive(Debug, PartialEq)]
pub enum Beat {
    /// Send the heartbeat's event now (`Injector::heartbeat_bytes`).
    Send,
    /// The upstream spoke recently: the comment is due this much later.
    Defer(Duration),
    /// Nothing goes to the client (the side channel may still get the event).
    Quiet,
}

/// Where and what to inject for one response.
#[derive(Debug)]
pub struct Injector {
    mode: Mode,
    /// The bytes sent so far end where a line may be added.
    at_boundary: bool,
    /// The client's head is out (an early commit, or the upstream's head passed on).
    head_out: bool,
    heartbeat: Duration,
}

impl Injector {
    pub fn new(mode: Mode, heartbeat: Duration) -> Self {
        Injector {
            mode,
            at_boundary: true,
            head_out: mode == Mode::Events,
            heartbeat,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The upstream's response cannot take comments: pass it as it is.
    pub fn pass_only(&mut self) {
        if self.mode == Mode::Comments {
            self.mode = Mode::Pass;
        }
    }

    /// The client's head went out: from now on bytes may be queued.
    pub fn head_out(&mut self) {
        self.head_out = true;
    }

    pub fn at_boundary(&self) -> bool {
        self.at_boundary
    }

    /// Whether bytes sent so far end at a boundary.
    pub fn set_boundary(&mut self, at_boundary: bool) {
        self.at_boundary = at_boundary;
    }

    /// An `aloud.*` event for the client, in the events tier at a boundary.
    pub fn event(&self, p: &Published) -> Option<Bytes> {
        (self.mode == Mode::Events && self.at_boundary).then(|| frames::event_bytes(p))
    }

    /// A heartbeat came due; `quiet` is how long the upstream has been silent (`None` before its
    /// head).
    pub fn heartbeat(&self, quiet: Option<Duration>) -> Beat {
        match self.mode {
            Mode::Events if self.at_boundary => Beat::Send,
            Mode::Comments if self.head_out => match quiet {
                // The upstream spoke less than a heartbeat ago: the comment is due one heartbeat
                // after that, not a whole heartbeat from now.
                Some(q) if q < self.heartbeat => Beat::Defer(self.heartbeat - q),
                _ if self.at_boundary => Beat::Send,
                _ => Beat::Quiet,
            },
            _ => Beat::Quiet,
        }
    }

    /// The bytes of a heartbeat that is to be sent: an event, or a comment.
    pub fn heartbeat_bytes(&self, p: &Published) -> Bytes {
        match self.mode {
            Mode::Events => frames::event_bytes(p),
            Mode::Comments | Mode::Pass => frames::comment_bytes(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ev() -> Published {
        Published {
            seq: 3,
            name: "aloud.progress",
            data: Arc::from("{\"seq\":3}"),
            heartbeat: true,
        }
    }

    #[test]
    fn comments_wait_for_the_head_for_silence_and_for_a_boundary() {
        let s = Duration::from_secs(1);
        let mut inj = Injector::new(Mode::Comments, s);
        assert_eq!(inj.heartbeat(None), Beat::Quiet, "no head yet");
        inj.head_out();
        assert_eq!(
            inj.heartbeat(Some(Duration::from_millis(300))),
            Beat::Defer(Duration::from_millis(700))
        );
        inj.set_boundary(false);
        assert_eq!(inj.heartbeat(Some(s)), Beat::Quiet, "mid-event");
        inj.set_boundary(true);
        assert_eq!(inj.heartbeat(Some(s)), Beat::Send);
        assert_eq!(
            inj.heartbeat_bytes(&ev()),
            Bytes::from_static(b": aloud {\"seq\":3}\n")
        );
        inj.pass_only();
        assert_eq!(inj.heartbeat(Some(s)), Beat::Quiet);
    }

    #[test]
    fn events_go_out_only_at_boundaries() {
        let mut inj = Injector::new(Mode::Events, Duration::from_secs(1));
        assert!(inj.event(&ev()).is_some());
        inj.set_boundary(false);
        assert!(inj.event(&ev()).is_none());
        assert_eq!(inj.heartbeat(None), Beat::Quiet);
        let pass = Injector::new(Mode::Pass, Duration::from_secs(1));
        assert!(pass.event(&ev()).is_none());
    }
}
