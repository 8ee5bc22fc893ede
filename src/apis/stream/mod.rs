//! Reading model streams: picks a dialect from (api, path, content type), frames the bytes (SSE,
//! NDJSON or a JSON array, optionally gunzipped) and turns records into [`Signal`]s.
//!
//! **Invariant:** pure and total — no I/O, no clocks, no panics; unknown events, bad JSON and
//! invalid UTF-8 are counted and skipped; every buffer has a bound from [`Limits`].

mod anthropic;
mod dialect;
mod gemini;
pub mod label;
mod ollama;
mod openai_chat;
mod request;
mod responses;
mod signal;
mod tally;

pub use dialect::Dialect;
pub use request::request_streams;
pub use signal::{Phase, Signal, UpstreamTimings, Usage};
pub use tally::{Counters, Reassembly, Summary, ToolCallRecord, set_once, tool_id};

use crate::apis::Api;
use crate::sse::{GzipDecoder, JsonArraySplitter, LineSplitter, Record, SseDecoder, SseItem};
use tally::Tally;

/// Memory bounds for one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// One SSE event, NDJSON line or JSON array element.
    pub max_event: usize,
    /// Each reassembled text (answer, reasoning, one tool call's arguments).
    pub max_text: usize,
    /// Total decompressed bytes of a gzip body.
    pub max_decoded: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event: 1 << 20,
            max_text: 1 << 20,
            max_decoded: 64 << 20,
        }
    }
}

/// What feeding one chunk produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub signals: Vec<Signal>,
    /// Offsets in the chunk where a line may be injected (SSE dialects, identity encoding only).
    pub boundaries: Vec<usize>,
}

#[derive(Debug)]
enum Framing {
    Sse(SseDecoder),
    Lines(LineSplitter),
    Array(JsonArraySplitter),
    Off,
}

#[derive(Debug)]
enum Reader {
    Chat(openai_chat::OpenAiChat),
    Responses(responses::Responses),
    Anthropic(anthropic::Anthropic),
    Gemini(gemini::Gemini),
    Ollama(ollama::Ollama),
    Off,
}

/// One response stream's interpreter.
#[derive(Debug)]
pub struct StreamInterpreter {
    dialect: Option<Dialect>,
    framing: Framing,
    reader: Reader,
    tally: Tally,
    /// Boxed: a gzip body is rare, and every waiting stream keeps its interpreter.
    gzip: Option<Box<GzipDecoder>>,
    /// The body said gzip and was not: the upstream's response is corrupt.
    gzip_failed: bool,
    /// The path names a model api whose streams always end with a marker or a finish reason
    /// (see [`Dialect::marks_end`]).
    marked_end: bool,
    limits: Limits,
}

impl StreamInterpreter {
    pub fn new(api: Api, path_and_query: &str, content_type: &str) -> Self {
        Self::with_dialect(
            Dialect::detect(api, path_and_query, content_type),
            Limits::default(),
        )
        .with_end_for(path_and_query)
    }

    /// Expects the end marker of a generation endpoint when `path_and_query` names one.
    pub fn with_end_for(mut self, path_and_query: &str) -> Self {
        self.marked_end = self.dialect.is_some() && Dialect::marks_end(path_and_query);
        self
    }

    pub fn with_dialect(dialect: Option<Dialect>, limits: Limits) -> Self {
        let max = limits.max_event;
        let (framing, reader) = match dialect {
            Some(Dialect::OpenAiChat) => (
                Framing::Sse(SseDecoder::new(max)),
                Reader::Chat(Default::default()),
            ),
            Some(Dialect::OpenAiResponses) => (
                Framing::Sse(SseDecoder::new(max)),
                Reader::Responses(Default::default()),
            ),
            Some(Dialect::Anthropic) => (
                Framing::Sse(SseDecoder::new(max)),
                Reader::Anthropic(Default::default()),
            ),
            Some(Dialect::GeminiSse) => (
                Framing::Sse(SseDecoder::new(max)),
                Reader::Gemini(Default::default()),
            ),
            Some(Dialect::GeminiJsonArray) => (
                Framing::Array(JsonArraySplitter::new(max)),
                Reader::Gemini(Default::default()),
            ),
            Some(Dialect::OllamaNdjson) => (
                Framing::Lines(LineSplitter::new(max)),
                Reader::Ollama(Default::default()),
            ),
            None => (Framing::Off, Reader::Off),
        };
        StreamInterpreter {
            dialect,
            framing,
            reader,
            tally: Tally::new(limits.max_text),
            gzip: None,
            gzip_failed: false,
            marked_end: false,
            limits,
        }
    }

    /// Reads the body through a bounded gunzip when the upstream's `content-encoding` is gzip.
    /// Compressed bodies report no injection boundaries.
    pub fn with_content_encoding(mut self, encoding: Option<&str>) -> Self {
        let gzip = encoding.is_some_and(|e| {
            let e = e.trim();
            e.eq_ignore_ascii_case("gzip") || e.eq_ignore_ascii_case("x-gzip")
        });
        self.gzip = gzip.then(|| Box::new(GzipDecoder::new(self.limits.max_decoded)));
        self
    }

    pub fn dialect(&self) -> Option<Dialect> {
        self.dialect
    }

    /// Whether the body's content encoding could not be decoded (a corrupt response).
    pub fn decode_failed(&self) -> bool {
        self.gzip_failed
    }

    pub fn summary(&self) -> &Summary {
        &self.tally.summary
    }

    /// After the body's end: a stream of a model api that ended without its end marker
    /// (`[DONE]`, `message_stop`, `response.completed`, `done: true`) or a finish reason, after
    /// records of the dialect's own shape. Its upstream closed cleanly, yet the answer is cut.
    /// Never claimed when a record could not be read (too large, not JSON): the end may have
    /// been in it.
    pub fn unterminated(&self) -> bool {
        let s = &self.tally.summary;
        self.marked_end
            && self.tally.shaped
            && !self.gzip_failed
            && s.counters.ignored == 0
            && !s.phase.is_some_and(Phase::is_terminal)
            && s.output.finish_reason.is_none()
    }

    /// Takes what the interpreter learnt, once the body is over (it starts empty again).
    pub fn take_summary(&mut self) -> Summary {
        std::mem::take(&mut self.tally.summary)
    }

    /// True when a line injected now would sit between complete upstream events.
    pub fn at_boundary(&self) -> bool {
        match &self.framing {
            Framing::Sse(d) => self.gzip.is_none() && d.at_boundary(),
            _ => false,
        }
    }

    /// Bytes held for incomplete records (bounded by `Limits::max_event`).
    pub fn buffered(&self) -> usize {
        match &self.framing {
            Framing::Sse(d) => d.buffered(),
            Framing::Lines(s) => s.buffered(),
            Framing::Array(s) => s.buffered(),
            Framing::Off => 0,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Step {
        let mut step = Step::default();
        match self.gzip.as_mut().map(|g| g.feed(chunk)) {
            None => step.boundaries = self.frame(chunk),
            Some(Ok(plain)) => {
                self.frame(&plain);
            }
            Some(Err(_)) => self.gzip_failed(),
        }
        self.tally.drain_into(&mut step.signals);
        step
    }

    /// The body ended whole; returns the last signals.
    pub fn finish(&mut self) -> Vec<Signal> {
        self.finish_as(true)
    }

    /// The body ended, whole (`complete`) or cut (a reset, a timeout): what it held is read
    /// either way, but only a whole stream is done by its end alone (Gemini's, which has no end
    /// marker: a cut after its finish reason is not a success).
    pub fn finish_as(&mut self, complete: bool) -> Vec<Signal> {
        if let Some(result) = self.gzip.as_mut().map(|g| g.finish()) {
            match result {
                Ok(plain) => {
                    self.frame(&plain);
                }
                Err(_) => self.gzip_failed(),
            }
        }
        let mut records = Vec::new();
        let mut last = None;
        match &mut self.framing {
            Framing::Sse(d) => {
                // A last event that lacks only its blank line is read when the body ended whole.
                last = d.whole_pending().filter(|_| complete);
                d.finish();
            }
            Framing::Lines(s) => s.finish(&mut records),
            Framing::Array(_) | Framing::Off => {}
        }
        if let Some((e, ended)) = last {
            let before = self.tally.summary.counters;
            self.sse_item(SseItem::Event(e));
            let c = &mut self.tally.summary.counters;
            if !ended && c.ignored > before.ignored {
                // A last line the body stopped inside counts when it reads (`data: [DONE]` with
                // no line end); one that does not read is what was cut, neither an event nor a
                // record that might have held the end.
                (c.ignored, c.events) = (before.ignored, before.events);
            }
        }
        self.records(records);
        if let Reader::Gemini(g) = &mut self.reader
            && complete
        {
            g.on_end(&mut self.tally);
        }
        self.tally.drain()
    }

    fn gzip_failed(&mut self) {
        self.gzip_failed = true;
        self.tally.ignored();
        self.gzip = None;
        self.framing = Framing::Off;
        self.reader = Reader::Off;
    }

    fn frame(&mut self, bytes: &[u8]) -> Vec<usize> {
        let mut records = Vec::new();
        match &mut self.framing {
            Framing::Sse(d) => {
                let fed = d.feed(bytes);
                for item in fed.items {
                    self.sse_item(item);
                }
                return fed.boundaries;
            }
            Framing::Lines(s) => s.feed(bytes, &mut records),
            Framing::Array(s) => s.feed(bytes, &mut records),
            Framing::Off => {}
        }
        self.records(records);
        Vec::new()
    }

    fn sse_item(&mut self, item: SseItem) {
        let t = &mut self.tally;
        match item {
            SseItem::Event(e) => match &mut self.reader {
                Reader::Chat(r) => r.on_event(t, &e.data),
                Reader::Responses(r) => r.on_event(t, e.event.as_deref(), &e.data),
                Reader::Anthropic(r) => r.on_event(t, e.event.as_deref(), &e.data),
                Reader::Gemini(r) => r.on_record(t, e.data.as_bytes()),
                Reader::Ollama(r) => r.on_record(t, e.data.as_bytes()),
                Reader::Off => {}
            },
            SseItem::Oversized { .. } => t.ignored(),
            SseItem::Comment(_) => {}
        }
    }

    fn records(&mut self, records: Vec<Record>) {
        let t = &mut self.tally;
        for record in records {
            match (record, &mut self.reader) {
                (Record::Item(bytes), Reader::Gemini(r)) => r.on_record(t, &bytes),
                (Record::Item(bytes), Reader::Ollama(r)) => r.on_record(t, &bytes),
                _ => t.ignored(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_bodies_are_read() {
        let gz = include_bytes!("../../../tests/fixtures/streams/openai_chat_reasoning.sse.gz");
        let mut i =
            StreamInterpreter::new(Api::OpenAi, "/v1/chat/completions", "text/event-stream")
                .with_content_encoding(Some("gzip"));
        let mut boundaries = Vec::new();
        for chunk in gz.chunks(11) {
            boundaries.extend(i.feed(chunk).boundaries);
        }
        i.finish();
        assert!(boundaries.is_empty());
        assert_eq!(i.summary().output.answer, "Héllo!");
        assert_eq!(i.summary().phase, Some(Phase::Done));
    }

    #[test]
    fn gemini_and_ollama_streams_without_their_end_are_unterminated() {
        let gem = "/v1beta/models/m:streamGenerateContent?alt=sse";
        let part = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}]}}]}\n\n";
        let stop =
            "data: {\"candidates\":[{\"content\":{\"parts\":[]},\"finishReason\":\"STOP\"}]}\n\n";
        let line = "{\"message\":{\"content\":\"Hi\"},\"done\":false}\n";
        let done = "{\"message\":{\"content\":\"\"},\"done\":true}\n";
        let cases = [
            (Api::Gemini, gem, "text/event-stream", part.to_owned(), true),
            (
                Api::Gemini,
                gem,
                "text/event-stream",
                format!("{part}{stop}"),
                false,
            ),
            (
                Api::Ollama,
                "/api/chat",
                "application/x-ndjson",
                line.to_owned(),
                true,
            ),
            (
                Api::Ollama,
                "/api/chat",
                "application/x-ndjson",
                format!("{line}{done}"),
                false,
            ),
            // Ollama's pull progress has no `done`: no known end, never unterminated.
            (
                Api::Ollama,
                "/api/pull",
                "application/x-ndjson",
                line.to_owned(),
                false,
            ),
        ];
        for (api, path, ct, body, want) in cases {
            let mut i = StreamInterpreter::new(api, path, ct);
            i.feed(body.as_bytes());
            i.finish();
            assert_eq!(i.unterminated(), want, "{api} {path} {body}");
        }
    }

    #[test]
    fn non_streams_are_ignored() {
        let mut i = StreamInterpreter::new(Api::OpenAi, "/v1/chat/completions", "application/json");
        assert_eq!(i.feed(b"{\"choices\":[]}").signals, []);
        assert_eq!(i.dialect(), None);
    }
}
