//! JSON read strictly: a key that appears twice in one object is an error.
//!
//! serde_json keeps the last value of a repeated key in silence, so
//! `{"id":"a","id":"b"}` would import as `b` where another reader of the same export
//! takes `a`. Such a line is ambiguous; the NDJSON reader quarantines it with the key
//! named instead of guessing.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses JSON text into a value in which no object repeats a key.
pub fn parse(text: &str) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = Strict { top: true }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Whether a parse error is a repeated key (rather than text that is not JSON).
pub fn is_repeated_key(e: &serde_json::Error) -> bool {
    e.classify() == serde_json::error::Category::Data
}

/// A value at the top of the text (its keys are an activity's fields) or nested.
#[derive(Clone, Copy)]
struct Strict {
    top: bool,
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict { top: false })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let key = crate::activity::truncate(&key, 60);
                return Err(de::Error::custom(if self.top {
                    format!("field `{key}` appears twice (each field may be given once)")
                } else {
                    format!("key `{key}` appears twice in a nested object")
                }));
            }
            let value = map.next_value_seed(Strict { top: false })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_at_any_depth_is_an_error_naming_it() {
        let e = parse(r#"{"id":"a","kind":"download","id":"b"}"#).unwrap_err();
        assert!(is_repeated_key(&e));
        assert!(e.to_string().starts_with("field `id` appears twice"), "{e}");
        let e = parse(r#"{"properties":{"plan":"pro","plan":"free"}}"#).unwrap_err();
        assert!(e.to_string().starts_with("key `plan` appears twice in a nested object"), "{e}");
        let e = parse(r#"{"id":"a""#).unwrap_err();
        assert!(!is_repeated_key(&e));
    }

    #[test]
    fn without_repeated_keys_it_reads_what_serde_json_reads() {
        for text in [r#"{"a":[1,-2,3.5,1e400,null,true,"x\u00e9"],"b":{"c":{}}}"#, "[]", "12", r#""s""#] {
            let ours = parse(text);
            let theirs = serde_json::from_str::<Value>(text);
            assert_eq!(ours.is_ok(), theirs.is_ok(), "{text}");
            if let (Ok(a), Ok(b)) = (ours, theirs) {
                assert_eq!(a, b, "{text}");
            }
        }
    }
}
