//! Replayed reasoning cut into thinking steps at the recorded labels, without doubling headings.
//!
//! A capture keeps reasoning deltas and, apart from them, `Label` deltas: headings aloud read out
//! of that same reasoning (`**Heading**` lines, short first lines). So a label's text is usually
//! already in the reasoning, just before the label (the recorder writes a feed's reasoning first)
//! or in the reasoning delta right after it. Such a heading line is cut out of the text and
//! becomes the step's heading, which each api then writes in its own style; a label that is not
//! in the text starts a step with that heading where it arrived.
//!
//! **Invariant:** the step texts plus their headings hold every recorded reasoning byte except the
//! heading lines and the whitespace around step breaks; offsets never decrease.

use super::script::Step;

/// One recorded thinking delta, its offset already counted from the start of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Reasoning { at: u64, text: String },
    Label { at: u64, text: String },
}

/// A reasoning delta's place in the joined reasoning text.
struct Chunk {
    start: usize,
    at: u64,
}

/// Where a step starts: its heading line spans `pos..body`, its text starts at `body`.
struct Break {
    pos: usize,
    body: usize,
    heading: String,
    at: u64,
}

/// The steps, and the offset of each piece of `Script::think_pieces()` (headings included).
pub fn steps(pieces: &[Piece]) -> (Vec<Step>, Vec<u64>) {
    let mut text = String::new();
    let mut chunks = Vec::new();
    // (reasoning bytes before the label, end of its search window, offset, label)
    let mut labels = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        match piece {
            Piece::Reasoning { at, text: t } => {
                chunks.push(Chunk {
                    start: text.len(),
                    at: *at,
                });
                text.push_str(t);
            }
            Piece::Label { at, text: label } => {
                let next = pieces.iter().skip(i + 1).find_map(|p| match p {
                    Piece::Reasoning { text, .. } => Some(text.len()),
                    Piece::Label { .. } => None,
                });
                let window = text.len() + next.unwrap_or(0);
                labels.push((text.len(), window, *at, label.trim()));
            }
        }
    }
    let mut breaks: Vec<Break> = Vec::new();
    let mut floor = 0;
    for (before, window, at, label) in labels {
        if label.is_empty() {
            continue;
        }
        let found = find_heading(&text, label, floor, window).map(|(pos, body)| Break {
            pos,
            body,
            heading: label.to_owned(),
            at: chunk_at(&chunks, pos),
        });
        let b = found.unwrap_or_else(|| {
            let pos = before.max(floor);
            Break {
                pos,
                body: pos,
                heading: label.to_owned(),
                at,
            }
        });
        floor = b.body;
        breaks.push(b);
    }
    assemble(&text, &chunks, &breaks)
}

/// Builds the steps from the breaks; offsets are made non-decreasing.
fn assemble(text: &str, chunks: &[Chunk], breaks: &[Break]) -> (Vec<Step>, Vec<u64>) {
    let mut steps = Vec::new();
    let mut offsets = Vec::new();
    let mut push = |heading: &str, heading_at: Option<u64>, from: usize, to: usize| {
        let words = cut(text, chunks, from, to);
        let at = heading_at
            .or_else(|| words.first().map(|w| w.0))
            .unwrap_or(0);
        offsets.push(at);
        offsets.extend(words.iter().map(|w| w.0));
        steps.push(Step {
            heading: heading.to_owned(),
            words: words.into_iter().map(|w| w.1).collect(),
        });
    };
    let first = breaks.first().map_or(text.len(), |b| b.pos);
    if text.get(..first).is_some_and(|t| !t.trim().is_empty()) {
        push("", None, 0, first);
    }
    for (k, b) in breaks.iter().enumerate() {
        let end = breaks.get(k + 1).map_or(text.len(), |n| n.pos);
        push(&b.heading, Some(b.at), b.body, end.max(b.body));
    }
    let mut latest = 0;
    for at in &mut offsets {
        latest = latest.max(*at);
        *at = latest;
    }
    (steps, offsets)
}

/// The offset of the reasoning delta holding byte `pos`.
fn chunk_at(chunks: &[Chunk], pos: usize) -> u64 {
    chunks
        .iter()
        .rev()
        .find(|c| c.start <= pos)
        .map_or(0, |c| c.at)
}

/// The text in `from..to` without its outer whitespace, as (offset, piece) in delta order.
fn cut(text: &str, chunks: &[Chunk], from: usize, to: usize) -> Vec<(u64, String)> {
    let Some(span) = text.get(from..to) else {
        return Vec::new();
    };
    let from = from + (span.len() - span.trim_start().len());
    let to = from + span.trim().len();
    let mut out = Vec::new();
    for (j, c) in chunks.iter().enumerate() {
        let end = chunks.get(j + 1).map_or(text.len(), |n| n.start);
        let (x, y) = (c.start.max(from), end.min(to));
        if let Some(piece) = text.get(x..y).filter(|_| x < y) {
            out.push((c.at, piece.to_owned()));
        }
    }
    out
}

/// The last heading line for `label` that starts in `floor..window`: the label alone on its
/// line after optional markdown markers (`**`, `#`), or bold and followed by more text. Returns
/// the line's start and where the text after it (and after its whitespace) starts.
fn find_heading(text: &str, label: &str, floor: usize, window: usize) -> Option<(usize, usize)> {
    let hay = text.get(floor..window.min(text.len()))?;
    hay.rmatch_indices(label).find_map(|(rel, _)| {
        let p = floor + rel;
        let line = text.get(..p)?.rfind('\n').map_or(0, |i| i + 1).max(floor);
        let prefix = text.get(line..p)?;
        if !prefix
            .chars()
            .all(|c| matches!(c, '*' | '_' | '#' | ' ' | '\t'))
        {
            return None;
        }
        let rest = text.get(p + label.len()..)?;
        let after = rest.trim_start_matches(['*', '_']);
        let bold = after.len() < rest.len() && prefix.contains(['*', '_']);
        let line_end = after.trim_start_matches([' ', '\t', ':']);
        if !(bold || line_end.is_empty() || line_end.starts_with(['\n', '\r'])) {
            return None;
        }
        let tail = after.trim_start_matches(|c: char| c == ':' || c.is_whitespace());
        Some((line, text.len() - tail.len()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(at: u64, text: &str) -> Piece {
        Piece::Reasoning {
            at,
            text: text.to_owned(),
        }
    }

    fn l(at: u64, text: &str) -> Piece {
        Piece::Label {
            at,
            text: text.to_owned(),
        }
    }

    fn headings(steps: &[Step]) -> Vec<&str> {
        steps.iter().map(|s| s.heading.as_str()).collect()
    }

    #[test]
    fn bold_heading_before_its_label_is_cut_out() {
        let (steps, at) = steps(&[
            r(10, "**Plan"),
            r(20, "ning**\n\n"),
            l(20, "Planning"),
            r(30, "First"),
            r(40, " step.\n\n**Check**\n\nAll"),
            l(40, "Check"),
            r(50, " good."),
        ]);
        assert_eq!(headings(&steps), ["Planning", "Check"]);
        assert_eq!(steps[0].words, ["First", " step."]);
        assert_eq!(steps[1].words, ["All", " good."]);
        assert_eq!(at, [10, 30, 40, 40, 40, 50]);
    }

    #[test]
    fn label_before_a_delta_starting_with_it_is_not_doubled() {
        let (steps, at) = steps(&[
            l(5, "Reading the question"),
            r(7, "Reading the question\nThe user"),
            r(9, " asks."),
        ]);
        assert_eq!(headings(&steps), ["Reading the question"]);
        assert_eq!(steps[0].words, ["The user", " asks."]);
        assert_eq!(at, [7, 7, 9]);
    }

    #[test]
    fn label_not_in_the_text_starts_a_step_where_it_arrived() {
        let (steps, at) = steps(&[
            r(1, "Some thoughts."),
            l(4, "Elsewhere"),
            r(6, " More thoughts."),
        ]);
        assert_eq!(headings(&steps), ["", "Elsewhere"]);
        assert_eq!(steps[0].words, ["Some thoughts."]);
        assert_eq!(steps[1].words, ["More thoughts."]);
        assert_eq!(at, [1, 1, 4, 6]);
    }

    #[test]
    fn prose_mentioning_the_label_is_not_a_heading() {
        let (steps, _) = steps(&[r(1, "I should check the plan"), l(2, "check the plan")]);
        assert_eq!(headings(&steps), ["", "check the plan"]);
        assert_eq!(steps[0].words, ["I should check the plan"]);
    }

    #[test]
    fn no_labels_one_plain_step() {
        let (steps, at) = steps(&[r(3, "a"), r(8, " b")]);
        assert_eq!(headings(&steps), [""]);
        assert_eq!(at, [3, 3, 8]);
        assert!(super::steps(&[]).0.is_empty());
    }
}
