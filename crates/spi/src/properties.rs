//! [`Properties`]: what a plugin reports about an instance, kept as JSON text.

use std::fmt;

use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

/// The provider's report on one instance (`Description.Properties`): its state, addresses,
/// configuration, whatever the plugin describes, kept as the JSON text it was made or received
/// as.
///
/// A controller holds one per member on every observation and reads a field or two of it (the
/// vanilla flavor reads `State` and `Health`). Text of a few dozen bytes instead of a parsed
/// object (a B-tree node of over 600 bytes for the smallest object) is most of a large group's
/// memory. [`field`](Properties::field) reads one top-level field without building the rest;
/// [`to_value`](Properties::to_value) parses all of it. Two `Properties` are equal when their
/// JSON values are, whatever the spacing or key order of the text.
///
/// Serialised as the JSON it holds, which serde_json writes verbatim. For another data format,
/// convert with [`to_value`](Properties::to_value) first.
#[derive(Clone)]
pub struct Properties(Box<RawValue>);

impl Properties {
    /// The properties `value` stands for.
    pub fn new(value: &Value) -> Properties {
        // Writing a `Value` as JSON cannot fail: its keys are strings and it has no
        // non-finite numbers.
        Properties(serde_json::value::to_raw_value(value).expect("a JSON value serialises"))
    }

    /// Properties made of anything serde can write as JSON (e.g. a struct of the plugin's).
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Properties> {
        serde_json::value::to_raw_value(value).map(Properties)
    }

    /// Properties from JSON text, checked to be valid JSON.
    pub fn from_json(text: String) -> serde_json::Result<Properties> {
        RawValue::from_string(text).map(Properties)
    }

    /// The JSON text.
    pub fn as_json(&self) -> &str {
        self.0.get()
    }

    /// The properties as a JSON value.
    ///
    /// The text is valid JSON by construction; only nesting deeper than serde_json's limit
    /// of 128 levels fails to parse, and gives `null`.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }

    /// The properties read as `T`, which may borrow strings from them.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> serde_json::Result<T> {
        serde_json::from_str(self.0.get())
    }

    /// The top-level field `key` read as `T`: `None` when the properties are not an object,
    /// have no such field, or it is not a `T`. Other fields are skipped without being built.
    pub fn field<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let mut de = serde_json::Deserializer::from_str(self.0.get());
        let raw = de.deserialize_map(FindField(key)).ok()??;
        serde_json::from_str(raw.get()).ok()
    }
}

/// Finds one field of a JSON object as raw text; of repeated keys the last wins, as in
/// `serde_json::Value`.
struct FindField<'k>(&'k str);

impl<'de> Visitor<'de> for FindField<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(is_key) = map.next_key_seed(IsKey(self.0))? {
            if is_key {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Compares a key with the one wanted without allocating (unless it has escapes).
struct IsKey<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for IsKey<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for IsKey<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

impl From<Value> for Properties {
    fn from(value: Value) -> Properties {
        Properties::new(&value)
    }
}

impl From<&Value> for Properties {
    fn from(value: &Value) -> Properties {
        Properties::new(value)
    }
}

impl PartialEq for Properties {
    fn eq(&self, other: &Properties) -> bool {
        self.as_json() == other.as_json() || self.to_value() == other.to_value()
    }
}

impl PartialEq<Value> for Properties {
    fn eq(&self, other: &Value) -> bool {
        self.to_value() == *other
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_json())
    }
}

impl Serialize for Properties {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Properties, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(Properties)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_read_one_at_a_time() {
        let p = Properties::new(&json!({"State": "running", "Nested": {"State": "no"}, "N": 3}));
        assert_eq!(p.field::<String>("State").as_deref(), Some("running"));
        assert_eq!(p.field::<u32>("N"), Some(3));
        assert_eq!(p.field::<String>("N"), None, "not a string");
        assert_eq!(p.field::<String>("Missing"), None);
        assert_eq!(p.field::<Value>("Nested"), Some(json!({"State": "no"})));
        let not_an_object = Properties::new(&json!(["State"]));
        assert_eq!(not_an_object.field::<String>("State"), None);
        let escaped =
            Properties::from_json(r#"{"St\u0061te": "a\"b", "State": "last"}"#.into()).unwrap();
        assert_eq!(escaped.field::<String>("State").as_deref(), Some("last"));
    }

    #[test]
    fn equality_is_of_values_not_text() {
        let a = Properties::from_json(r#"{ "b": 1, "a": [true] }"#.to_string()).unwrap();
        let b = Properties::new(&json!({"a": [true], "b": 1}));
        assert_eq!(a, b);
        assert_eq!(a, json!({"a": [true], "b": 1}));
        assert_ne!(a, Properties::new(&json!({"a": [false], "b": 1})));
        assert_eq!(b.as_json(), r#"{"a":[true],"b":1}"#);
        assert!(Properties::from_json("{".to_string()).is_err());
    }

    #[test]
    fn written_verbatim_and_read_from_text_or_values() {
        let p: Properties = serde_json::from_str(r#"{"State":"running"}"#).unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"State":"running"}"#);
        let from_value: Properties = serde_json::from_value(json!({"State": "x"})).unwrap();
        assert_eq!(from_value.to_value(), json!({"State": "x"}));
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"State": "running"})
        );
        #[derive(Deserialize)]
        struct View<'a> {
            #[serde(rename = "State")]
            state: &'a str,
        }
        assert_eq!(p.parse::<View<'_>>().unwrap().state, "running");
    }
}
