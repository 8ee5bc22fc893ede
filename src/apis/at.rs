//! Reading a JSON value at a fixed path (`/choices/0/message`) without allocating.
//!
//! Written here rather than using `serde_json::Value::pointer`, which allocates two `String`s
//! per path segment (to undo `~0`/`~1` escapes) on every call: the stream interpreters call it
//! per event, and record building per capture. Our paths are literals without escapes.

use serde_json::Value;

pub trait At {
    /// The value at `path` (segments after a leading `/`; an array index is a decimal number).
    /// Unlike a JSON Pointer, `~` is not an escape, and an index such as `01` or `+1` is read
    /// as a number: the literal paths passed here contain neither.
    fn at(&self, path: &str) -> Option<&Value>;
}

impl At for Value {
    fn at(&self, path: &str) -> Option<&Value> {
        debug_assert!(path.starts_with('/') && !path.contains('~'), "{path}");
        path.split('/').skip(1).try_fold(self, |v, token| match v {
            Value::Object(map) => map.get(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::At;
    use serde_json::json;

    #[test]
    fn reads_what_a_json_pointer_reads() {
        let v = json!({"a": {"b": [10, {"c": "x"}]}, "": 1, "n": null});
        for path in [
            "/a",
            "/a/b",
            "/a/b/0",
            "/a/b/1/c",
            "/a/b/2",
            "/a/b/x",
            "/a/c",
            "/n",
            "/n/x",
            "/",
            "/a/b/1/c/d",
        ] {
            assert_eq!(v.at(path), v.pointer(path), "{path}");
        }
    }
}
