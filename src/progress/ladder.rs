//! Status texts a person would write, per phase, by time spent in the phase.

use crate::apis::stream::Phase;
use std::time::Duration;

/// One rung: from `after` in the phase on, show `text`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rung {
    pub after: Duration,
    pub text: String,
}

/// Rungs per phase, each list sorted by `after`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ladder {
    rungs: Vec<(Phase, Vec<Rung>)>,
}

fn rung(after_secs: u64, text: &str) -> Rung {
    Rung {
        after: Duration::from_secs(after_secs),
        text: text.to_owned(),
    }
}

impl Default for Ladder {
    fn default() -> Self {
        Ladder {
            rungs: vec![
                (Phase::Accepted, vec![rung(0, "Starting…")]),
                (
                    Phase::Connecting,
                    vec![
                        rung(0, "Contacting the model…"),
                        rung(5, "The model is slow to answer…"),
                    ],
                ),
                (
                    Phase::Queued,
                    vec![
                        rung(0, "Waiting in line…"),
                        rung(10, "Still waiting in line…"),
                    ],
                ),
                (
                    Phase::Waiting,
                    vec![
                        rung(0, "Working on it…"),
                        rung(3, "Thinking…"),
                        rung(10, "Still thinking — harder questions take longer"),
                        rung(25, "Almost there…"),
                    ],
                ),
                (
                    Phase::Thinking,
                    vec![
                        rung(0, "Thinking…"),
                        rung(8, "Still thinking — harder questions take longer"),
                        rung(20, "Almost there…"),
                    ],
                ),
                (
                    Phase::Tool,
                    vec![rung(0, "Using a tool…"), rung(10, "Still using a tool…")],
                ),
                (Phase::Generating, vec![rung(0, "Writing…")]),
                (Phase::Done, vec![rung(0, "Done")]),
                (Phase::Error, vec![rung(0, "Something went wrong")]),
            ],
        }
    }
}

impl Ladder {
    /// Replaces the rungs of `phase` (sorted here, so the config may list them in any order).
    pub fn set(&mut self, phase: Phase, mut rungs: Vec<Rung>) {
        rungs.sort_by_key(|r| r.after);
        match self.rungs.iter_mut().find(|(p, _)| *p == phase) {
            Some((_, existing)) => *existing = rungs,
            None => self.rungs.push((phase, rungs)),
        }
    }

    /// The text for `phase` after `in_phase` in it; `None` when the phase has no rung yet.
    pub fn text(&self, phase: Phase, in_phase: Duration) -> Option<&str> {
        let (_, rungs) = self.rungs.iter().find(|(p, _)| *p == phase)?;
        rungs
            .iter()
            .rev()
            .find(|r| r.after <= in_phase)
            .map(|r| r.text.as_str())
    }
}

/// The remaining time as a person would say it: "a few seconds", "8 s", "about 2 min".
pub fn remaining_text(remaining: Duration) -> String {
    let s = remaining.as_secs_f64();
    if s < 3.0 {
        "a few seconds left".to_owned()
    } else if s < 10.0 {
        format!("about {} s left", s.round() as u64)
    } else if s < 90.0 {
        format!("about {} s left", ((s / 5.0).round() * 5.0) as u64)
    } else {
        format!("about {} min left", (s / 60.0).round() as u64)
    }
}

impl Ladder {
    /// The phase's first text with the remaining time: "Thinking… about 8 s left". Used only
    /// while the estimator's recent error for the key is low (see docs/protocol.md).
    pub fn with_eta(&self, phase: Phase, remaining: Duration) -> String {
        let text = self.text(phase, Duration::ZERO).unwrap_or(phase.as_str());
        format!("{text} {}", remaining_text(remaining))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn climbs_with_time_in_phase() {
        let l = Ladder::default();
        assert_eq!(
            l.text(Phase::Thinking, Duration::from_secs(1)),
            Some("Thinking…")
        );
        assert_eq!(
            l.text(Phase::Thinking, Duration::from_secs(8)),
            Some("Still thinking — harder questions take longer")
        );
        assert_eq!(
            l.text(Phase::Thinking, Duration::from_secs(60)),
            Some("Almost there…")
        );
    }

    #[test]
    fn the_remaining_time_reads_like_a_person_wrote_it() {
        let l = Ladder::default();
        let s = Duration::from_secs_f64;
        assert_eq!(
            l.with_eta(Phase::Thinking, s(8.2)),
            "Thinking… about 8 s left"
        );
        assert_eq!(
            l.with_eta(Phase::Generating, s(1.0)),
            "Writing… a few seconds left"
        );
        assert_eq!(remaining_text(s(23.0)), "about 25 s left");
        assert_eq!(remaining_text(s(150.0)), "about 3 min left");
    }

    #[test]
    fn configured_rungs_replace_the_defaults() {
        let mut l = Ladder::default();
        l.set(
            Phase::Generating,
            vec![rung(2, "Still typing"), rung(0, "Typing")],
        );
        assert_eq!(l.text(Phase::Generating, Duration::ZERO), Some("Typing"));
        assert_eq!(
            l.text(Phase::Generating, Duration::from_secs(3)),
            Some("Still typing")
        );
    }
}
