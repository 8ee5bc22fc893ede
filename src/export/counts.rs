//! Why records were left out of an export, and what an export did, as numbers and as the
//! sentence `aloud export` prints ("wrote 14 records; skipped 9: 5 with images the format cannot
//! carry, 4 errors").

use serde::Serialize;

/// Why a record was left out. docs/export.md lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The exchange ended with an error, timeout, disconnect or shutdown (`outcome` not `ok`).
    Error,
    /// The response was cut short (`partial`).
    Partial,
    /// Bodies were truncated to the route's maximum stored size.
    Truncated,
    /// No request body, or none readable as a conversation.
    NoMessages,
    /// No answer at all.
    NoAnswer,
    /// The answer is tool calls only and the format's target is text.
    NoAnswerText,
    /// An image the format cannot carry (or one named by an uploaded file's id).
    Images,
    /// A tool result that answers no call in the conversation (OpenAI's format needs the link).
    UnlinkedToolResult,
    /// A tool call to a tool the request did not declare (OpenAI's format needs the tools).
    UndeclaredTool,
    /// `--dedupe`: the same normalised conversation was written before.
    Duplicate,
    /// `--skip-unreadable`: the stored record is not a record this aloud can read (damaged, or
    /// written by hand).
    Unreadable,
}

impl Skip {
    const ALL: [Skip; 11] = [
        Skip::Error,
        Skip::Partial,
        Skip::Truncated,
        Skip::NoMessages,
        Skip::NoAnswer,
        Skip::NoAnswerText,
        Skip::Images,
        Skip::UnlinkedToolResult,
        Skip::UndeclaredTool,
        Skip::Duplicate,
        Skip::Unreadable,
    ];

    /// The reason's name in `--json`-style output and docs/export.md.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Error => "error",
            Skip::Partial => "partial",
            Skip::Truncated => "truncated",
            Skip::NoMessages => "no_messages",
            Skip::NoAnswer => "no_answer",
            Skip::NoAnswerText => "no_answer_text",
            Skip::Images => "images",
            Skip::UnlinkedToolResult => "unlinked_tool_result",
            Skip::UndeclaredTool => "undeclared_tool",
            Skip::Duplicate => "duplicate",
            Skip::Unreadable => "unreadable",
        }
    }

    /// "4 errors", "5 with images the format cannot carry", ...
    fn phrase(self, n: u64) -> String {
        let s = if n == 1 { "" } else { "s" };
        match self {
            Skip::Error => format!("{n} error{s}"),
            Skip::Partial => format!("{n} cut short"),
            Skip::Truncated => format!("{n} with bodies truncated when stored"),
            Skip::NoMessages => format!("{n} without a readable request"),
            Skip::NoAnswer => format!("{n} without an answer"),
            Skip::NoAnswerText => {
                format!("{n} answered with tool calls only (the format needs text)")
            }
            Skip::Images => format!("{n} with images the format cannot carry"),
            Skip::UnlinkedToolResult => format!("{n} with a tool result that answers no call"),
            Skip::UndeclaredTool => format!("{n} calling a tool the request did not declare"),
            Skip::Duplicate => format!("{n} duplicate{s}"),
            Skip::Unreadable => format!("{n} unreadable in the database"),
        }
    }

    fn index(self) -> usize {
        self as usize // `ALL` is in declaration order
    }
}

/// What an export did, by record. `Display` is the sentence `aloud export` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportCounts {
    pub written: u64,
    pub skipped: u64,
    by_reason: [u64; Skip::ALL.len()],
}

impl ExportCounts {
    pub fn skip(&mut self, why: Skip) {
        self.skipped += 1;
        self.by_reason[why.index()] += 1;
    }

    /// How many were skipped for `why`.
    pub fn skipped_for(&self, why: Skip) -> u64 {
        self.by_reason[why.index()]
    }

    /// Adds another export's counts (one per split) into these.
    pub fn add(&mut self, other: &ExportCounts) {
        self.written += other.written;
        self.skipped += other.skipped;
        for (a, b) in self.by_reason.iter_mut().zip(other.by_reason) {
            *a += b;
        }
    }
}

/// `{"written": 14, "skipped": 9, "skipped_by_reason": {"images": 5, "error": 4}}`.
impl Serialize for ExportCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let reasons: std::collections::BTreeMap<&str, u64> = Skip::ALL
            .iter()
            .map(|r| (r.as_str(), self.skipped_for(*r)))
            .filter(|(_, n)| *n > 0)
            .collect();
        serde_json::json!({
            "written": self.written,
            "skipped": self.skipped,
            "skipped_by_reason": reasons,
        })
        .serialize(s)
    }
}

impl std::fmt::Display for ExportCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = if self.written == 1 { "" } else { "s" };
        write!(f, "wrote {} record{s}", self.written)?;
        if self.skipped == 0 {
            return Ok(());
        }
        let reasons: Vec<String> = Skip::ALL
            .iter()
            .filter(|r| self.skipped_for(**r) > 0)
            .map(|r| r.phrase(self.skipped_for(*r)))
            .collect();
        write!(f, "; skipped {}: {}", self.skipped, reasons.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_as_a_sentence() {
        let mut c = ExportCounts::default();
        assert_eq!(c.to_string(), "wrote 0 records");
        c.written = 14;
        for _ in 0..5 {
            c.skip(Skip::Images);
        }
        for _ in 0..4 {
            c.skip(Skip::Error);
        }
        assert_eq!(
            c.to_string(),
            "wrote 14 records; skipped 9: 4 errors, 5 with images the format cannot carry"
        );
        c.written = 1;
        let mut one = ExportCounts::default();
        one.skip(Skip::Duplicate);
        c.add(&one);
        assert!(c.to_string().starts_with("wrote 1 record; skipped 10: "));
        assert!(c.to_string().ends_with(", 1 duplicate"));
        assert_eq!(
            serde_json::to_value(c).unwrap()["skipped_by_reason"],
            serde_json::json!({"error": 4, "images": 5, "duplicate": 1})
        );
    }
}
