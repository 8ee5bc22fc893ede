//! Where each upstream event ends in the raw bytes, for numbering and replaying a kept stream.
//!
//! An event is what the client's own parser hands it: an SSE block with at least one `data`
//! line (WHATWG dispatch; comment-only blocks are not events and travel with the next event's
//! bytes), a non-blank NDJSON line, or a whole body (anything else, or a compressed stream).
//! The splitter keeps no bytes, only a few flags: the caller keeps the chunks and the offsets.
//! Written by hand because `SseDecoder` reports injection boundaries (after every blank line),
//! not the end of each dispatched event, and keeping offsets needs no copy of the bytes.

/// How a body is cut into events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Sse,
    Lines,
    /// One event: the whole body.
    Whole,
}

impl Framing {
    /// By content type and encoding: a compressed body cannot be cut, so it is one event.
    pub fn for_body(content_type: &str, compressed: bool) -> Framing {
        let ct = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match ct.as_str() {
            _ if compressed => Framing::Whole,
            "text/event-stream" => Framing::Sse,
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Framing::Lines,
            _ => Framing::Whole,
        }
    }
}

/// Finds event ends as bytes pass.
#[derive(Debug)]
pub struct EventEnds {
    framing: Framing,
    /// Bytes of the current line so far (only whether it is empty and its first bytes matter).
    line: usize,
    /// The current line's first bytes, to tell a `data` field (at most 5: `data:`).
    head: [u8; 5],
    /// The block being read has a `data` line (SSE), or the line has content (NDJSON).
    has_data: bool,
    /// A CR ended the last line; an LF right after belongs to it.
    after_cr: bool,
    /// That CR ended the blank line closing an event: it ends after the LF, if one follows.
    cut_after_cr: bool,
    /// Bytes seen since the last event end (for a whole body).
    since_end: bool,
}

impl EventEnds {
    pub fn new(framing: Framing) -> Self {
        EventEnds {
            framing,
            line: 0,
            head: [0; 5],
            has_data: false,
            after_cr: false,
            cut_after_cr: false,
            since_end: false,
        }
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Feeds one chunk; pushes to `ends` each offset within it right after an event's last byte.
    pub fn feed(&mut self, chunk: &[u8], ends: &mut Vec<usize>) {
        if chunk.is_empty() {
            return;
        }
        self.since_end = true;
        if self.framing == Framing::Whole {
            return;
        }
        for (i, &b) in chunk.iter().enumerate() {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    if self.cut_after_cr {
                        self.cut_after_cr = false;
                        self.ended(i + 1, ends);
                    }
                    continue;
                }
                if self.cut_after_cr {
                    self.cut_after_cr = false;
                    self.ended(i, ends);
                }
            }
            match b {
                b'\n' | b'\r' if b == b'\n' || self.framing == Framing::Sse => {
                    let closes = self.end_line();
                    if b == b'\r' {
                        self.after_cr = true;
                        self.cut_after_cr = closes;
                    } else if closes {
                        self.ended(i + 1, ends);
                    }
                }
                _ => {
                    if self.line < self.head.len() {
                        self.head[self.line] = b;
                    }
                    self.line += 1;
                }
            }
        }
    }

    /// The body ended: whether the bytes since the last end form one more event.
    pub fn finish(&mut self) -> bool {
        let pending = self.since_end;
        let last = match self.framing {
            Framing::Whole => pending,
            // A last line without its newline is still a line.
            Framing::Lines => self.line > 0,
            // An unterminated SSE block is discarded by every parser; only a blank line whose
            // CR was the last byte closes one.
            Framing::Sse => self.cut_after_cr,
        };
        self.cut_after_cr = false;
        self.since_end = false;
        last
    }

    /// A line ended; true when an event ends with it.
    fn end_line(&mut self) -> bool {
        let len = self.line;
        self.line = 0;
        match self.framing {
            Framing::Lines => len > 0,
            Framing::Sse if len == 0 => std::mem::take(&mut self.has_data),
            Framing::Sse => {
                let field = &self.head[..len.min(5)];
                if field == b"data:" || (len == 4 && field == b"data") {
                    self.has_data = true;
                }
                false
            }
            Framing::Whole => false,
        }
    }

    fn ended(&mut self, at: usize, ends: &mut Vec<usize>) {
        self.since_end = false;
        ends.push(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Event ends as absolute offsets, feeding `body` cut at every `step` bytes.
    fn ends(framing: Framing, body: &[u8], step: usize) -> Vec<usize> {
        let mut s = EventEnds::new(framing);
        let mut out = Vec::new();
        let mut base = 0;
        for chunk in body.chunks(step) {
            let mut local = Vec::new();
            s.feed(chunk, &mut local);
            out.extend(local.into_iter().map(|e| base + e));
            base += chunk.len();
        }
        if s.finish() {
            out.push(body.len());
        }
        out
    }

    #[test]
    fn sse_events_end_after_their_blank_line_however_bytes_are_cut() {
        let body =
            b": comment\n\ndata: a\n\nevent: x\r\ndata: b\r\n\r\n: ping\n\ndata\n\ndata: part";
        for step in 1..body.len() {
            assert_eq!(
                ends(Framing::Sse, body, step),
                vec![20, 41, 55],
                "step {step}"
            );
        }
    }

    #[test]
    fn a_blank_line_ended_by_a_lone_cr_closes_the_event() {
        assert_eq!(
            ends(Framing::Sse, b"data: a\r\rdata: b\r\r", 1),
            vec![9, 18]
        );
        assert_eq!(ends(Framing::Sse, b"data: a\r\r", 9), vec![9]);
    }

    #[test]
    fn ndjson_lines_and_whole_bodies() {
        let body = b"{\"a\":1}\n\n{\"b\":2}\r\n{\"c\":3}";
        for step in 1..body.len() {
            assert_eq!(ends(Framing::Lines, body, step), vec![8, 18, 25]);
        }
        assert_eq!(ends(Framing::Whole, b"{\"whole\":true}", 3), vec![14]);
        assert_eq!(ends(Framing::Whole, b"", 3), Vec::<usize>::new());
    }

    #[test]
    fn framing_by_content_type() {
        assert_eq!(
            Framing::for_body("text/event-stream; charset=utf-8", false),
            Framing::Sse
        );
        assert_eq!(
            Framing::for_body("application/x-ndjson", false),
            Framing::Lines
        );
        assert_eq!(Framing::for_body("text/event-stream", true), Framing::Whole);
        assert_eq!(Framing::for_body("application/json", false), Framing::Whole);
    }
}
