//! Eval datasets and metadata tables from capture records: chat fine-tuning JSONL, openai/evals
//! samples, Inspect AI samples and CSV, written one record at a time to a writer it is handed.
//!
//! **Invariant:** streaming and pure: one record in, at most one line out, nothing collected;
//! no I/O but the `Write` given to [`Exporter::new`].
//!
//! Dataset formats (all but CSV) skip, and count, records that did not end whole (`outcome`
//! other than `ok`, `partial`, or bodies `truncated` to the stored size), that have no usable
//! request messages, or that have no answer
//! (for `openai-evals` and `inspect`, no answer text: their target is a string).

mod csv;
mod jsonl;
pub mod messages;

use std::io::{self, Write};

use serde::Serialize;

use crate::capture::record::CaptureRecord;

pub use messages::{Conversation, Message, Role, conversation};

/// The export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// OpenAI chat fine-tuning: `{"messages": [..., {"role": "assistant", ...}]}`.
    ChatJsonl,
    /// openai/evals samples: `{"input": [messages], "ideal": answer}`.
    OpenAiEvals,
    /// Inspect AI samples: `{"input", "target", "id", "metadata"}`.
    Inspect,
    /// One row of metadata per record, with a header row.
    Csv,
}

impl Format {
    pub const ALL: [Format; 4] = [
        Format::ChatJsonl,
        Format::OpenAiEvals,
        Format::Inspect,
        Format::Csv,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::ChatJsonl => "chat-jsonl",
            Format::OpenAiEvals => "openai-evals",
            Format::Inspect => "inspect",
            Format::Csv => "csv",
        }
    }

    pub fn parse(text: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == text)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a record was left out of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The exchange did not end whole (an error, timeout, disconnect, partial response), or its
    /// bodies were truncated when stored.
    Incomplete,
    /// No request body, or none this crate can read as a conversation.
    NoMessages,
    NoAnswer,
}

/// What an export did, by record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExportCounts {
    pub written: u64,
    pub skipped: u64,
    pub skipped_incomplete: u64,
    pub skipped_no_messages: u64,
    pub skipped_no_answer: u64,
}

impl ExportCounts {
    fn skip(&mut self, why: Skip) {
        self.skipped += 1;
        match why {
            Skip::Incomplete => self.skipped_incomplete += 1,
            Skip::NoMessages => self.skipped_no_messages += 1,
            Skip::NoAnswer => self.skipped_no_answer += 1,
        }
    }
}

/// A sentence for people: "wrote 14 records, skipped 9: 5 incomplete, 4 without an answer".
impl std::fmt::Display for ExportCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = if self.written == 1 { "" } else { "s" };
        write!(f, "wrote {} record{plural}", self.written)?;
        if self.skipped == 0 {
            return Ok(());
        }
        write!(f, ", skipped {}", self.skipped)?;
        let reasons = [
            (self.skipped_incomplete, "incomplete"),
            (self.skipped_no_messages, "without messages"),
            (self.skipped_no_answer, "without an answer"),
        ];
        let mut sep = ": ";
        for (n, why) in reasons.into_iter().filter(|(n, _)| *n > 0) {
            write!(f, "{sep}{n} {why}")?;
            sep = ", ";
        }
        Ok(())
    }
}

#[cfg(test)]
#[test]
fn counts_read_as_a_sentence() {
    let counts = ExportCounts {
        written: 14,
        skipped: 9,
        skipped_incomplete: 5,
        skipped_no_messages: 0,
        skipped_no_answer: 4,
    };
    assert_eq!(
        counts.to_string(),
        "wrote 14 records, skipped 9: 5 incomplete, 4 without an answer"
    );
    let one = ExportCounts {
        written: 1,
        ..ExportCounts::default()
    };
    assert_eq!(one.to_string(), "wrote 1 record");
}

/// Writes records in one format. Each record is built whole in a buffer and written with one
/// `write_all`, so a failed record never leaves half a line.
pub struct Exporter<'w> {
    format: Format,
    out: &'w mut dyn Write,
    counts: ExportCounts,
    header_written: bool,
    line: Vec<u8>,
}

impl<'w> Exporter<'w> {
    pub fn new(format: Format, out: &'w mut dyn Write) -> Exporter<'w> {
        Exporter {
            format,
            out,
            counts: ExportCounts::default(),
            header_written: false,
            line: Vec::new(),
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Writes the CSV header row (JSONL formats have none). Called by the first `write` or by
    /// `finish` if not before; a second call does nothing.
    pub fn write_header(&mut self) -> io::Result<()> {
        if self.header_written {
            return Ok(());
        }
        self.header_written = true;
        if self.format == Format::Csv {
            self.line.clear();
            csv::header(&mut self.line);
            self.out.write_all(&self.line)?;
        }
        Ok(())
    }

    /// Writes one record: `Ok(true)` when written, `Ok(false)` when skipped (see [`Skip`]).
    pub fn write(&mut self, record: &CaptureRecord) -> io::Result<bool> {
        self.write_header()?;
        self.line.clear();
        let built = match self.format {
            Format::Csv => {
                csv::row(record, &mut self.line);
                Ok(())
            }
            Format::ChatJsonl => jsonl::chat(record).map(|v| push_json_line(&mut self.line, &v)),
            Format::OpenAiEvals => jsonl::evals(record).map(|v| push_json_line(&mut self.line, &v)),
            Format::Inspect => jsonl::inspect(record).map(|v| push_json_line(&mut self.line, &v)),
        };
        match built {
            Ok(()) => {
                self.out.write_all(&self.line)?;
                self.counts.written += 1;
                Ok(true)
            }
            Err(why) => {
                self.counts.skip(why);
                Ok(false)
            }
        }
    }

    pub fn counts(&self) -> ExportCounts {
        self.counts
    }

    /// Writes the header if nothing was written yet, flushes, and returns the counts.
    pub fn finish(mut self) -> io::Result<ExportCounts> {
        self.write_header()?;
        self.out.flush()?;
        Ok(self.counts)
    }
}

fn push_json_line(line: &mut Vec<u8>, value: &serde_json::Value) {
    // `Value`'s Display is its compact JSON and cannot fail.
    line.extend_from_slice(value.to_string().as_bytes());
    line.push(b'\n');
}

#[cfg(test)]
mod tests;
