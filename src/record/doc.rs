//! `Doc`: a JSON document a record carries whole (the request body, the answer's body, the
//! upstream's timings). A tree while the record is built and redacted; its text once read back.
//!
//! Why: a record read back from the spill or the store mostly moves these documents on (into
//! the store, an export, a page). Building a `Value` tree for each was over half of decoding a
//! record (callgrind, spill replay at saturation: about 20k of 35k instructions per record for
//! a 300-byte answer body), and writing it walked the tree again. As text, decoding validates
//! and copies, and writing copies. Readers that need the tree ask for it ([`Doc::tree`]).
//!
//! A `Text` is what `serde_json` read, byte for byte; records are only ever written compact (by
//! `record::json` or serde_json), so it is also what they would write for the same tree.
//! Decoding keeps the text only from `serde_json`'s own deserializers, and only where the
//! document is read in place: serde buffers members it reads before an adjacently tagged
//! entry's tag, and a buffered member cannot be read as text. `store::Entry` is always written
//! tag first.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

#[derive(Clone)]
pub enum Doc {
    Tree(Value),
    Text(Box<RawValue>),
}

impl Doc {
    /// The document as a tree: borrowed, or parsed from its text. Text that no longer parses
    /// (it was validated when read, so it cannot) is `null`.
    pub fn tree(&self) -> Cow<'_, Value> {
        match self {
            Doc::Tree(v) => Cow::Borrowed(v),
            Doc::Text(t) => Cow::Owned(serde_json::from_str(t.get()).unwrap_or(Value::Null)),
        }
    }

    /// The tree to change in place (redaction, cutting); a text is parsed first, once.
    pub fn tree_mut(&mut self) -> &mut Value {
        if let Doc::Text(t) = self {
            *self = Doc::Tree(serde_json::from_str(t.get()).unwrap_or(Value::Null));
        }
        match self {
            Doc::Tree(v) => v,
            Doc::Text(_) => unreachable!("made a tree just above"),
        }
    }

    pub fn into_tree(self) -> Value {
        match self {
            Doc::Tree(v) => v,
            Doc::Text(t) => serde_json::from_str(t.get()).unwrap_or(Value::Null),
        }
    }

    /// The JSON text, when the document is held as text.
    pub fn text(&self) -> Option<&str> {
        match self {
            Doc::Text(t) => Some(t.get()),
            Doc::Tree(_) => None,
        }
    }
}

impl From<Value> for Doc {
    fn from(v: Value) -> Self {
        Doc::Tree(v)
    }
}

/// Equal when the trees are: a text and the tree it was written from compare equal.
impl PartialEq for Doc {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Doc::Text(a), Doc::Text(b)) if a.get() == b.get() => true,
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
        }
    }
}

impl Serialize for Doc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Doc::Tree(v) => v.serialize(s),
            Doc::Text(t) => t.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Doc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(d).map(Doc::Text)
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
    fn null_is_no_document_and_invalid_text_is_refused() {
        let held: Holder = serde_json::from_str(r#"{"doc":null}"#).unwrap();
        assert!(held.doc.is_none());
        assert!(serde_json::from_str::<Holder>(r#"{"doc":{"a":}"#).is_err());
    }
}
