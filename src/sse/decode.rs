//! The incremental SSE decoder (WHATWG rules): bytes in, events, comments and safe boundaries out.
//!
//! **Invariant:** the decoder does no I/O and keeps at most `max_event_size` bytes of one event
//! (its current line plus its data) no matter how the input is cut into chunks.

/// Default bound on one event: the current line plus the accumulated data.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 1024 * 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field of this block, if any (`None` means the default `message`).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`; never empty (empty events are not dispatched).
    pub data: String,
    /// The last event id seen so far in the stream (it persists across events, as in the spec).
    pub id: Option<String>,
    /// A `retry:` value given in this block.
    pub retry: Option<u64>,
}

/// What the decoder reports, in stream order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SseItem {
    Event(SseEvent),
    /// A comment line's text after the colon, with one leading space stripped.
    Comment(String),
    /// An event grew past the bound; it was discarded and the decoder skips to the next blank line.
    Oversized {
        limit: usize,
    },
}

/// The result of feeding one chunk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fed {
    pub items: Vec<SseItem>,
    /// Offsets within the chunk where a line may be injected: right after a blank line (or at the
    /// start of the stream). Never between a CR and the LF that may complete it.
    pub boundaries: Vec<usize>,
}

/// An incremental SSE decoder.
#[derive(Debug)]
pub struct SseDecoder {
    max: usize,
    line: Vec<u8>,
    /// True while the current line has any byte (tracked even while discarding).
    line_started: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
    retry: Option<u64>,
    last_id: Option<String>,
    /// The previous byte was a CR that ended a line; a following LF belongs to it.
    after_cr: bool,
    /// That CR ended a blank line: a boundary is due once we know whether an LF follows.
    boundary_after_cr: bool,
    /// Bytes of a possible leading BOM seen so far; `None` once the stream start is past.
    bom_seen: Option<usize>,
    discarding: bool,
    /// Some field or comment line was seen since the last blank line.
    block_open: bool,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_SIZE)
    }
}

impl SseDecoder {
    pub fn new(max_event_size: usize) -> Self {
        SseDecoder {
            max: max_event_size.max(1),
            line: Vec::new(),
            line_started: false,
            data: String::new(),
            has_data: false,
            event: None,
            retry: None,
            last_id: None,
            after_cr: false,
            boundary_after_cr: false,
            bom_seen: Some(0),
            discarding: false,
            block_open: false,
        }
    }

    /// Bytes currently held for an incomplete event (always at most the configured bound).
    pub fn buffered(&self) -> usize {
        self.line.len() + self.data.len() + self.event.as_ref().map_or(0, String::len)
    }

    /// True when a line injected now would sit between complete events: at stream start or right
    /// after a blank line whose terminator is known to be complete.
    pub fn at_boundary(&self) -> bool {
        (self.bom_seen == Some(0))
            || (!self.line_started && !self.after_cr && !self.block_open && self.bom_seen.is_none())
    }

    /// Feeds one chunk of bytes.
    pub fn feed(&mut self, chunk: &[u8]) -> Fed {
        let mut fed = Fed::default();
        let mut rest = self.strip_bom(chunk, &mut fed);
        let mut pos = chunk.len() - rest.len();
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
                pos += 1;
            }
            if self.boundary_after_cr {
                self.boundary_after_cr = false;
                fed.boundaries.push(pos);
            }
        }
        while !rest.is_empty() {
            let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.push_bytes(rest, &mut fed);
                break;
            };
            self.push_bytes(&rest[..end], &mut fed);
            let blank = self.end_line(&mut fed);
            let mut used = end + 1;
            if rest[end] == b'\r' {
                match rest.get(end + 1) {
                    Some(b'\n') => used += 1,
                    Some(_) => {}
                    None => {
                        self.after_cr = true;
                        self.boundary_after_cr = blank;
                        break;
                    }
                }
            }
            pos += used;
            rest = &rest[used..];
            if blank {
                fed.boundaries.push(pos);
            }
        }
        fed
    }

    /// At the end of a body that closed cleanly: the last event that lacks its blank line, with
    /// whether its last line ended too (`false`: the body stopped inside that line). Per the spec
    /// a client drops it; a reader may still count it (a `data: [DONE]` sent without its blank
    /// line, or even its line end, ended the stream). Call before [`finish`].
    ///
    /// [`finish`]: SseDecoder::finish
    pub fn whole_pending(&mut self) -> Option<(SseEvent, bool)> {
        if self.discarding {
            return None;
        }
        let ended = !self.line_started;
        let mut fed = Fed::default();
        if !ended {
            let line = std::mem::take(&mut self.line);
            self.line_started = false;
            self.field(&line, &mut fed);
        }
        if !self.has_data {
            return None;
        }
        self.dispatch(&mut fed);
        match fed.items.pop() {
            Some(SseItem::Event(e)) => Some((e, ended)),
            _ => None,
        }
    }

    /// Ends the stream. Per the spec an event without its blank line is dropped; returns true if
    /// something was dropped.
    pub fn finish(&mut self) -> bool {
        let dropped = self.line_started || self.has_data;
        self.line.clear();
        self.line_started = false;
        self.reset_block();
        self.after_cr = false;
        self.boundary_after_cr = false;
        dropped
    }

    fn strip_bom<'a>(&mut self, chunk: &'a [u8], fed: &mut Fed) -> &'a [u8] {
        let Some(seen) = self.bom_seen else {
            return chunk;
        };
        if chunk.is_empty() {
            return chunk;
        }
        if seen == 0 && chunk[0] != BOM[0] {
            self.bom_seen = None;
            fed.boundaries.push(0);
            return chunk;
        }
        let mut i = 0;
        let mut seen = seen;
        while seen < BOM.len() && i < chunk.len() {
            if chunk[i] != BOM[seen] {
                // Not a BOM after all: the partial bytes were content. Keep them as line bytes.
                self.bom_seen = None;
                let partial = &BOM[..seen];
                self.push_bytes(partial, fed);
                return &chunk[i..];
            }
            seen += 1;
            i += 1;
        }
        if seen == BOM.len() {
            self.bom_seen = None;
            fed.boundaries.push(i);
        } else {
            self.bom_seen = Some(seen);
        }
        &chunk[i..]
    }

    fn push_bytes(&mut self, bytes: &[u8], fed: &mut Fed) {
        if bytes.is_empty() {
            return;
        }
        self.line_started = true;
        if self.discarding {
            return;
        }
        if self.buffered() + bytes.len() > self.max {
            self.discard(fed);
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn discard(&mut self, fed: &mut Fed) {
        self.discarding = true;
        self.line = Vec::new();
        self.reset_block();
        fed.items.push(SseItem::Oversized { limit: self.max });
    }

    fn reset_block(&mut self) {
        self.data = String::new();
        self.has_data = false;
        self.event = None;
        self.retry = None;
        self.block_open = false;
    }

    /// Processes the completed current line; returns true if it was blank.
    fn end_line(&mut self, fed: &mut Fed) -> bool {
        let started = std::mem::replace(&mut self.line_started, false);
        if !started {
            self.dispatch(fed);
            return true;
        }
        if self.discarding {
            self.block_open = true;
            return false;
        }
        let line = std::mem::take(&mut self.line);
        self.block_open = true;
        self.field(&line, fed);
        false
    }

    fn dispatch(&mut self, fed: &mut Fed) {
        self.discarding = false;
        if self.has_data {
            let mut data = std::mem::take(&mut self.data);
            if data.ends_with('\n') {
                data.pop();
            }
            fed.items.push(SseItem::Event(SseEvent {
                event: self.event.take(),
                data,
                id: self.last_id.clone(),
                retry: self.retry,
            }));
        }
        self.reset_block();
    }

    fn field(&mut self, line: &[u8], fed: &mut Fed) {
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match name {
            b"" => fed.items.push(SseItem::Comment(value.into_owned())),
            b"event" => self.event = Some(value.into_owned()),
            b"data" => {
                self.data.push_str(&value);
                self.data.push('\n');
                self.has_data = true;
            }
            b"id" if !value.contains('\0') => self.last_id = Some(value.into_owned()),
            b"retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {}
        }
        // Lossy decoding can grow a line up to 3x (each invalid byte becomes U+FFFD).
        if self.buffered() > self.max {
            self.discard(fed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(input: &[u8]) -> Vec<SseItem> {
        SseDecoder::default().feed(input).items
    }

    fn ev(name: Option<&str>, data: &str) -> SseItem {
        SseItem::Event(SseEvent {
            event: name.map(str::to_owned),
            data: data.to_owned(),
            ..SseEvent::default()
        })
    }

    #[test]
    fn line_endings_and_fields() {
        let items = events(b"\xEF\xBB\xBFdata: a\r\ndata:b\r\revent: x\ndata\n\n: hi\n\ndata: c\n");
        assert_eq!(
            items,
            vec![
                ev(None, "a\nb"),
                ev(Some("x"), ""),
                SseItem::Comment("hi".into())
            ]
        );
    }

    #[test]
    fn empty_data_is_not_dispatched_and_ids_persist() {
        let items = events(b"event: x\n\nid: 7\ndata: a\n\ndata: b\n\n");
        let SseItem::Event(second) = &items[1] else {
            panic!("{items:?}")
        };
        assert_eq!(items.len(), 2);
        assert_eq!(second.id.as_deref(), Some("7"));
    }

    #[test]
    fn cr_split_from_lf_is_one_line_end() {
        let mut d = SseDecoder::default();
        let a = d.feed(b"data: a\r\n\r");
        assert_eq!(a.items, vec![ev(None, "a")]);
        assert_eq!(a.boundaries, vec![0]);
        assert!(!d.at_boundary());
        let b = d.feed(b"\ndata: b\n\n");
        assert_eq!(b.boundaries, vec![1, 10]);
        assert_eq!(b.items, vec![ev(None, "b")]);
        assert!(d.at_boundary());
    }

    #[test]
    fn boundaries_at_start_and_after_blank_lines() {
        let mut d = SseDecoder::default();
        assert!(d.at_boundary());
        let fed = d.feed(b"data: a\n\ndata: b\n");
        assert_eq!(fed.boundaries, vec![0, 9]);
        assert!(!d.at_boundary());
    }

    #[test]
    fn oversized_events_are_skipped() {
        let mut d = SseDecoder::new(16);
        let mut items = d
            .feed(b"data: 0123456789abcdef\ndata: more\n\ndata: ok\n\n")
            .items;
        items.extend(d.feed(b"data: 0123").items);
        items.extend(d.feed(b"456789abcdefgh\n\ndata: z\n\n").items);
        assert_eq!(
            items,
            vec![
                SseItem::Oversized { limit: 16 },
                ev(None, "ok"),
                SseItem::Oversized { limit: 16 },
                ev(None, "z")
            ]
        );
        assert!(d.buffered() <= 16);
    }

    #[test]
    fn invalid_utf8_cannot_grow_past_the_bound() {
        let mut d = SseDecoder::new(16);
        let items = d.feed(b"event: \xFF\xFF\xFF\xFF\xFF\xFF\xFF\n").items;
        assert_eq!(items, vec![SseItem::Oversized { limit: 16 }]);
        assert!(d.buffered() <= 16);
        let items = d.feed(b"\ndata: \xFF\xFF\xFF\xFF\xFF\n").items;
        assert!(d.buffered() <= 16, "{items:?}");
    }

    #[test]
    fn split_bom_and_utf8() {
        let mut d = SseDecoder::default();
        let mut items = d.feed(b"\xEF\xBB").items;
        items.extend(d.feed(b"\xBFdata: \xC3").items);
        items.extend(d.feed(b"\xA9\n\n").items);
        assert_eq!(items, vec![ev(None, "é")]);
    }

    #[test]
    fn a_last_event_lacking_only_its_blank_line_can_be_taken_whole() {
        let mut d = SseDecoder::new(1024);
        assert!(d.feed(b"data: a\n\nevent: x\ndata: [DONE]\n").items.len() == 1);
        let last = d.whole_pending().map(|(e, ended)| (e.event, e.data, ended));
        assert_eq!(
            last,
            Some((Some("x".to_owned()), "[DONE]".to_owned(), true))
        );
        assert!(!d.finish(), "taken, nothing left to drop");
        // A last line that did not end is taken, and said so.
        let mut d = SseDecoder::new(1024);
        d.feed(b"data: [DO");
        let last = d.whole_pending().map(|(e, ended)| (e.data, ended));
        assert_eq!(last, Some(("[DO".to_owned(), false)));
        assert!(!d.finish());
        // A comment line that did not end is no event.
        let mut d = SseDecoder::new(1024);
        d.feed(b": keep");
        assert_eq!(d.whole_pending(), None);
    }
}
