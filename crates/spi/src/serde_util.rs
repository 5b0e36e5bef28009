//! Serde helpers for Go-style JSON: `null` where Go writes nil maps and slices, and optional
//! RFC 3339 times.

use serde::{Deserialize, Deserializer, Serializer};

/// Deserialises `null` (or a missing field, with `#[serde(default)]`) as `T::default()`.
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Serialises an empty vector as `null`, as Go does for a nil slice.
pub fn empty_vec_as_null<S, T>(v: &[T], s: S) -> Result<S::Ok, S::Error>
where
    S: Serializer,
    T: serde::Serialize,
{
    if v.is_empty() {
        s.serialize_none()
    } else {
        s.collect_seq(v)
    }
}

/// An optional time as RFC 3339 text (`2026-12-02T07:33:18Z`). A value that does not parse reads
/// as absent: the field is an extension, and a peer's odd time must not cost its description.
pub mod rfc3339_opt {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the time to the second, in UTC.
    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.collect_str(&humantime::format_rfc3339_seconds(*t)),
            None => s.serialize_none(),
        }
    }

    /// Reads RFC 3339 text (UTC, with or without fractions of a second); anything else is
    /// `None`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        let text = Option::<serde_json::Value>::deserialize(d)?;
        Ok(text
            .as_ref()
            .and_then(serde_json::Value::as_str)
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok()))
    }
}
