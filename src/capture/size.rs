//! A cheap estimate of an entry's size in memory and as JSON, for the byte-bounded queue:
//! a walk over the strings and values, no serialization.

use super::{CaptureRecord, Reassembled};
use crate::record::Doc;
use crate::store::Entry;
use serde_json::Value;

/// Bytes for the fixed-size fields of a record and the JSON keys around them.
const RECORD_BASE: usize = 640;

pub(crate) fn estimate(entry: &Entry) -> usize {
    match entry {
        Entry::Record(record) => record_size(record),
        Entry::ClientTimings(t) => 64 + t.id.len() + value_size(&t.timings),
        Entry::Feedback(f) => {
            96 + f.id.len()
                + f.label.as_ref().map_or(0, String::len)
                + f.comment.as_ref().map_or(0, String::len)
        }
    }
}

fn record_size(r: &CaptureRecord) -> usize {
    let optional = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    RECORD_BASE
        + r.id.len()
        + r.route.len()
        + r.api.len()
        + optional(&r.model)
        + r.method.len()
        + r.path.len()
        + r.tier.len()
        + optional(&r.error)
        + r.upstream_timings.as_ref().map_or(0, doc_size)
        + r.request.as_ref().map_or(0, doc_size)
        + r.response.as_ref().map_or(0, response_size)
        + r.deltas.iter().map(|d| 56 + d.text.len()).sum::<usize>()
}

fn response_size(r: &Reassembled) -> usize {
    64 + r.text.len()
        + r.reasoning.len()
        + r.finish_reason.as_ref().map_or(0, String::len)
        + r.tool_calls
            .iter()
            .map(|t| 40 + t.id.len() + t.name.len() + t.arguments.len())
            .sum::<usize>()
        + r.body.as_ref().map_or(0, doc_size)
}

/// A document's JSON length: exact for a text, estimated for a tree; both for a document that
/// holds both (memory, not output, is what the queue's budget bounds).
fn doc_size(doc: &Doc) -> usize {
    match doc {
        Doc::Text(t) => t.get().len(),
        Doc::Both { tree, text } => text.len() + value_size(tree),
        Doc::Tree(v) => value_size(v),
    }
}

/// Roughly the JSON length of `value` (strings without escapes), walked with an explicit
/// stack so that nesting depth cannot overflow the thread's stack.
fn value_size(value: &Value) -> usize {
    let mut total = 0;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        total += match value {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 20,
            Value::String(s) => s.len() + 2,
            Value::Array(items) => {
                stack.extend(items);
                2 + items.len()
            }
            Value::Object(map) => {
                stack.extend(map.values());
                2 + map.keys().map(|k| k.len() + 4).sum::<usize>()
            }
        };
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn estimate_is_close_to_the_json_length() {
        let value = json!({"model": "m", "messages": [{"role": "user", "content": "hello there"}], "n": 1, "stream": true});
        let real = serde_json::to_string(&value).unwrap().len();
        let guess = value_size(&value);
        assert!(guess >= real && guess <= real * 2, "{guess} vs {real}");
        // Read back as text, the document's size is its length.
        let doc: Doc = serde_json::from_str(&serde_json::to_string(&value).unwrap()).unwrap();
        assert_eq!(doc_size(&doc), real);
        assert_eq!(doc_size(&Doc::Tree(value.clone())), guess);
        // Received as text, it holds its tree too.
        let text = serde_json::to_string(&value).unwrap();
        let both = Doc::received(text.as_bytes()).unwrap();
        assert!(both.text().is_some());
        assert_eq!(doc_size(&both), real + guess);
    }
}
