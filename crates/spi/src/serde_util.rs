//! Serde helpers for Go-style JSON: `null` where Go writes nil maps and slices.

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
