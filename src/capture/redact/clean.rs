//! Whether redaction would leave a record as it is, found with one search: the record's texts
//! (strings and member names of its JSON, answer, reasoning, labels, path, error) joined by
//! newlines and matched once by the rule set, where the full redaction matches each on its own.
//! On a record with no secret in it (nearly all of them) that is most of redaction's cost.
//!
//! Exact, not a guess. A rule that matches a text on its own matches the joined texts too: the
//! match's own characters are there unchanged, and at its edges a word boundary (`\b`) or a
//! line anchor (`(?m)^`, `$`) sees a newline where the lone text had its start or end, which
//! those assertions read alike. Only those assertions are accepted (`joinable`): absolute
//! anchors (`^`, `$` without `m`, `\A`, `\z`) and CRLF-mode line anchors (`(?mR)`) read a
//! newline differently; the built-in rules have none, and a custom pattern with one turns the
//! joined search off. A match across a newline can only say "maybe": the full redaction then
//! runs, as it does whenever this check is not sure (escapes, credential-named members, card
//! integers, query strings, tool calls, JSON paths).

use regex_syntax::hir::Look;
use serde_json::Value;

use super::checks::is_card_integer;
use super::{Redactor, is_credential_name, unescape};
use crate::capture::record::{CaptureRecord, Doc};

/// Whether a pattern can be searched for in texts joined by newlines (see the module's doc).
/// A pattern that does not parse here is not.
pub(super) fn joinable(pattern: &str) -> bool {
    // Only the assertions known to read a joining newline as a text's edge: a kind
    // `regex-syntax` adds later turns the joined search off until it is read here. Left out:
    // absolute anchors, and CRLF-mode line anchors (`(?mR)`), which read a `\r` before the
    // joining newline as half of one line break (`x\r$` matches a lone `x\r`, not `x\r\n`).
    regex_syntax::parse(pattern).is_ok_and(|hir| {
        hir.properties().look_set().iter().all(|look| {
            matches!(
                look,
                Look::StartLF
                    | Look::EndLF
                    | Look::WordAscii
                    | Look::WordAsciiNegate
                    | Look::WordUnicode
                    | Look::WordUnicodeNegate
                    | Look::WordStartAscii
                    | Look::WordEndAscii
                    | Look::WordStartUnicode
                    | Look::WordEndUnicode
                    | Look::WordStartHalfAscii
                    | Look::WordEndHalfAscii
                    | Look::WordStartHalfUnicode
                    | Look::WordEndHalfUnicode
            )
        })
    })
}

impl Redactor {
    /// `true` when redacting `record` would replace nothing; `false` when it may (the full
    /// redaction then runs).
    pub(super) fn untouched(&self, record: &CaptureRecord) -> bool {
        if !self.joinable || !self.paths.is_empty() || record.path.contains('?') {
            return false;
        }
        let mut joined = Joined {
            text: String::with_capacity(1024),
            cards: self.cards,
        };
        joined.push(&record.path);
        if record.request.as_ref().is_some_and(|r| !joined.doc(r)) {
            return false;
        }
        if let Some(response) = &record.response {
            if !response.tool_calls.is_empty() {
                return false;
            }
            joined.push(&response.text);
            joined.push(&response.reasoning);
            if response.body.as_ref().is_some_and(|b| !joined.doc(b)) {
                return false;
            }
        }
        for delta in &record.deltas {
            // A span's text is cleared by redaction: one that has any is not left as it is.
            if delta.is_span() && !delta.text.is_empty() {
                return false;
            }
            joined.push(&delta.text);
        }
        if let Some(error) = &record.error {
            joined.push(error);
        }
        !unescape::has_escape(&joined.text) && !self.set.is_match(&joined.text)
    }
}

/// Texts joined by newlines.
struct Joined {
    text: String,
    cards: bool,
}

impl Joined {
    fn push(&mut self, text: &str) {
        self.text.push_str(text);
        self.text.push('\n');
    }

    /// `json` on a document's tree; a document with none (a text that does not parse) is not
    /// left as it is.
    fn doc(&mut self, doc: &Doc) -> bool {
        doc.parsed().is_some_and(|tree| self.json(&tree))
    }

    /// Adds a JSON value's strings and member names; `false` when something in it is redacted
    /// whatever its text (a card number as an integer, a credential-named member's value).
    fn json(&mut self, value: &Value) -> bool {
        match value {
            Value::String(s) => self.push(s),
            Value::Number(n) => return !(self.cards && is_card_integer(n)),
            Value::Array(items) => return items.iter().all(|item| self.json(item)),
            Value::Object(map) => {
                for (name, item) in map {
                    let scalar = matches!(item, Value::String(_) | Value::Number(_));
                    if scalar && is_credential_name(name) {
                        return false;
                    }
                    self.push(name);
                    if !self.json(item) {
                        return false;
                    }
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
        true
    }
}
