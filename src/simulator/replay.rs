//! Replay: a captured exchange turned back into a `Script` with its recorded pace and usage.
//!
//! Offsets in a record count from the request head; a script's count from the start of the
//! body, so the recorded `upstream_headers_ms` is taken off every offset and becomes the headers
//! delay instead. `x-sim-speed` divides all of them.
//!
//! **Invariant:** pure, like the rest of the script: the same record and request give the same
//! plan.

use super::errors::{Family, error_plan};
use super::headings::{self, Piece};
use super::knobs::Knobs;
use super::plan::Plan;
use super::script::{Counts, DEFAULT_MODEL, Script, Timeline};
use crate::apis::at::At;
use crate::capture::{CaptureRecord, DeltaKind, DeltaText};
use http::StatusCode;

/// Answer pace when a record has text but no timing for it.
pub const DEFAULT_TOKEN_MS: u64 = 30;

/// Turns recorded times into body offsets at the requested speed.
struct Clock {
    headers_ms: f64,
    speed_pct: u64,
}

impl Clock {
    fn new(record: &CaptureRecord, knobs: &Knobs) -> Self {
        let headers_ms = record
            .timings
            .upstream_headers_ms
            .filter(|v| v.is_finite())
            .unwrap_or(0.0)
            .max(0.0);
        Self {
            headers_ms,
            speed_pct: knobs.speed_pct.unwrap_or(100).max(1),
        }
    }

    /// A duration in ms at the requested speed.
    fn span(&self, ms: f64) -> u64 {
        if !ms.is_finite() || ms <= 0.0 {
            return 0;
        }
        (ms * 100.0 / self.speed_pct as f64).round() as u64
    }

    /// A recorded offset (from the request head) as a body offset.
    fn at(&self, ms: f64) -> u64 {
        self.span(ms - self.headers_ms)
    }

    /// The headers delay: `x-sim-headers-ms` when set, else the recorded one.
    fn headers(&self, knobs: &Knobs) -> u64 {
        match knobs.headers_ms {
            0 => self.span(self.headers_ms),
            set => set,
        }
    }
}

impl Script {
    /// The script of a captured exchange: its answer and reasoning at their recorded offsets,
    /// its model, usage and start time. `model` and `body_len` describe the replaying request
    /// and are used only where the record has nothing (no model, no input token count).
    pub fn from_record(
        record: &CaptureRecord,
        model: Option<&str>,
        body_len: usize,
        mut knobs: Knobs,
    ) -> Self {
        let clock = Clock::new(record, &knobs);
        // Texts first (spans are sliced in stored order), then in time order.
        let mut deltas: Vec<DeltaText<'_>> = record.delta_texts();
        deltas.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
        let timed = |d: &DeltaText<'_>| (clock.at(d.at_ms), d.text.to_owned());
        let mut answer: Vec<(u64, String)> = deltas
            .iter()
            .filter(|d| d.kind == DeltaKind::Answer)
            .map(timed)
            .collect();
        let mut thinking: Vec<Piece> = deltas
            .iter()
            .filter_map(|d| match d.kind {
                DeltaKind::Reasoning => Some(Piece::Reasoning {
                    at: clock.at(d.at_ms),
                    text: d.text.to_owned(),
                }),
                DeltaKind::Label => Some(Piece::Label {
                    at: clock.at(d.at_ms),
                    text: d.text.to_owned(),
                }),
                DeltaKind::Answer | DeltaKind::Tool => None,
            })
            .collect();
        let has_reasoning = thinking
            .iter()
            .any(|p| matches!(p, Piece::Reasoning { .. }));
        let timings = &record.timings;
        let reassembled = record.response.as_ref();
        if answer.is_empty() {
            let text = reassembled.map_or("", |r| r.text.as_str());
            let last_thought = thinking.iter().map(piece_at).max().unwrap_or(0);
            let start = timings.first_token_ms.map_or(last_thought, |t| clock.at(t));
            let words = split_words(text);
            let span = match (timings.first_token_ms, timings.done_ms) {
                (Some(first), Some(done)) if done > first => clock.span(done - first),
                _ => clock.span((DEFAULT_TOKEN_MS * words.len() as u64) as f64),
            };
            answer = spread(words, start, span);
        }
        let answer_start = answer.first().map(|a| a.0);
        if !has_reasoning {
            let text = reassembled.map_or("", |r| r.reasoning.as_str());
            let start = timings.first_reasoning_ms.map_or(0, |t| clock.at(t));
            let end = answer_start.unwrap_or(start).max(start);
            thinking = spread(split_words(text), start, end - start)
                .into_iter()
                .map(|(at, text)| Piece::Reasoning { at, text })
                .collect();
        }
        let (steps, mut think) = headings::steps(&thinking);
        let last_thought = think.last().copied().unwrap_or(0);
        let think_ms = answer_start.unwrap_or(last_thought);
        for at in &mut think {
            *at = (*at).min(think_ms);
        }
        let mut latest = think_ms;
        let answer_at: Vec<u64> = answer
            .iter()
            .map(|a| {
                latest = latest.max(a.0);
                latest
            })
            .collect();
        let end_ms = timings.done_ms.map_or(0, |t| clock.at(t)).max(latest);
        let counts = counts(record, &steps, &answer);
        let usage = record.usage.unwrap_or_default();
        knobs.headers_ms = clock.headers(&knobs);
        let model = record
            .model
            .as_deref()
            .or(model)
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .unwrap_or(DEFAULT_MODEL)
            .to_owned();
        Self {
            model,
            seed: knobs.seed.unwrap_or_else(|| seed_of(record)),
            created: u64::try_from(record.started_at_ms / 1000).unwrap_or(0),
            prompt_tokens: usage.input.unwrap_or((body_len as u64 / 4).max(1)),
            think_ms,
            token_ms: DEFAULT_TOKEN_MS,
            steps,
            answer: answer.into_iter().map(|a| a.1).collect(),
            knobs,
            timeline: Some(Timeline {
                think,
                answer: answer_at,
                end_ms,
            }),
            counts: Some(counts),
        }
    }
}

/// The recorded upstream error, as that status in `family`'s envelope; `None` for a success.
pub fn error(record: &CaptureRecord, family: Family, knobs: &Knobs) -> Option<Plan> {
    let code = match record.upstream_status {
        Some(code) if code < 400 => return None,
        Some(code) => code,
        // No upstream answer at all: what the client got, else a bad gateway.
        None if record.outcome == crate::capture::Outcome::Ok => return None,
        None => record.client_status.filter(|c| *c >= 400).unwrap_or(502),
    };
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers_ms = Clock::new(record, knobs).headers(knobs);
    Some(error_plan(
        family,
        status,
        headers_ms,
        &error_message(record),
    ))
}

/// The recorded error text, the upstream body's message, or a generic one.
fn error_message(record: &CaptureRecord) -> String {
    let body = record.response.as_ref().and_then(|r| r.body.as_ref());
    let body = body.map(|b| b.tree());
    let from_body = body.as_deref().and_then(|b| {
        b.at("/error/message")
            .or_else(|| b.get("error"))
            .and_then(serde_json::Value::as_str)
    });
    from_body
        .map(str::to_owned)
        .or_else(|| record.error.clone())
        .unwrap_or_else(|| "replayed upstream error".to_owned())
}

/// Recorded usage where there is some, counted words where not. Gemini's output count leaves
/// thoughts out; the others include them.
fn counts(
    record: &CaptureRecord,
    steps: &[super::script::Step],
    answer: &[(u64, String)],
) -> Counts {
    let words = |t: &str| t.split_whitespace().count() as u64;
    let thought: u64 = steps
        .iter()
        .map(|s| words(&s.heading) + s.words.iter().map(|w| words(w)).sum::<u64>())
        .sum();
    let answered: u64 = answer.iter().map(|a| words(&a.1)).sum();
    let usage = record.usage.unwrap_or_default();
    let reasoning = usage.reasoning.unwrap_or(thought);
    let answer = match usage.output {
        Some(output) if record.api == "gemini" => output,
        Some(output) => output.saturating_sub(reasoning),
        None => answered,
    };
    Counts { answer, reasoning }
}

fn piece_at(p: &Piece) -> u64 {
    match p {
        Piece::Reasoning { at, .. } | Piece::Label { at, .. } => *at,
    }
}

/// Pieces spread evenly over `span` from `start`: the first at `start`.
fn spread(words: Vec<String>, start: u64, span: u64) -> Vec<(u64, String)> {
    let n = words.len().max(1) as u64;
    words
        .into_iter()
        .enumerate()
        .map(|(i, w)| (start + span.saturating_mul(i as u64) / n, w))
        .collect()
}

/// Word tokens whose concatenation is `text`: each carries the whitespace before it.
pub fn split_words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    for c in text.chars() {
        if !c.is_whitespace() {
            in_word = true;
        } else if in_word {
            out.push(std::mem::take(&mut current));
            in_word = false;
        }
        current.push(c);
    }
    if !current.is_empty() {
        match out.last_mut() {
            Some(last) if !in_word => last.push_str(&current),
            _ => out.push(current),
        }
    }
    out
}

/// A stable seed from the record's id and attempt, so a replay's ids are the same every time.
fn seed_of(record: &CaptureRecord) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in record.id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^ u64::from(record.attempt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_every_byte() {
        for text in ["", "one", " two  words ", "a\n\nb.", "  "] {
            assert_eq!(split_words(text).concat(), text, "{text:?}");
        }
        assert_eq!(split_words("Hi there, you."), ["Hi", " there,", " you."]);
    }
}
