//! Redacting a whole capture record. The answer and reasoning are redacted whole and their
//! deltas' offsets move with the text, so a secret split across stream chunks is replaced as one
//! and no delta holds a piece of it. Labels (and deltas of older records, which kept their text)
//! are redacted one by one and then cleared of any piece of a secret found in the whole texts: a
//! label cut short at its length bound, or taken from one chunk, can end inside a secret. When
//! redaction decodes `\u` escapes in a text, the offsets move with the decoding as well.

use std::borrow::Cow;

use serde_json::Value;

use super::{Edit, Put, Redactor};
use crate::capture::record::{CaptureRecord, Delta, DeltaKind};
use crate::store::Entry;

/// Pieces of a found secret shorter than this (in bytes) are left in labels and older text
/// deltas: two characters say nothing, and matching them would blank ordinary words.
const MIN_PIECE: usize = 3;

/// A secret found in the answer or reasoning, with the marker it became.
type Found = (String, &'static str);

impl Redactor {
    /// Redacts an entry before it is stored or spilled: a record whole (`redact_record`), a
    /// feedback's label and comment, and any text in a client's timings (what a browser sends
    /// is the user's to type, and may hold anything a request may).
    pub fn redact_entry(&self, entry: &mut Entry) {
        match entry {
            Entry::Record(record) => self.redact_record(record),
            Entry::Feedback(f) => {
                for text in [f.label.as_mut(), f.comment.as_mut()].into_iter().flatten() {
                    self.redact_string(text);
                }
            }
            Entry::ClientTimings(t) => self.redact_json(&mut t.timings),
        }
    }

    /// Redacts everything in a record that came from a client or upstream: the path (and a
    /// query, should one be there), request, response text and reasoning (moving the deltas'
    /// offsets with them), tool-call arguments and body, labels, older text deltas and error.
    pub fn redact_record(&self, record: &mut CaptureRecord) {
        if self.untouched(record) {
            // Nothing to replace (`clean.rs`); span deltas are kept as the full pass keeps them.
            drop_empty_spans(&mut record.deltas);
            return;
        }
        self.redact_record_whole(record);
    }

    /// [`Redactor::redact_record`] without the check for a record it leaves as it is.
    pub(super) fn redact_record_whole(&self, record: &mut CaptureRecord) {
        let path = match record.path.split_once('?') {
            Some((p, q)) => {
                format!("{}?{}", self.redact_str(p), self.redact_query(q))
            }
            None => self.redact_str(&record.path).into_owned(),
        };
        record.path = path;
        if let Some(request) = record.request.as_mut() {
            self.redact_json(request.tree_mut());
        }
        let mut found: Vec<Found> = Vec::new();
        let deltas = &mut record.deltas;
        if let Some(response) = record.response.as_mut() {
            self.redact_spans(&mut response.text, deltas, DeltaKind::Answer, &mut found);
            let reasoning = &mut response.reasoning;
            self.redact_spans(reasoning, deltas, DeltaKind::Reasoning, &mut found);
            for call in &mut response.tool_calls {
                if let Cow::Owned(o) = self.redact_arguments(&call.arguments) {
                    call.arguments = o;
                }
            }
            if let Some(body) = response.body.as_mut() {
                self.redact_json(body.tree_mut());
            }
        }
        for delta in deltas.iter_mut() {
            if delta.is_span() {
                delta.text.clear();
            } else {
                self.redact_string(&mut delta.text);
                scrub(&mut delta.text, &found);
            }
        }
        drop_empty_spans(deltas);
        if let Some(error) = record.error.as_mut() {
            self.redact_string(error);
        }
    }

    /// Redacts `text` whole and moves the ends of `kind`'s span deltas with it: an end inside a
    /// replaced secret moves to the start of its marker, so the marker belongs to the delta
    /// during which the secret was completed. Secrets replaced are added to `found`.
    fn redact_spans(
        &self,
        text: &mut String,
        deltas: &mut [Delta],
        kind: DeltaKind,
        found: &mut Vec<Found>,
    ) {
        let mut cuts = Vec::new();
        let mut last = 0;
        for d in deltas.iter().filter(|d| d.kind == kind && d.is_span()) {
            // Ends only grow; a record that says otherwise is read as if they did.
            last = d.end.unwrap_or(0).min(text.len()).max(last);
            cuts.push(last);
        }
        // A pass that decoded `\u` escapes (`Put::Char`) moves the cuts like any other and
        // finds no secret; the pass over the decoded text that follows does. Its secrets are
        // found as written too, escapes and all: labels are cut from the text as it came, and a
        // label cut inside an escaped secret (`dave\u0040exa…`) holds a piece of that form.
        let mut escaped: Option<(String, Vec<Edit>)> = None;
        let redacted = self.redact_passes(text, |input, edits| {
            if edits.iter().any(|e| matches!(e.put, Put::Char(_))) {
                escaped = Some((input.to_owned(), edits.to_vec()));
            } else {
                for e in edits {
                    let (Put::Marker(marker), Some(secret)) = (e.put, input.get(e.start..e.end))
                    else {
                        continue;
                    };
                    found.push((secret.to_owned(), marker));
                    if let Some((raw, escapes)) = &escaped {
                        let (start, end) = (undecoded(escapes, e.start), undecoded(escapes, e.end));
                        if let Some(written) = raw.get(start..end).filter(|w| *w != secret) {
                            found.push((written.to_owned(), marker));
                        }
                    }
                }
                escaped = None;
            }
            move_cuts(&mut cuts, edits);
        });
        let Some(redacted) = redacted else {
            return;
        };
        *text = redacted;
        let spans = deltas.iter_mut().filter(|d| d.kind == kind && d.is_span());
        for (d, cut) in spans.zip(cuts) {
            d.end = Some(cut);
        }
    }

    /// Tool-call arguments are JSON text: scanned as JSON when they parse (so credential-named
    /// members are caught) and re-serialised only when something changed.
    fn redact_arguments<'a>(&self, arguments: &'a str) -> Cow<'a, str> {
        match serde_json::from_str::<Value>(arguments) {
            Ok(parsed) => {
                let mut redacted = parsed.clone();
                self.scan_json(&mut redacted);
                if redacted == parsed {
                    Cow::Borrowed(arguments)
                } else {
                    Cow::Owned(redacted.to_string())
                }
            }
            Err(_) => self.redact_str(arguments),
        }
    }
}

/// Moves offsets (ascending) in a pass's input to the same places in its output. `edits` are
/// sorted and do not overlap; an offset strictly inside one moves to the start of what replaced
/// it (a marker, or the character an escape cut in two stands for).
fn move_cuts(cuts: &mut [usize], edits: &[Edit]) {
    let mut edits = edits.iter().peekable();
    // Bytes added (marker longer) minus bytes removed by the edits passed so far.
    let (mut added, mut removed) = (0usize, 0usize);
    for cut in cuts.iter_mut() {
        while let Some(e) = edits.next_if(|e| e.end <= *cut) {
            added += e.put.len();
            removed += e.end - e.start;
        }
        let at = match edits.peek() {
            Some(e) if e.start < *cut => e.start,
            _ => *cut,
        };
        *cut = (at + added).saturating_sub(removed);
    }
}

/// Where byte `at` of a decoded text was before `escapes` (sorted) were decoded: past every
/// escape that decoded to a character before it.
fn undecoded(escapes: &[Edit], at: usize) -> usize {
    let mut shift = 0;
    for e in escapes {
        // `e.start - shift` is where the escape's character sits in the decoded text.
        if e.start - shift >= at {
            break;
        }
        shift += (e.end - e.start) - e.put.len();
    }
    at + shift
}

/// Removes span deltas that redaction left empty (their whole piece moved into a marker that
/// a later delta holds).
fn drop_empty_spans(deltas: &mut Vec<Delta>) {
    let (mut answer, mut reasoning) = (0, 0);
    deltas.retain(|d| {
        let last = match (d.kind, d.end) {
            (DeltaKind::Answer, Some(_)) => &mut answer,
            (DeltaKind::Reasoning, Some(_)) => &mut reasoning,
            _ => return true,
        };
        let end = d.end.unwrap_or(0);
        let keep = end > *last;
        *last = end.max(*last);
        keep
    });
}

/// Replaces what `text` holds of a found secret: all of it when it lies inside one, a tail that
/// begins one, a head that ends one. A label's closing "…" (its length bound) is kept.
fn scrub(text: &mut String, found: &[Found]) {
    for (secret, marker) in found {
        if text.len() < MIN_PIECE {
            return;
        }
        let (body, ellipsis) = match text.strip_suffix('…') {
            Some(body) => (body, "…"),
            None => (text.as_str(), ""),
        };
        let secret = collapse_spaces(secret);
        let scrubbed = if body.len() >= MIN_PIECE && secret.contains(body) {
            Some(format!("{marker}{ellipsis}"))
        } else if let Some(n) = longest(&secret, |piece| body.ends_with(piece), true) {
            let kept = body.get(..body.len() - n).unwrap_or_default();
            Some(format!("{kept}{marker}{ellipsis}"))
        } else {
            longest(&secret, |piece| body.starts_with(piece), false).map(|n| {
                let kept = body.get(n..).unwrap_or_default();
                format!("{marker}{kept}{ellipsis}")
            })
        };
        if let Some(s) = scrubbed {
            *text = s;
        }
    }
}

/// The length of the longest prefix (`head`) or suffix of `secret`, at least [`MIN_PIECE`]
/// bytes and shorter than the secret, for which `holds` is true.
fn longest(secret: &str, holds: impl Fn(&str) -> bool, head: bool) -> Option<usize> {
    let cuts = secret.char_indices().map(|(i, _)| i).skip(1);
    let mut pieces: Vec<&str> = cuts
        .filter_map(|i| {
            if head {
                secret.get(..i)
            } else {
                secret.get(i..)
            }
        })
        .filter(|p| p.len() >= MIN_PIECE)
        .collect();
    pieces.sort_by_key(|p| std::cmp::Reverse(p.len()));
    pieces.into_iter().find(|p| holds(p)).map(str::len)
}

/// Labels collapse whitespace runs to one space; a secret is compared with them the same way.
fn collapse_spaces(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_whitespace) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests;
