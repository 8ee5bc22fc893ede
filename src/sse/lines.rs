//! Incremental, bounded splitters for non-SSE streams: NDJSON lines (Ollama) and the elements of
//! a streamed top-level JSON array (Gemini without `alt=sse`).

/// What a splitter yields: one complete record, or a notice that one was too long and skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The raw bytes of one record (a line without its terminator, or one array element).
    Item(Vec<u8>),
    Oversized {
        limit: usize,
    },
}

/// Splits a byte stream on LF (a trailing CR is dropped); blank lines are skipped.
#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    buf: Vec<u8>,
    discarding: bool,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        LineSplitter {
            max: max_line.max(1),
            buf: Vec::new(),
            discarding: false,
        }
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<Record>) {
        while !chunk.is_empty() {
            let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..i], Some(i + 1)),
                None => (chunk, None),
            };
            if !self.discarding {
                if self.buf.len() + part.len() > self.max {
                    self.discarding = true;
                    self.buf = Vec::new();
                    out.push(Record::Oversized { limit: self.max });
                } else {
                    self.buf.extend_from_slice(part);
                }
            }
            let Some(used) = done else { break };
            self.end_line(out);
            chunk = &chunk[used..];
        }
    }

    /// Ends the stream; a last line without a newline is still a record.
    pub fn finish(&mut self, out: &mut Vec<Record>) {
        self.end_line(out);
    }

    fn end_line(&mut self, out: &mut Vec<Record>) {
        let mut line = std::mem::take(&mut self.buf);
        if std::mem::replace(&mut self.discarding, false) {
            return;
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().any(|b| !b.is_ascii_whitespace()) {
            out.push(Record::Item(line));
        }
    }
}

/// Yields each top-level element of a streamed JSON array (`[{..},\r\n{..}]`) as it completes.
/// Tolerates a stream of bare concatenated values too; anything outside values is skipped.
#[derive(Debug)]
pub struct JsonArraySplitter {
    max: usize,
    buf: Vec<u8>,
    /// Nesting depth counting the outer array as 1 once seen.
    depth: usize,
    outer: bool,
    in_string: bool,
    escape: bool,
    discarding: bool,
}

impl JsonArraySplitter {
    pub fn new(max_element: usize) -> Self {
        JsonArraySplitter {
            max: max_element.max(1),
            buf: Vec::new(),
            depth: 0,
            outer: false,
            in_string: false,
            escape: false,
            discarding: false,
        }
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Record>) {
        for &b in chunk {
            self.byte(b, out);
        }
    }

    fn base(&self) -> usize {
        usize::from(self.outer)
    }

    fn byte(&mut self, b: u8, out: &mut Vec<Record>) {
        let inside = self.depth > self.base();
        if self.in_string {
            if self.escape {
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            self.keep(b, out);
            return;
        }
        match b {
            b'[' if !self.outer && self.depth == 0 => {
                self.outer = true;
                self.depth = 1;
            }
            b'{' | b'[' => {
                self.depth += 1;
                self.keep(b, out);
            }
            b'}' | b']' if inside => {
                self.depth -= 1;
                self.keep(b, out);
                if self.depth == self.base() {
                    let item = std::mem::take(&mut self.buf);
                    if !std::mem::replace(&mut self.discarding, false) {
                        out.push(Record::Item(item));
                    }
                }
            }
            b']' if self.outer && self.depth == 1 => {
                self.outer = false;
                self.depth = 0;
            }
            b'"' if inside => {
                self.in_string = true;
                self.keep(b, out);
            }
            _ if inside => self.keep(b, out),
            _ => {}
        }
    }

    fn keep(&mut self, b: u8, out: &mut Vec<Record>) {
        if self.discarding {
            return;
        }
        if self.buf.len() >= self.max {
            self.discarding = true;
            self.buf = Vec::new();
            out.push(Record::Oversized { limit: self.max });
            return;
        }
        self.buf.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(out: Vec<Record>) -> Vec<String> {
        out.into_iter()
            .map(|r| match r {
                Record::Item(b) => String::from_utf8_lossy(&b).into_owned(),
                Record::Oversized { .. } => "<oversized>".into(),
            })
            .collect()
    }

    #[test]
    fn lines_split_across_chunks() {
        let mut s = LineSplitter::new(8);
        let mut out = Vec::new();
        s.feed(b"{\"a\":1}\r\n\n{\"b\"", &mut out);
        s.feed(b":2}\n0123456789\nlast", &mut out);
        s.finish(&mut out);
        assert_eq!(
            items(out),
            ["{\"a\":1}", "{\"b\":2}", "<oversized>", "last"]
        );
    }

    #[test]
    fn array_elements() {
        let mut s = JsonArraySplitter::new(64);
        let mut out = Vec::new();
        s.feed(b"[{\"t\":\"a]}\\\"\"}\r\n,", &mut out);
        s.feed(b"{\"n\":[1,{}]}]", &mut out);
        assert_eq!(items(out), ["{\"t\":\"a]}\\\"\"}", "{\"n\":[1,{}]}"]);
    }
}
