//! The tiny SSE encoder: an `: aloud {...}` comment line and a named event, both framing-safe.

use bytes::Bytes;

/// `: aloud {json}\n` — one line; CR, LF and other control characters are written as JSON
/// `\u00XX` escapes so the text can never end the line early or open a new field.
pub fn comment(json: &str) -> Bytes {
    let mut out = String::with_capacity(json.len() + 9);
    out.push_str(": aloud ");
    push_escaped(&mut out, json);
    out.push('\n');
    Bytes::from(out)
}

/// `event: name\ndata: ...\n\n`; multi-line data becomes several `data:` lines (split on LF,
/// CRLF or CR). Control characters in the name are removed.
pub fn event(name: &str, data: &str) -> Bytes {
    let mut out = String::with_capacity(name.len() + data.len() + 16);
    out.push_str("event: ");
    out.extend(name.chars().filter(|c| !c.is_control()));
    out.push('\n');
    let normalized = data.replace("\r\n", "\n").replace('\r', "\n");
    for line in normalized.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::{SseDecoder, SseItem};

    #[test]
    fn comment_is_one_line() {
        let c = comment("{\"a\":\"x\ny\r\"}");
        assert_eq!(&c[..], b": aloud {\"a\":\"x\\u000ay\\u000d\"}\n");
        let items = SseDecoder::default().feed(&c).items;
        assert_eq!(items.len(), 1);
        assert!(matches!(&items[0], SseItem::Comment(t) if t.starts_with("aloud {")));
    }

    #[test]
    fn event_round_trips() {
        let e = event("progress", "a\nb\r\nc");
        assert_eq!(&e[..], b"event: progress\ndata: a\ndata: b\ndata: c\n\n");
        let items = SseDecoder::default().feed(&e).items;
        let [SseItem::Event(ev)] = &items[..] else {
            panic!("{items:?}")
        };
        assert_eq!(ev.data, "a\nb\nc");
        assert_eq!(ev.event.as_deref(), Some("progress"));
    }
}
