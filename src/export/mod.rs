//! Eval datasets and metadata tables from capture records: chat fine-tuning JSONL, openai/evals
//! samples, Inspect AI samples and CSV, rendered one record at a time.
//!
//! **Invariant:** pure: [`render`] turns one record (and its feedback) into at most one line,
//! and [`Exporter`] writes lines to the `Write` it is handed; the choices over many lines
//! (`--dedupe`, `--sample`, `--split`) are in [`select`]. docs/export.md describes every format,
//! field and skip reason.
//!
//! Dataset formats (all but CSV) skip, and count by reason ([`Skip`]), records that did not end
//! whole, have no readable conversation or answer, or hold what the format cannot carry.

mod counts;
mod csv;
mod inspect;
mod jsonl;
pub mod messages;
mod read;
pub mod select;
mod tools;

use std::io::{self, Write};

use crate::capture::record::CaptureRecord;
use crate::store::Feedback;

pub use counts::{ExportCounts, Skip};
pub use inspect::line_id;
pub use messages::{Conversation, Message, Part, Role, Tool, conversation};
pub use read::request_messages;
pub use tools::tools;

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

/// What a format can add beyond its defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `--reasoning`: the answer's reasoning as `reasoning_content` (chat-jsonl; Inspect always
    /// has it in its metadata).
    pub reasoning: bool,
    /// `--dedupe`: compute each line's [`Line::dedupe_key`].
    pub dedupe: bool,
}

impl Format {
    /// Whether `--reasoning` means anything for this format.
    pub fn takes_reasoning(self) -> bool {
        matches!(self, Format::ChatJsonl | Format::Inspect)
    }

    /// The file extension of its output.
    pub fn extension(self) -> &'static str {
        if self == Format::Csv { "csv" } else { "jsonl" }
    }
}

/// One rendered record.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// The traceable id: the request id, or `id#attempt` for a retry.
    pub id: String,
    /// The request id alone (what `--split` hashes).
    pub request_id: String,
    /// The line, ending in a newline (CRLF for CSV).
    pub bytes: Vec<u8>,
    /// With [`Options::dedupe`]: the normalised conversation (see `jsonl::dedupe_key`); `None`
    /// for a CSV row of a record without a readable conversation.
    pub dedupe_key: Option<String>,
}

/// The CSV header row; nothing for the JSONL formats.
pub fn header(format: Format) -> Vec<u8> {
    let mut out = Vec::new();
    if format == Format::Csv {
        csv::header(&mut out);
    }
    out
}

/// One record as a line of `format`, or why it is skipped.
pub fn render(
    format: Format,
    record: &CaptureRecord,
    feedback: Option<&Feedback>,
    options: Options,
) -> Result<Line, Skip> {
    let mut bytes = Vec::new();
    let conversation = match format {
        Format::Csv => {
            csv::row(record, feedback, &mut bytes);
            options.dedupe.then(|| messages::conversation(record))
        }
        Format::ChatJsonl => Some(push_json(
            &mut bytes,
            jsonl::chat(record, options.reasoning)?,
        )),
        Format::OpenAiEvals => Some(push_json(&mut bytes, jsonl::evals(record)?)),
        Format::Inspect => Some(push_json(&mut bytes, inspect::inspect(record, feedback)?)),
    };
    let dedupe_key = conversation
        .filter(|c| options.dedupe && !c.messages.is_empty())
        .map(|c| jsonl::dedupe_key(&c));
    Ok(Line {
        id: line_id(record),
        request_id: record.id.clone(),
        bytes,
        dedupe_key,
    })
}

fn push_json(line: &mut Vec<u8>, (value, c): (serde_json::Value, Conversation)) -> Conversation {
    // `Value`'s Display is its compact JSON and cannot fail.
    line.extend_from_slice(value.to_string().as_bytes());
    line.push(b'\n');
    c
}

/// Writes records in one format. Each record is built whole in a buffer and written with one
/// `write_all`, so a failed record never leaves half a line.
pub struct Exporter<'w> {
    format: Format,
    out: &'w mut dyn Write,
    options: Options,
    dedupe: Option<select::Dedupe>,
    counts: ExportCounts,
    header_written: bool,
}

impl<'w> Exporter<'w> {
    pub fn new(format: Format, out: &'w mut dyn Write) -> Exporter<'w> {
        Exporter::with_options(format, Options::default(), out)
    }

    pub fn with_options(format: Format, options: Options, out: &'w mut dyn Write) -> Exporter<'w> {
        Exporter {
            format,
            out,
            options,
            dedupe: options.dedupe.then(select::Dedupe::default),
            counts: ExportCounts::default(),
            header_written: false,
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
        self.out.write_all(&header(self.format))
    }

    /// Writes one record: `Ok(true)` when written, `Ok(false)` when skipped (see [`Skip`]).
    pub fn write(&mut self, record: &CaptureRecord) -> io::Result<bool> {
        self.write_with(record, None)
    }

    /// Writes one record with its feedback (joined into Inspect's metadata and CSV's columns).
    pub fn write_with(
        &mut self,
        record: &CaptureRecord,
        feedback: Option<&Feedback>,
    ) -> io::Result<bool> {
        self.write_header()?;
        let line = match render(self.format, record, feedback, self.options) {
            Ok(line) => line,
            Err(why) => {
                self.counts.skip(why);
                return Ok(false);
            }
        };
        if let (Some(dedupe), Some(key)) = (&mut self.dedupe, &line.dedupe_key)
            && !dedupe.first(key)
        {
            self.counts.skip(Skip::Duplicate);
            return Ok(false);
        }
        self.out.write_all(&line.bytes)?;
        self.counts.written += 1;
        Ok(true)
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

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_keep;
