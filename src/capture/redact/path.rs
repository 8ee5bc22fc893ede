//! The small JSON path syntax of `RedactConfig::json_paths`: parse once, replace what it names.
//!
//! A path is a chain of steps separated by `.`, with an optional leading `$` or `$.`:
//!
//! - `name` — the member `name` of an object (any characters but `.`, `[`, `]`);
//! - `*` — every member of an object;
//! - `[N]` — element `N` (0-based) of an array, written right after a step or at the start;
//! - `[*]` — every element of an array.
//!
//! Examples: `messages[*].content`, `$.user`, `metadata.email`, `contents[*].parts[*].text`,
//! `$[0]`. A step that does not fit the value (a key on an array, a missing member) selects
//! nothing; paths never create values.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    AnyKey,
    Index(usize),
    AnyIndex,
}

/// A parsed path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let err = |why: &str| Err(format!("json path {text:?}: {why}"));
        let mut rest = text.trim();
        if let Some(r) = rest.strip_prefix('$') {
            rest = r.strip_prefix('.').unwrap_or(r);
        }
        let mut steps = Vec::new();
        // `expect_name`: at the start of the path or after a `.`, where a member name may stand.
        let mut expect_name = true;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('[') {
                let Some((inside, after)) = r.split_once(']') else {
                    return err("unclosed '['");
                };
                let inside = inside.trim();
                if inside == "*" {
                    steps.push(Step::AnyIndex);
                } else {
                    match inside.parse::<usize>() {
                        Ok(i) => steps.push(Step::Index(i)),
                        Err(_) => return err("an index is a number or '*'"),
                    }
                }
                rest = after;
                expect_name = false;
            } else if let Some(r) = rest.strip_prefix('.') {
                if expect_name {
                    return err("empty step");
                }
                rest = r;
                expect_name = true;
                if rest.is_empty() {
                    return err("ends with '.'");
                }
            } else {
                if !expect_name {
                    return err("expected '.' or '[' after an index");
                }
                let end = rest.find(['.', '[', ']']).unwrap_or(rest.len());
                let (name, after) = rest.split_at(end);
                if name.is_empty() {
                    return err("unexpected ']'");
                }
                steps.push(if name == "*" {
                    Step::AnyKey
                } else {
                    Step::Key(name.to_owned())
                });
                rest = after;
                expect_name = false;
            }
        }
        if steps.is_empty() {
            return err("selects the whole document");
        }
        Ok(JsonPath { steps })
    }

    /// Replaces every value the path selects with `with`.
    pub fn replace(&self, value: &mut Value, with: &Value) {
        replace_at(&self.steps, value, with);
    }
}

fn replace_at(steps: &[Step], value: &mut Value, with: &Value) {
    let Some((step, rest)) = steps.split_first() else {
        *value = with.clone();
        return;
    };
    match (step, value) {
        (Step::Key(k), Value::Object(map)) => {
            if let Some(v) = map.get_mut(k) {
                replace_at(rest, v, with);
            }
        }
        (Step::AnyKey, Value::Object(map)) => {
            for v in map.values_mut() {
                replace_at(rest, v, with);
            }
        }
        (Step::Index(i), Value::Array(items)) => {
            if let Some(v) = items.get_mut(*i) {
                replace_at(rest, v, with);
            }
        }
        (Step::AnyIndex, Value::Array(items)) => {
            for v in items {
                replace_at(rest, v, with);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(path: &str, mut v: Value) -> Value {
        JsonPath::parse(path).unwrap().replace(&mut v, &json!("X"));
        v
    }

    #[test]
    fn parses_the_documented_forms() {
        for ok in [
            "messages[*].content",
            "$.user",
            "$user",
            "metadata.email",
            "a[0][1].b",
            "$[0]",
            "*.x",
        ] {
            assert!(JsonPath::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "$", "a..b", "a.", ".a", "a[", "a[x]", "a[0]b", "a]b", "$.",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn replaces_what_it_names_and_nothing_else() {
        let doc = json!({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}],
                         "user": "u1", "metadata": {"email": "a@b.c", "n": 1}});
        let out = apply("messages[*].content", doc.clone());
        assert_eq!(out["messages"][0]["content"], "X");
        assert!(
            out["messages"][1].get("content").is_none(),
            "paths never create values"
        );
        assert_eq!(apply("$.user", doc.clone())["user"], "X");
        let out = apply("metadata.email", doc.clone());
        assert_eq!(out["metadata"], json!({"email": "X", "n": 1}));
        assert_eq!(
            apply("messages[1].role", doc.clone())["messages"][1]["role"],
            "X"
        );
        assert_eq!(
            apply("metadata.*", doc.clone())["metadata"],
            json!({"email": "X", "n": "X"})
        );
        assert_eq!(
            apply("user.x", doc.clone()),
            doc,
            "a key on a string selects nothing"
        );
        assert_eq!(apply("messages.content", doc.clone()), doc);
        assert_eq!(apply("$[0]", json!([1, 2])), json!(["X", 2]));
    }
}
