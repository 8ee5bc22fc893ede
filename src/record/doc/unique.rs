//! A JSON tree read with every object's member names checked unique: what lets a document keep
//! the text it was received as beside its tree ([`super::Doc::Both`]).
//!
//! Why not `serde_json::Value`'s own reading: it keeps the last of two members with one name,
//! so a text with a repeated name holds more than its tree shows. Redaction reads the tree; a
//! secret in the member the tree dropped would be written out, in the text, unredacted. Written
//! by hand because no reader in serde_json reports the repeat (its visitor is private).
//!
//! What this reader refuses (the caller then reads a `serde_json::Value` alone, as before):
//! - a repeated member name;
//! - a member name in serde_json's private namespace (`$serde_json::private::…`). With the
//!   `raw_value` feature, serde_json reads an object opening with such a name as the JSON text
//!   in its string: every later reader of the stored text would see a document this tree holds
//!   as one opaque string, which redaction never looked inside;
//! - a float of 10¹² or more: `4111111111111111e1` is no card number to redaction (not an
//!   integer), but written as it came it keeps the 16 digits together, where serde_json writes
//!   `4.111111111111111e16`.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// A tree whose objects have no repeated member name.
pub(super) struct Unique(pub(super) Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Tree).map(Unique)
    }
}

struct Tree;

impl<'de> Visitor<'de> for Tree {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    /// As serde_json's own tree (a float JSON cannot hold is `null`: it never reads one), but
    /// see the module's comment for large ones.
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        if n.abs() >= 1e12 {
            return Err(E::custom("a large float is read as serde_json reads it"));
        }
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Unique::deserialize(d).map(|u| u.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(Unique(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if name.starts_with("$serde_json::private::") {
                return Err(de::Error::custom("a name serde_json reads its own way"));
            }
            let Unique(item) = map.next_value()?;
            if let Some(_earlier) = members.insert(name, item) {
                return Err(de::Error::custom("a member name is repeated"));
            }
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Option<Value> {
        serde_json::from_str::<Unique>(text).ok().map(|u| u.0)
    }

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            r#"{"a":[1,-2,2.5,1e11,18446744073709551615,-9223372036854775808],"b":{"c":null,"d":true}}"#,
            r#"["caf\u00e9","\ud83d\ude00","",{}]"#,
            "\"only a string\"",
            "0",
            "[999999999999.5,-999999999999.5]",
        ] {
            let ours = read(text).unwrap();
            assert_eq!(ours, serde_json::from_str::<Value>(text).unwrap(), "{text}");
        }
    }

    #[test]
    fn what_serde_json_reads_its_own_way_or_writes_otherwise_is_refused() {
        // serde_json reads this as the document in the string; a tree holding the string would
        // hide that document from redaction.
        let raw = r#"{"$serde_json::private::RawValue":"{\"api_key\":\"hunter2\"}"}"#;
        assert_eq!(
            serde_json::from_str::<Value>(raw).unwrap(),
            serde_json::json!({"api_key": "hunter2"})
        );
        assert!(read(raw).is_none());
        assert!(read(r#"[{"a":{"$serde_json::private::Number":"1"}}]"#).is_none());
        // A large float keeps its digits together as written; serde_json's text does not.
        assert!(read(r#"{"n":4111111111111111e1}"#).is_none());
        assert!(read("-1e12").is_none());
    }

    #[test]
    fn a_repeated_member_name_is_refused_at_any_depth() {
        assert!(read(r#"{"a":1,"a":2}"#).is_none());
        assert!(read(r#"[{"x":{"b":"secret","b":"ok"}}]"#).is_none());
        // serde_json's tree keeps the last one, silently: why this reader exists.
        let theirs: Value = serde_json::from_str(r#"{"b":"secret","b":"ok"}"#).unwrap();
        assert_eq!(theirs, serde_json::json!({"b": "ok"}));
        // The same name in two objects is no repeat.
        assert!(read(r#"{"a":{"n":1},"b":{"n":1}}"#).is_some());
    }
}
