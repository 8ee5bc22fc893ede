//! The body observer: feeds upstream bytes to the stream interpreter, and what it learns to the
//! progress state and the capture recorder. No I/O and no clock: time comes in as an offset.

use crate::apis::Api;
use crate::apis::stream::{Dialect, Limits, Signal, StreamInterpreter, Summary};
use crate::capture::recorder::Recorder;
use crate::progress::state::Progress;
use std::time::Duration;

/// What one chunk taught the observer.
#[derive(Debug, Default)]
pub struct Seen {
    pub signals: Vec<Signal>,
    /// A line injected now would sit between complete upstream events.
    pub boundary: bool,
}

/// Watches one upstream body.
pub struct Observer {
    interp: Box<StreamInterpreter>,
    /// The upstream answered 2xx.
    ok: bool,
}

impl Observer {
    pub fn new(
        api: Api,
        path_and_query: &str,
        content_type: &str,
        encoding: Option<&str>,
        ok: bool,
    ) -> Self {
        let dialect = Dialect::detect(api, path_and_query, content_type);
        Observer {
            interp: Box::new(
                StreamInterpreter::with_dialect(dialect, Limits::default())
                    .with_content_encoding(encoding),
            ),
            ok,
        }
    }

    pub fn dialect(&self) -> Option<Dialect> {
        self.interp.dialect()
    }

    /// The body claimed a content encoding it does not have.
    pub fn corrupt(&self) -> bool {
        self.interp.decode_failed()
    }

    pub fn summary(&self) -> &Summary {
        self.interp.summary()
    }

    /// Takes the summary for the capture record, once the body is over.
    pub fn take_summary(&mut self) -> Summary {
        self.interp.take_summary()
    }

    /// One upstream chunk at `at`.
    pub fn chunk(
        &mut self,
        data: &[u8],
        at: Duration,
        progress: &mut Progress,
        recorder: Option<&mut Recorder>,
    ) -> Seen {
        progress.upstream_bytes(at);
        let step = self.interp.feed(data);
        let whole_answer = self.interp.dialect().is_none();
        if let Some(r) = recorder {
            if whole_answer {
                r.upstream_body(data);
            } else {
                r.after_feed(&self.interp.summary().output, at);
            }
        }
        if whole_answer && self.ok {
            // A non-streaming answer: its first bytes carry the first token.
            progress.whole_answer(at);
        }
        note_answer(&step.signals, at, progress);
        Seen {
            signals: step.signals,
            boundary: self.interp.at_boundary(),
        }
    }

    /// The body ended at `at`: the last signals, and the error the stream itself carried.
    pub fn finish(
        &mut self,
        at: Duration,
        progress: &mut Progress,
        recorder: Option<&mut Recorder>,
    ) -> (Vec<Signal>, Option<String>) {
        let signals = self.interp.finish();
        if let Some(r) = recorder {
            r.after_feed(&self.interp.summary().output, at);
        }
        note_answer(&signals, at, progress);
        (signals, self.interp.summary().output.error.clone())
    }
}

/// Answer content is feedback in every tier.
fn note_answer(signals: &[Signal], at: Duration, progress: &mut Progress) {
    if signals
        .iter()
        .any(|s| matches!(s, Signal::AnswerDelta { .. }))
    {
        progress.feedback(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Ladder;
    use std::sync::Arc;

    fn progress() -> Progress {
        Progress::new(Arc::from("abcdefghijklmnop"), Arc::new(Ladder::default()))
    }

    #[test]
    fn boundaries_follow_complete_events_however_bytes_are_cut() {
        let mut obs = Observer::new(
            Api::OpenAi,
            "/v1/chat/completions",
            "text/event-stream",
            None,
            true,
        );
        let mut p = progress();
        let at = Duration::from_millis(5);
        let seen = obs.chunk(b"data: {\"choices\":[{\"delta\":{\"con", at, &mut p, None);
        assert!(!seen.boundary);
        let seen = obs.chunk(b"tent\":\"Hi\"}}]}\n\n", at, &mut p, None);
        assert!(seen.boundary);
        assert_eq!(p.milestones().first_feedback_ms, Some(5.0));
        assert_eq!(obs.summary().output.answer, "Hi");
    }

    #[test]
    fn a_whole_answer_is_first_token_only_when_the_upstream_said_yes() {
        let mut failed = Observer::new(Api::OpenAi, "/v1/models", "application/json", None, false);
        let mut p = progress();
        failed.chunk(b"{}", Duration::from_millis(3), &mut p, None);
        assert_eq!(p.milestones().first_token_ms, None);
        let mut ok = Observer::new(Api::OpenAi, "/v1/models", "application/json", None, true);
        ok.chunk(b"{}", Duration::from_millis(4), &mut p, None);
        assert_eq!(p.milestones().first_token_ms, Some(4.0));
    }
}
