//! What the fake model says and when: thinking steps, answer tokens, pacing and usage, from a seed.
//!
//! **Invariant:** nothing here reads a clock or does I/O except `Script::new`'s choice of a
//! random seed and the wall-clock `created` when the request carried no `x-sim-seed`.

use super::knobs::Knobs;
use super::rng::Rng;
use std::time::{SystemTime, UNIX_EPOCH};

/// The model name used when the request names none.
pub const DEFAULT_MODEL: &str = "sim-reasoner";

/// 2026-01-01T00:00:00Z: seeded timestamps start here, so seeded bytes never depend on today.
const SEEDED_EPOCH: u64 = 1_767_225_600;

const HEADINGS: &[&str] = &[
    "Weighing the options",
    "Reading the question closely",
    "Checking the details",
    "Sketching an answer",
    "Considering edge cases",
    "Drafting the reply",
    "Double-checking the reasoning",
    "Planning the structure",
    "Comparing approaches",
    "Testing an assumption",
];

const WORDS: &[&str] = &[
    "the",
    "a",
    "model",
    "answer",
    "question",
    "careful",
    "simple",
    "result",
    "because",
    "which",
    "should",
    "could",
    "first",
    "then",
    "finally",
    "value",
    "reason",
    "clear",
    "useful",
    "point",
    "idea",
    "small",
    "large",
    "steady",
    "quick",
    "example",
    "detail",
    "step",
    "plan",
    "check",
    "case",
    "that",
    "this",
    "with",
    "without",
    "more",
    "less",
    "often",
    "rarely",
    "likely",
    "between",
    "around",
    "each",
    "every",
    "simulated",
    "request",
    "response",
    "token",
    "stream",
    "time",
    "wait",
    "progress",
    "is",
    "are",
    "was",
    "seems",
    "gives",
    "keeps",
    "shows",
    "holds",
];

/// One thinking step: a short heading line, then body words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Empty for a replayed step that had none (reasoning before the first heading).
    pub heading: String,
    /// Body pieces; generated ones all but the first start with a space, replayed ones are the
    /// recorded deltas as they came.
    pub words: Vec<String>,
}

/// Recorded offsets (ms from the start of the body) that replace the even pacing (replay).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// One offset per piece of `think_pieces()`, headings included, in order.
    pub think: Vec<u64>,
    /// One offset per answer token.
    pub answer: Vec<u64>,
    /// When the body ends (the last frames go out then).
    pub end_ms: u64,
}

/// Token counts that replace the counted ones (replay: from the record's usage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub answer: u64,
    pub reasoning: u64,
}

/// One piece of thinking in emission order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinkPiece<'a> {
    /// The first piece of step `index`: its heading (empty when the step has none).
    Heading { index: usize, heading: &'a str },
    /// A body word of the current step.
    Word(&'a str),
}

/// How a heading is written into a running thinking text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `Heading\n` (Anthropic, Ollama, chat `reasoning_content`).
    Plain,
    /// `**Heading**\n\n` (Gemini thoughts).
    Bold,
}

impl ThinkPiece<'_> {
    /// The piece as it goes into one running text: steps after the first open with a blank
    /// line, a missing heading is just that separator. Empty text means "send nothing".
    pub fn text(&self, style: Style) -> String {
        match *self {
            ThinkPiece::Word(w) => w.to_owned(),
            ThinkPiece::Heading { index, heading } => {
                let sep = if index == 0 { "" } else { "\n\n" };
                match (heading.is_empty(), style) {
                    (true, _) => sep.to_owned(),
                    (false, Style::Plain) => format!("{sep}{heading}\n"),
                    (false, Style::Bold) => format!("{sep}**{heading}**\n\n"),
                }
            }
        }
    }
}

/// Everything one simulated call says, and the timing of each piece.
#[derive(Debug, Clone)]
pub struct Script {
    pub model: String,
    pub(super) seed: u64,
    /// Unix seconds of the call's start.
    pub created: u64,
    pub prompt_tokens: u64,
    pub think_ms: u64,
    pub token_ms: u64,
    pub steps: Vec<Step>,
    /// Answer tokens in order; their concatenation is the answer text.
    pub answer: Vec<String>,
    pub knobs: Knobs,
    /// Recorded offsets overriding the even pacing (replay); `None` for generated scripts.
    pub timeline: Option<Timeline>,
    /// Recorded token counts overriding the counted ones (replay).
    pub counts: Option<Counts>,
}

impl Script {
    /// Plans a call for `model` (empty = default) whose request body had `body_len` bytes.
    pub fn new(model: Option<&str>, body_len: usize, knobs: Knobs) -> Self {
        let (seed, created) = match knobs.seed {
            Some(seed) => (seed, SEEDED_EPOCH + Rng::new(seed).range(0, 31_535_999)),
            None => {
                let (hi, lo) = uuid::Uuid::now_v7().as_u64_pair();
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(SEEDED_EPOCH, |d| d.as_secs());
                (hi ^ lo.rotate_left(17), now)
            }
        };
        let model = model
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .unwrap_or(DEFAULT_MODEL)
            .to_owned();
        let mut rng = Rng::new(seed ^ 0x5151_0000_0000_0001);
        let total_ms = rng.range(10_000, 25_000);
        let token_ms = knobs.token_ms.unwrap_or_else(|| rng.range(20, 40));
        let default_tokens = rng.range(60, 240);
        let tokens = knobs.tokens.unwrap_or_else(|| {
            let room = (total_ms - 4_000) / token_ms.max(1);
            default_tokens.min(room)
        });
        let think_ms = knobs
            .think_ms
            .unwrap_or_else(|| total_ms.saturating_sub(tokens.saturating_mul(token_ms)));
        let steps = thinking(&mut rng, think_ms);
        let answer = answer(&mut rng, &model, tokens);
        Self {
            model,
            seed,
            created,
            prompt_tokens: (body_len as u64 / 4).max(1),
            think_ms,
            token_ms,
            steps,
            answer,
            knobs,
            timeline: None,
            counts: None,
        }
    }

    /// A deterministic id of `n` characters; different `salt`s give independent ids.
    pub fn id(&self, salt: u64, n: usize) -> String {
        Rng::new(self.seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)).id(n)
    }

    /// Thinking pieces in order, with the offset (ms from the start of the body) of each.
    pub fn think_pieces(&self) -> Vec<(u64, ThinkPiece<'_>)> {
        let mut pieces = Vec::new();
        for (index, step) in self.steps.iter().enumerate() {
            pieces.push(ThinkPiece::Heading {
                index,
                heading: &step.heading,
            });
            pieces.extend(step.words.iter().map(|w| ThinkPiece::Word(w)));
        }
        let n = pieces.len() as u64;
        pieces
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let even = self.think_ms * (i as u64 + 1) / n.max(1);
                let at = match &self.timeline {
                    Some(t) => t.think.get(i).copied().unwrap_or(self.think_ms),
                    None => even,
                };
                (at, p)
            })
            .collect()
    }

    /// The offset (ms from the start of the body) at which answer token `i` is sent.
    pub fn answer_at(&self, i: usize) -> u64 {
        match &self.timeline {
            Some(t) => t.answer.get(i).copied().unwrap_or(t.end_ms),
            None => self
                .think_ms
                .saturating_add(self.token_ms.saturating_mul(i as u64 + 1)),
        }
    }

    /// How long the whole call takes once headers are out.
    pub fn total_ms(&self) -> u64 {
        match &self.timeline {
            Some(t) => t.end_ms,
            None => self
                .think_ms
                .saturating_add(self.token_ms.saturating_mul(self.answer.len() as u64)),
        }
    }

    /// Answer tokens sent before the connection drops, when `x-sim-fail-after` asks for a drop.
    pub fn fail_after(&self) -> Option<usize> {
        self.knobs
            .fail_after
            .map(|n| n as usize)
            .filter(|&n| n < self.answer.len())
    }

    /// Tokens spent thinking (heading words count one each), or the recorded count.
    pub fn thought_tokens(&self) -> u64 {
        if let Some(c) = self.counts {
            return c.reasoning;
        }
        self.steps
            .iter()
            .map(|s| (s.heading.split(' ').count() + s.words.len()) as u64)
            .sum()
    }

    /// Answer tokens sent (one per piece), or the recorded count.
    pub fn answer_tokens(&self) -> u64 {
        self.counts.map_or(self.answer.len() as u64, |c| c.answer)
    }

    pub fn answer_text(&self) -> String {
        self.answer.concat()
    }

    /// Step `i`'s text with a plain heading line (Anthropic, Ollama, chat reasoning_content).
    pub fn plain_step(&self, i: usize) -> String {
        self.steps
            .get(i)
            .map_or_else(String::new, |s| match s.heading.as_str() {
                "" => s.words.concat(),
                h => format!("{h}\n{}", s.words.concat()),
            })
    }

    /// Step `i`'s text with a bold heading (Responses summaries, Gemini thoughts).
    pub fn bold_step(&self, i: usize) -> String {
        self.steps
            .get(i)
            .map_or_else(String::new, |s| match s.heading.as_str() {
                "" => s.words.concat(),
                h => format!("**{h}**\n\n{}", s.words.concat()),
            })
    }

    /// All thinking as one plain text, steps apart by a blank line.
    pub fn plain_thinking(&self) -> String {
        (0..self.steps.len())
            .map(|i| self.plain_step(i))
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

/// Thinking grows with the think time: about one word per 50 ms, in up to six steps.
fn thinking(rng: &mut Rng, think_ms: u64) -> Vec<Step> {
    let words = (think_ms / 50).clamp(6, 600);
    let steps = (think_ms / 4_000 + 1).clamp(1, 6);
    let first = rng.range(0, HEADINGS.len() as u64 - 1) as usize;
    (0..steps)
        .map(|s| {
            let heading = HEADINGS
                .get((first + s as usize) % HEADINGS.len())
                .copied()
                .unwrap_or("Thinking");
            let n = words / steps;
            Step {
                heading: heading.to_owned(),
                words: sentence_words(rng, n, None),
            }
        })
        .collect()
}

/// Exactly `tokens` answer tokens, opening with the model's name.
fn answer(rng: &mut Rng, model: &str, tokens: u64) -> Vec<String> {
    sentence_words(rng, tokens, Some(model))
}

/// `n` pieces of pseudo-English: words with leading spaces, capitalised sentences, periods.
fn sentence_words(rng: &mut Rng, n: u64, model: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(model) = model {
        for piece in ["This", " is", " the", " simulated"] {
            out.push(piece.to_owned());
        }
        out.push(format!(" {model}"));
        out.push(" answering".to_owned());
        out.push(".".to_owned());
    }
    let mut since_period = 0u64;
    let mut sentence_len = rng.range(6, 14);
    while (out.len() as u64) < n {
        let start = out.is_empty() || out.last().is_some_and(|w| w == ".");
        if since_period >= sentence_len {
            out.push(".".to_owned());
            since_period = 0;
            sentence_len = rng.range(6, 14);
            continue;
        }
        let word = rng.pick(WORDS, "word");
        let word = if start {
            capitalise(word)
        } else {
            word.to_owned()
        };
        out.push(if out.is_empty() {
            word
        } else {
            format!(" {word}")
        });
        since_period += 1;
    }
    out.truncate(n as usize);
    out
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_uppercase().chain(chars).collect::<String>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeded(seed: u64) -> Knobs {
        Knobs {
            seed: Some(seed),
            ..Knobs::default()
        }
    }

    #[test]
    fn default_timing_is_ten_to_twentyfive_seconds() {
        for seed in 0..500 {
            let s = Script::new(None, 100, seeded(seed));
            let total = s.total_ms();
            assert!((10_000..=25_000).contains(&total), "seed {seed}: {total}");
            assert!((20..=40).contains(&s.token_ms));
            assert!(
                s.think_ms >= 4_000 - 40,
                "seed {seed}: think {}",
                s.think_ms
            );
        }
    }

    #[test]
    fn same_seed_same_script() {
        let a = Script::new(Some("m"), 10, seeded(9));
        let b = Script::new(Some("m"), 10, seeded(9));
        assert_eq!(a.answer, b.answer);
        assert_eq!(a.steps, b.steps);
        assert_eq!(a.created, b.created);
        assert_eq!(a.id(1, 20), b.id(1, 20));
        assert_ne!(a.id(1, 20), a.id(2, 20));
    }

    #[test]
    fn token_override_is_exact_and_mentions_model() {
        let k = Knobs {
            tokens: Some(12),
            ..seeded(3)
        };
        let s = Script::new(Some("my-model"), 10, k);
        assert_eq!(s.answer.len(), 12);
        assert!(s.answer_text().contains("my-model"));
        let k = Knobs {
            tokens: Some(0),
            ..seeded(3)
        };
        assert!(Script::new(None, 0, k).answer_text().is_empty());
    }

    #[test]
    fn think_pieces_spread_over_think_time() {
        let k = Knobs {
            think_ms: Some(8_000),
            ..seeded(5)
        };
        let s = Script::new(None, 10, k);
        let pieces = s.think_pieces();
        assert!(matches!(
            pieces.first(),
            Some((_, ThinkPiece::Heading { index: 0, .. }))
        ));
        assert_eq!(pieces.last().map(|p| p.0), Some(8_000));
        assert!(pieces.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(s.steps.len(), 3);
    }
}
