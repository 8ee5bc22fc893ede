//! The progress state machine of one request: phase, counters, label, timings, sequence numbers.
//!
//! Pure: time comes in as offsets from the moment the request head was parsed.

use super::ladder::Ladder;
use crate::apis::stream::{Phase, Signal, Usage};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Protocol version of aloud's progress events.
pub const VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub reasoning_deltas: u64,
    pub reasoning_chars: u64,
    pub answer_deltas: u64,
    pub answer_chars: u64,
    pub tool_calls: u64,
}

/// Milestones, in milliseconds from the request head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Milestones {
    pub upstream_headers_ms: Option<f64>,
    pub first_byte_ms: Option<f64>,
    pub first_reasoning_ms: Option<f64>,
    pub first_token_ms: Option<f64>,
    pub done_ms: Option<f64>,
    /// The first thing the client could paint: an aloud event or comment it received, reasoning
    /// text, answer content or a tool call (docs/capture.md, "first feedback").
    pub first_feedback_ms: Option<f64>,
    /// The longest gap between two pieces of feedback so far (from the request head on).
    pub longest_silence_ms: f64,
    /// The last piece of feedback, for the silence that is still running.
    pub last_feedback_ms: f64,
}

/// `aloud.progress`: sent on every phase change, every new heading and every heartbeat.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProgressEvent {
    pub v: u32,
    pub request_id: Arc<str>,
    pub seq: u64,
    pub elapsed_ms: u64,
    pub phase: Phase,
    pub phase_elapsed_ms: u64,
    pub label: String,
    /// Where the label came from: `model` (a reasoning heading the upstream sent) or `aloud`
    /// (the status ladder for the phase).
    pub label_from: LabelFrom,
    pub counters: Counters,
    /// `eta_ms`, `eta_first_token_ms`, `fraction`, `eta_basis`, once there is enough history.
    #[serde(flatten)]
    pub eta: Option<super::eta::EtaFields>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelFrom {
    Model,
    Aloud,
}

/// `aloud.done`: the last event, with the timings of the whole exchange.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DoneEvent {
    pub v: u32,
    pub request_id: Arc<str>,
    pub seq: u64,
    pub phase: Phase,
    pub status: Option<u16>,
    pub timings: DoneTimings,
    pub counters: Counters,
    pub usage: Option<Usage>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct DoneTimings {
    pub upstream_headers_ms: Option<f64>,
    pub first_byte_ms: Option<f64>,
    pub first_token_ms: Option<f64>,
    pub total_ms: f64,
}

/// The state of one request's progress.
#[derive(Clone, Debug)]
pub struct Progress {
    request_id: Arc<str>,
    ladder: Arc<Ladder>,
    seq: u64,
    phase: Phase,
    phase_since: Duration,
    heading: Option<String>,
    counters: Counters,
    milestones: Milestones,
    usage: Option<Usage>,
    status: Option<u16>,
    /// Phase changes with their offsets, kept only for an exchange that is traced.
    phases: Option<Vec<(Phase, Duration)>>,
}

/// Most phase changes kept for a span; later ones are not recorded.
const MAX_PHASES: usize = 64;

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl Progress {
    pub fn new(request_id: Arc<str>, ladder: Arc<Ladder>) -> Self {
        Progress {
            request_id,
            ladder,
            seq: 0,
            phase: Phase::Accepted,
            phase_since: Duration::ZERO,
            heading: None,
            counters: Counters::default(),
            milestones: Milestones::default(),
            usage: None,
            status: None,
            phases: None,
        }
    }

    /// Starts keeping phase changes (for the exchange's span), from the current phase on.
    pub fn keep_phases(&mut self) {
        self.phases = Some(vec![(self.phase, self.phase_since)]);
    }

    /// The phase changes kept since `keep_phases` (empty when none were kept).
    pub fn take_phases(&mut self) -> Vec<(Phase, Duration)> {
        self.phases.take().unwrap_or_default()
    }

    /// Continues the sequence of an earlier attempt with the same id.
    pub fn continue_from(mut self, last_seq: u64) -> Self {
        self.seq = last_seq;
        self
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// When the current phase began, and the upstream's heading in it (for the dashboard).
    pub fn phase_parts(&self) -> (Duration, Option<&str>) {
        (self.phase_since, self.heading.as_deref())
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn milestones(&self) -> Milestones {
        self.milestones
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Moves to `phase`; returns whether it changed. Nothing leaves `Done` or `Error`.
    pub fn set_phase(&mut self, phase: Phase, at: Duration) -> bool {
        if phase == self.phase || self.phase.is_terminal() {
            return false;
        }
        self.phase = phase;
        self.phase_since = at;
        self.heading = None;
        if let Some(p) = self.phases.as_mut().filter(|p| p.len() < MAX_PHASES) {
            p.push((phase, at));
        }
        if phase == Phase::Done {
            self.milestones.done_ms.get_or_insert(ms(at));
        }
        true
    }

    /// Records the upstream's response head.
    pub fn upstream_headers(&mut self, status: u16, at: Duration) {
        self.status = Some(status);
        self.milestones.upstream_headers_ms.get_or_insert(ms(at));
    }

    /// Records that the client received something it can paint: an aloud event (events tier or
    /// side channel) or comment, reasoning text, answer content or a tool call.
    pub fn feedback(&mut self, at: Duration) {
        let now = ms(at);
        self.milestones.first_feedback_ms.get_or_insert(now);
        let gap = now - self.milestones.last_feedback_ms;
        if gap > self.milestones.longest_silence_ms {
            self.milestones.longest_silence_ms = gap;
        }
        self.milestones.last_feedback_ms = now;
    }

    /// The longest silence, counting the one still running until `at`.
    pub fn longest_silence(&self, at: Duration) -> f64 {
        let running = ms(at) - self.milestones.last_feedback_ms;
        self.milestones.longest_silence_ms.max(running)
    }

    /// A whole (non-streaming) answer went to the client: its first token and feedback.
    pub fn whole_answer(&mut self, at: Duration) {
        self.milestones.first_token_ms.get_or_insert(ms(at));
        self.feedback(at);
    }

    /// Records that upstream body bytes arrived.
    pub fn upstream_bytes(&mut self, at: Duration) {
        self.milestones.first_byte_ms.get_or_insert(ms(at));
    }

    /// Applies an interpreter signal; returns whether an event is worth sending now (a new phase
    /// or a new heading).
    pub fn apply(&mut self, signal: &Signal, at: Duration) -> bool {
        match signal {
            Signal::Phase(p) => self.set_phase(*p, at),
            Signal::ReasoningDelta { chars } => {
                self.counters.reasoning_deltas += 1;
                self.counters.reasoning_chars += *chars as u64;
                self.milestones.first_reasoning_ms.get_or_insert(ms(at));
                false
            }
            Signal::AnswerDelta { chars } => {
                self.counters.answer_deltas += 1;
                self.counters.answer_chars += *chars as u64;
                self.milestones.first_token_ms.get_or_insert(ms(at));
                false
            }
            Signal::ToolCall { .. } => {
                self.counters.tool_calls += 1;
                // A tool call is the answer's first content when it comes before any text.
                self.milestones.first_token_ms.get_or_insert(ms(at));
                false
            }
            Signal::Label(text) => {
                let changed = self.heading.as_deref() != Some(text.as_str());
                self.heading = Some(text.clone());
                changed
            }
            Signal::Usage(u) => {
                self.usage = Some(*u);
                false
            }
            Signal::Timings(_) | Signal::Finish { .. } => false,
            Signal::UpstreamError { .. } => self.set_phase(Phase::Error, at),
        }
    }

    /// The label now: the upstream's own heading when it sent one in this phase, else the ladder.
    pub fn label(&self, at: Duration) -> String {
        match &self.heading {
            Some(h) => h.clone(),
            None => self
                .ladder
                .text(self.phase, at.saturating_sub(self.phase_since))
                .unwrap_or(self.phase.as_str())
                .to_owned(),
        }
    }

    /// The next `aloud.progress` event (takes a sequence number).
    pub fn event(&mut self, at: Duration) -> ProgressEvent {
        self.seq += 1;
        ProgressEvent {
            v: VERSION,
            request_id: Arc::clone(&self.request_id),
            seq: self.seq,
            elapsed_ms: at.as_millis() as u64,
            phase: self.phase,
            phase_elapsed_ms: at.saturating_sub(self.phase_since).as_millis() as u64,
            label: self.label(at),
            label_from: if self.heading.is_some() {
                LabelFrom::Model
            } else {
                LabelFrom::Aloud
            },
            counters: self.counters,
            eta: None,
        }
    }

    /// The ladder's text naming the remaining time, for a label aloud chose (not a heading the
    /// model sent) in a phase that is not over.
    pub fn eta_label(&self, remaining: Duration) -> Option<String> {
        if self.heading.is_some() || self.phase.is_terminal() {
            return None;
        }
        Some(self.ladder.with_eta(self.phase, remaining))
    }

    /// The final `aloud.done` event (takes a sequence number).
    pub fn done(&mut self, at: Duration) -> DoneEvent {
        self.seq += 1;
        let m = self.milestones;
        DoneEvent {
            v: VERSION,
            request_id: Arc::clone(&self.request_id),
            seq: self.seq,
            phase: self.phase,
            status: self.status,
            timings: DoneTimings {
                upstream_headers_ms: m.upstream_headers_ms,
                first_byte_ms: m.first_byte_ms,
                first_token_ms: m.first_token_ms,
                total_ms: ms(at),
            },
            counters: self.counters,
            usage: self.usage,
        }
    }

    /// Takes a sequence number for an event built elsewhere (`aloud.error`, `aloud.result`).
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress() -> Progress {
        Progress::new(
            Arc::from("req-0000000000000001"),
            Arc::new(Ladder::default()),
        )
    }

    #[test]
    fn headings_replace_the_ladder_until_the_phase_changes() {
        let mut p = progress();
        let s = Duration::from_secs;
        assert!(p.set_phase(Phase::Thinking, s(1)));
        assert_eq!(p.label(s(2)), "Thinking…");
        assert_eq!(
            p.label(s(10)),
            "Still thinking — harder questions take longer"
        );
        assert!(p.apply(&Signal::Label("Weighing the options".into()), s(3)));
        assert!(!p.apply(&Signal::Label("Weighing the options".into()), s(4)));
        assert_eq!(p.label(s(30)), "Weighing the options");
        assert!(p.apply(&Signal::Phase(Phase::Generating), s(5)));
        assert_eq!(p.label(s(5)), "Writing…");
    }

    #[test]
    fn phase_changes_are_kept_only_when_asked() {
        let mut p = Progress::new(Arc::from("r"), Arc::new(Ladder::default()));
        p.set_phase(Phase::Waiting, Duration::from_millis(1));
        assert!(p.take_phases().is_empty());
        p.keep_phases();
        p.set_phase(Phase::Thinking, Duration::from_millis(2));
        p.set_phase(Phase::Thinking, Duration::from_millis(3));
        p.set_phase(Phase::Done, Duration::from_millis(4));
        let kept: Vec<_> = p.take_phases().into_iter().map(|(ph, _)| ph).collect();
        assert_eq!(kept, [Phase::Waiting, Phase::Thinking, Phase::Done]);
    }

    #[test]
    fn sequence_numbers_grow_and_terminal_phases_stick() {
        let mut p = progress();
        let a = p.event(Duration::ZERO);
        let b = p.event(Duration::from_millis(1500));
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_eq!(b.elapsed_ms, 1500);
        assert!(p.set_phase(Phase::Done, Duration::from_secs(2)));
        assert!(!p.set_phase(Phase::Generating, Duration::from_secs(3)));
        let done = p.done(Duration::from_secs(3));
        assert_eq!(done.seq, 3);
        assert_eq!(done.timings.total_ms, 3000.0);
    }

    #[test]
    fn the_longest_silence_counts_from_the_request_to_the_end() {
        let mut p = progress();
        let s = Duration::from_millis;
        p.feedback(s(100));
        p.feedback(s(2100));
        p.feedback(s(2200));
        assert_eq!(p.milestones().first_feedback_ms, Some(100.0));
        assert_eq!(p.longest_silence(s(2300)), 2000.0);
        assert_eq!(p.longest_silence(s(9200)), 7000.0);
    }

    #[test]
    fn counters_and_first_token_follow_signals() {
        let mut p = progress();
        p.apply(
            &Signal::ReasoningDelta { chars: 4 },
            Duration::from_millis(10),
        );
        p.apply(&Signal::AnswerDelta { chars: 2 }, Duration::from_millis(20));
        p.apply(&Signal::AnswerDelta { chars: 3 }, Duration::from_millis(30));
        assert_eq!(p.counters().answer_chars, 5);
        assert_eq!(p.milestones().first_token_ms, Some(20.0));
        assert_eq!(p.milestones().first_reasoning_ms, Some(10.0));
    }

    #[test]
    fn a_tool_call_before_any_text_is_the_first_token() {
        let mut p = progress();
        let call = Signal::ToolCall { name: "f".into() };
        p.apply(&call, Duration::from_millis(15));
        p.apply(&Signal::AnswerDelta { chars: 2 }, Duration::from_millis(40));
        assert_eq!(p.milestones().first_token_ms, Some(15.0));
        assert_eq!(p.counters().tool_calls, 1);
    }
}
