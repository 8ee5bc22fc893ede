//! `Doc`: a JSON document a record carries whole (the request body, the answer's body, the
//! upstream's timings). A tree while the record is built and redacted; its text once read back.
//! An answer's body is both from the start ([`Doc::received`]): its tree to read and redact, and
//! the text it came as, written out as it came unless the full redaction ran (which takes the
//! tree to change, `tree_mut`, and drops the text).
//!
//! Why: a record read back from the spill or the store mostly moves these documents on (into
//! the store, an export, a page). Building a `Value` tree for each was over half of decoding a
//! record (callgrind, spill replay at saturation: about 20k of 35k instructions per record for
//! a 300-byte answer body), and writing it walked the tree again. As text, decoding validates
//! and copies, and writing copies. Readers that need the tree ask for it ([`Doc::tree`]).
//!
//! A `Text` is what `serde_json` read, byte for byte, except that a text with a line break in
//! it (pretty-printed: JSON has no raw line break inside a string) is read as a tree, so a
//! record written again is one line, as the spill needs. Reading as text checks the syntax, not
//! everything a full parse does (a number out of range, a lone surrogate escape, depth): such a
//! text has no tree ([`Doc::parsed`] is `None`), and redaction then replaces it with `null`.
//!
//! Only `serde_json`'s own deserializers read a document as text, and only where it is read in
//! place. A document serde buffered first (a member read before an adjacently tagged entry's
//! tag, as in a spill line whose keys were sorted) cannot be handed over as text: it is read as
//! a tree instead. `store::Entry` is written tag first (by `capture::spill` and by serde).

mod unique;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

#[derive(Clone)]
pub enum Doc {
    Tree(Value),
    Text(Box<RawValue>),
    /// A text as received and its tree, which hold the same: every object's member names are
    /// unique (a text with a repeated one is a `Tree`), so whatever redaction finds in the tree
    /// is all the text holds. Written as the text; changing the tree drops it. The text is valid
    /// JSON on one line (the tree was read from it), held as a `str`: a `RawValue` would cost a
    /// second pass over it to check what the first one did.
    Both {
        tree: Value,
        text: Box<str>,
    },
}

impl Doc {
    /// A received JSON body (an upstream's answer); `None` when it does not parse.
    ///
    /// Kept as its text too when it is on one line and its tree holds all it does
    /// (`unique.rs` says what it refuses).
    /// Writing a record's answer body then copies it instead of walking its tree: about 4.5k of
    /// the 31k instructions the capture overflow spends on each record at saturation (callgrind,
    /// a 341-byte answer).
    pub fn received(bytes: &[u8]) -> Option<Doc> {
        let tree = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).ok().map(Doc::Tree);
        if bytes.contains(&b'\n') || bytes.contains(&b'\r') {
            return tree(bytes);
        }
        // A repeated member name, or no JSON at all: read as a tree alone (or not at all).
        let Ok(unique::Unique(value)) = serde_json::from_slice(bytes) else {
            return tree(bytes);
        };
        // serde_json checked the strings' UTF-8, and JSON outside strings is ASCII.
        match std::str::from_utf8(bytes) {
            Ok(text) => Some(Doc::Both {
                tree: value,
                text: text.trim_matches([' ', '\t']).into(),
            }),
            Err(_) => Some(Doc::Tree(value)),
        }
    }

    /// The document as a tree: borrowed, or parsed from its text; `None` for a text that
    /// does not parse (see the module's comment).
    pub fn parsed(&self) -> Option<Cow<'_, Value>> {
        match self {
            Doc::Tree(v) | Doc::Both { tree: v, .. } => Some(Cow::Borrowed(v)),
            Doc::Text(t) => parse(t).map(Cow::Owned),
        }
    }

    /// The document as a tree; `null` for a text that does not parse.
    pub fn tree(&self) -> Cow<'_, Value> {
        self.parsed().unwrap_or(Cow::Owned(Value::Null))
    }

    /// The tree to change in place (redaction, cutting); a text is parsed first, once.
    pub fn tree_mut(&mut self) -> &mut Value {
        match self {
            Doc::Tree(_) => {}
            Doc::Text(t) => *self = Doc::Tree(parse(t).unwrap_or_default()),
            Doc::Both { tree, .. } => *self = Doc::Tree(std::mem::take(tree)),
        }
        match self {
            Doc::Tree(v) => v,
            Doc::Text(_) | Doc::Both { .. } => unreachable!("made a tree just above"),
        }
    }

    /// The JSON text, when the document is held as text.
    pub fn text(&self) -> Option<&str> {
        match self {
            Doc::Text(t) => Some(t.get()),
            Doc::Both { text, .. } => Some(text),
            Doc::Tree(_) => None,
        }
    }
}

/// A text's tree; `None` when it does not parse (see the module's comment).
fn parse(text: &RawValue) -> Option<Value> {
    serde_json::from_str(text.get()).ok()
}

impl From<Value> for Doc {
    fn from(v: Value) -> Self {
        Doc::Tree(v)
    }
}

/// Equal when the trees are: a text and the tree it was written from compare equal.
impl PartialEq for Doc {
    fn eq(&self, other: &Self) -> bool {
        match (self.text(), other.text()) {
            (Some(a), Some(b)) if a == b => true,
            _ => self.tree() == other.tree(),
        }
    }
}

impl PartialEq<Value> for Doc {
    fn eq(&self, other: &Value) -> bool {
        *self.tree() == *other
    }
}

impl fmt::Debug for Doc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Doc::Tree(v) => fmt::Debug::fmt(v, f),
            Doc::Text(t) => f.write_str(t.get()),
            Doc::Both { text, .. } => f.write_str(text),
        }
    }
}

impl Serialize for Doc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Doc::Tree(v) => v.serialize(s),
            Doc::Text(t) => t.serialize(s),
            // Valid JSON (see `Both`): the check cannot fail, and costs only serde's writers
            // (the record's own writer, `record::json`, copies the text).
            Doc::Both { tree, text } => match RawValue::from_string(text.to_string()) {
                Ok(raw) => raw.serialize(s),
                Err(_) => tree.serialize(s),
            },
        }
    }
}

/// The name serde_json's deserializers answer with a raw value (what `RawValue`'s own
/// `Deserialize` asks for; serde_json does not export it). Asked for here with a visitor of our
/// own, so that a document serde buffered, which serde hands over as a newtype, is read as a
/// tree instead of failing. Should serde_json ever rename it, every document is read as a tree:
/// slower, not wrong (and the tests that expect text fail).
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

struct DocVisitor;

impl<'de> Visitor<'de> for DocVisitor {
    type Value = Doc;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    /// serde_json hands a raw value over as a map of one member, which `RawValue` reads.
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Doc, A::Error> {
        let raw = Box::<RawValue>::deserialize(MapAccessDeserializer::new(map))?;
        if raw.get().contains(['\n', '\r']) {
            return serde_json::from_str(raw.get())
                .map(Doc::Tree)
                .map_err(de::Error::custom);
        }
        Ok(Doc::Text(raw))
    }

    /// A document serde buffered: its tree.
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Doc, D::Error> {
        Value::deserialize(d).map(Doc::Tree)
    }
}

impl<'de> Deserialize<'de> for Doc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_newtype_struct(RAW_VALUE_TOKEN, DocVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Holder {
        #[serde(default)]
        doc: Option<Doc>,
    }

    #[test]
    fn reads_back_as_the_text_it_was_written_as() {
        let tree = json!({"b": [1, 2.5, "é\n", null], "a": {"x": true}});
        let held = Holder {
            doc: Some(Doc::Tree(tree.clone())),
        };
        let text = serde_json::to_string(&held).unwrap();
        let back: Holder = serde_json::from_str(&text).unwrap();
        let doc = back.doc.as_ref().unwrap();
        assert_eq!(
            doc.text(),
            Some(serde_json::to_string(&tree).unwrap().as_str())
        );
        assert_eq!(*doc.tree(), tree);
        assert_eq!(back, held, "a text equals the tree it was written from");
        // Written again, the text is copied: the same bytes.
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
        // Through serde_json's own trees as well (`to_value`, `from_value`).
        let v = serde_json::to_value(&back).unwrap();
        assert_eq!(v["doc"], tree);
        let again: Holder = serde_json::from_value(v).unwrap();
        assert_eq!(again, held);
    }

    #[test]
    fn a_text_becomes_a_tree_to_change() {
        let mut held: Holder = serde_json::from_str(r#"{"doc":{"key":"secret"}}"#).unwrap();
        let doc = held.doc.as_mut().unwrap();
        doc.tree_mut()["key"] = json!("[redacted]");
        assert!(doc.text().is_none());
        assert_eq!(
            serde_json::to_string(&held).unwrap(),
            r#"{"doc":{"key":"[redacted]"}}"#
        );
        assert_ne!(
            Doc::Tree(json!(1)),
            serde_json::from_str::<Doc>("2").unwrap()
        );
    }

    #[test]
    fn a_text_with_a_line_break_is_read_as_a_tree_and_written_on_one_line() {
        let d: Doc = serde_json::from_str("{\n  \"a\": [1,\r\n 2]\n}").unwrap();
        assert!(d.text().is_none());
        assert_eq!(serde_json::to_string(&d).unwrap(), r#"{"a":[1,2]}"#);
        // Without a tree it cannot be made one line: refused, as a full parse refuses it.
        assert!(serde_json::from_str::<Doc>("{\n\"a\": 1e400}").is_err());
        // Spaces and tabs stay as read (they break no line).
        let d: Doc = serde_json::from_str("{ \"a\":\t1 }").unwrap();
        assert_eq!(d.text(), Some("{ \"a\":\t1 }"));
    }

    #[test]
    fn a_text_that_does_not_parse_has_no_tree() {
        for text in [r#"{"n":1e400}"#, r#"["\ud800"]"#] {
            let d: Doc = serde_json::from_str(text).unwrap();
            assert!(d.parsed().is_none(), "{text}");
            assert_eq!(*d.tree(), Value::Null);
        }
    }

    #[test]
    fn a_document_serde_buffered_is_read_as_a_tree() {
        // Adjacently tagged, content before the tag: serde buffers the content first.
        #[derive(Deserialize, Debug)]
        #[serde(tag = "kind", content = "data")]
        enum Tagged {
            Held(Holder),
        }
        let line = r#"{"data":{"doc":{"b":[1,"x"]}},"kind":"Held"}"#;
        let Tagged::Held(held) = serde_json::from_str(line).unwrap();
        let doc = held.doc.unwrap();
        assert!(doc.text().is_none());
        assert_eq!(doc, json!({"b": [1, "x"]}));
        // `from_value` on a tree whose keys sort "data" first does the same.
        let v = json!({"kind": "Held", "data": {"doc": {"a": 1}}});
        let Tagged::Held(held) = serde_json::from_value(v).unwrap();
        assert_eq!(held.doc.unwrap(), json!({"a": 1}));
        // Tag first, the document is read in place: as text.
        let line = r#"{"kind":"Held","data":{"doc":{"b":[1,"x"]}}}"#;
        let Tagged::Held(held) = serde_json::from_str(line).unwrap();
        assert_eq!(held.doc.unwrap().text(), Some(r#"{"b":[1,"x"]}"#));
    }

    #[test]
    fn null_is_no_document_and_invalid_text_is_refused() {
        let held: Holder = serde_json::from_str(r#"{"doc":null}"#).unwrap();
        assert!(held.doc.is_none());
        assert!(serde_json::from_str::<Holder>(r#"{"doc":{"a":}"#).is_err());
    }
}
