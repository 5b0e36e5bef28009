//! [`Tags`]: the labels an instance carries, stored compactly.

use std::fmt;
use std::ops::Range;

use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instance's tags: string keys to string values, sorted by key, each key at most once.
///
/// All keys and values live in one string, in key order, with the end of each in a second
/// block: two allocations whatever the number of tags. An instance carries a handful of tags
/// and a controller holds a set per member of its groups on every observation, so at 100,000
/// instances this (about 130 bytes for a typical set) against a map of separately allocated
/// strings (a B-tree node alone is over 500 bytes) is a large part of its memory. Lookups are
/// binary searches; iteration, equality, hashing and the serialised form (a JSON object) follow
/// the key order, as a `BTreeMap<String, String>`'s do. Changes rebuild the set, which is cheap
/// at this size.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Tags {
    /// Key, value, key, value, ... with nothing between.
    text: Box<str>,
    /// Where each tag's key and value end in `text`.
    ends: Box<[(u32, u32)]>,
}

impl Tags {
    /// No tags.
    pub fn new() -> Tags {
        Tags::default()
    }

    /// The number of tags.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Tag `i`'s key and value.
    fn pair(&self, i: usize) -> (&str, &str) {
        let start = if i == 0 { 0 } else { self.ends[i - 1].1 } as usize;
        let (key_end, value_end) = self.ends[i];
        (
            &self.text[start..key_end as usize],
            &self.text[key_end as usize..value_end as usize],
        )
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.pair(mid).0.cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).ok().map(|i| self.pair(i).1)
    }

    /// True when `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    /// Sets `key` to `value`, returning the value it replaces.
    pub fn insert(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Option<String> {
        let (key, value) = (key.as_ref(), value.as_ref());
        let (old, at) = match self.position(key) {
            Ok(i) => (Some(self.pair(i).1.to_string()), i),
            Err(i) => (None, i),
        };
        let skip = usize::from(old.is_some());
        let mut b =
            Builder::with_capacity(self.len() + 1, self.text.len() + key.len() + value.len());
        for i in 0..at {
            b.push_pair(self.pair(i));
        }
        b.push_pair((key, value));
        for i in at + skip..self.len() {
            b.push_pair(self.pair(i));
        }
        *self = b.finish();
        old
    }

    /// The value of `key`, set to `default()` first when it is not set.
    pub fn get_or_insert_with(&mut self, key: &str, default: impl FnOnce() -> String) -> &str {
        if !self.contains_key(key) {
            self.insert(key, default());
        }
        self.get(key).unwrap_or_default()
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.position(key).ok()?;
        let old = self.pair(i).1.to_string();
        self.retain(|k, _| k != key);
        Some(old)
    }

    /// Keeps only the tags for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        let kept: Vec<(&str, &str)> = self.iter().filter(|(k, v)| keep(k, v)).collect();
        if kept.len() != self.len() {
            let mut b = Builder::with_capacity(kept.len(), self.text.len());
            for pair in kept {
                b.push_pair(pair);
            }
            *self = b.finish();
        }
    }

    /// The tags in key order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            tags: self,
            range: 0..self.len(),
        }
    }

    /// The keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator {
        self.iter().map(|(k, _)| k)
    }

    /// The values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator {
        self.iter().map(|(_, v)| v)
    }

    /// True when these tags include every key/value pair of `want` (no tags match anything).
    pub fn matches(&self, want: &Tags) -> bool {
        want.iter().all(|(k, v)| self.get(k) == Some(v))
    }

    /// Builds from pairs in any order; of repeated keys the last wins.
    fn from_pairs<K: AsRef<str>, V: AsRef<str>>(mut pairs: Vec<(K, V)>) -> Tags {
        if !pairs.is_sorted_by(|a, b| a.0.as_ref() < b.0.as_ref()) {
            // Stable, so equal keys stay in the order given; the last of each run is kept.
            pairs.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
            pairs.dedup_by(|later, kept| {
                let same = later.0.as_ref() == kept.0.as_ref();
                if same {
                    std::mem::swap(&mut later.1, &mut kept.1);
                }
                same
            });
        }
        let text = pairs
            .iter()
            .map(|(k, v)| k.as_ref().len() + v.as_ref().len())
            .sum();
        let mut b = Builder::with_capacity(pairs.len(), text);
        for (k, v) in &pairs {
            b.push_pair((k.as_ref(), v.as_ref()));
        }
        b.finish()
    }
}

/// Appends tags in key order.
struct Builder {
    text: String,
    ends: Vec<(u32, u32)>,
}

impl Builder {
    fn with_capacity(tags: usize, text: usize) -> Builder {
        Builder {
            text: String::with_capacity(text),
            ends: Vec::with_capacity(tags),
        }
    }

    fn push_pair(&mut self, (key, value): (&str, &str)) {
        self.text.push_str(key);
        let key_end = self.end();
        self.text.push_str(value);
        let value_end = self.end();
        self.ends.push((key_end, value_end));
    }

    fn end(&self) -> u32 {
        // Tags are a few short strings; 4 GiB of them is not a set of tags.
        u32::try_from(self.text.len()).expect("tags longer than 4 GiB")
    }

    fn finish(self) -> Tags {
        Tags {
            text: self.text.into_boxed_str(),
            ends: self.ends.into_boxed_slice(),
        }
    }
}

impl fmt::Debug for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl std::ops::Index<&str> for Tags {
    type Output = str;

    /// The value of `key`.
    ///
    /// # Panics
    ///
    /// When `key` is not set.
    fn index(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("no tag {key:?} in {self:?}"))
    }
}

/// Iterator over [`Tags`] in key order.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    tags: &'a Tags,
    range: Range<usize>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        self.range.next().map(|i| self.tags.pair(i))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.range.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.range.next_back().map(|i| self.tags.pair(i))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Tags {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl IntoIterator for Tags {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    /// The tags as owned pairs, in key order.
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Tags {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Tags {
        Tags::from_pairs(iter.into_iter().collect())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Extend<(K, V)> for Tags {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let mut pairs: Vec<(&str, &str)> = self.iter().collect();
        let added: Vec<(K, V)> = iter.into_iter().collect();
        if added.is_empty() {
            return;
        }
        pairs.extend(added.iter().map(|(k, v)| (k.as_ref(), v.as_ref())));
        *self = Tags::from_pairs(pairs);
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> From<[(K, V); N]> for Tags {
    fn from(pairs: [(K, V); N]) -> Tags {
        Tags::from_pairs(Vec::from(pairs))
    }
}

impl From<std::collections::BTreeMap<String, String>> for Tags {
    fn from(map: std::collections::BTreeMap<String, String>) -> Tags {
        map.iter().collect()
    }
}

impl Serialize for Tags {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Tags, D::Error> {
        deserializer.deserialize_map(TagsVisitor)
    }
}

/// Reads a JSON object's keys and values straight into a [`Builder`]'s text.
struct TagsVisitor;

impl<'de> Visitor<'de> for TagsVisitor {
    type Value = Tags;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of string values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Tags, A::Error> {
        let mut text = String::new();
        let mut spans: Vec<(Range<usize>, Range<usize>)> = Vec::new();
        loop {
            let key_start = text.len();
            if access.next_key_seed(AppendStr(&mut text))?.is_none() {
                break;
            }
            let key_end = text.len();
            access.next_value_seed(AppendStr(&mut text))?;
            spans.push((key_start..key_end, key_end..text.len()));
        }
        let sorted = spans.is_sorted_by(|a, b| text[a.0.clone()] < text[b.0.clone()]);
        if sorted {
            // The usual case (InfraKit and infrakit both write keys in order): already laid out.
            let mut b = Builder {
                ends: Vec::with_capacity(spans.len()),
                text: String::new(),
            };
            b.ends
                .extend(spans.iter().map(|(k, v)| (k.end as u32, v.end as u32)));
            if u32::try_from(text.len()).is_err() {
                return Err(serde::de::Error::custom("tags longer than 4 GiB"));
            }
            b.text = text;
            return Ok(b.finish());
        }
        Ok(Tags::from_pairs(
            spans
                .into_iter()
                .map(|(k, v)| (&text[k], &text[v]))
                .collect(),
        ))
    }
}

/// Appends a string (a key or a value) to the text being built.
struct AppendStr<'a>(&'a mut String);

impl<'de> DeserializeSeed<'de> for AppendStr<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for AppendStr<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<(), E> {
        self.0.push_str(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs.iter().copied().collect()
    }

    fn pairs(t: &Tags) -> Vec<(&str, &str)> {
        t.iter().collect()
    }

    #[test]
    fn kept_sorted_with_the_last_of_repeated_keys() {
        let t = tags(&[("b", "1"), ("a", "2"), ("b", "3"), ("c", "4"), ("a", "5")]);
        assert_eq!(pairs(&t), [("a", "5"), ("b", "3"), ("c", "4")]);
        assert_eq!(t.get("b"), Some("3"));
        assert_eq!(t.get("z"), None);
        assert_eq!(&t["c"], "4");
        assert_eq!(t.iter().next_back(), Some(("c", "4")));
        assert_eq!(t.iter().len(), 3);
    }

    #[test]
    fn empty_keys_and_values_are_tags_too() {
        let t = tags(&[("", "x"), ("k", ""), ("z", "")]);
        assert_eq!(pairs(&t), [("", "x"), ("k", ""), ("z", "")]);
        assert_eq!(t.get(""), Some("x"));
        assert_eq!(t.get("k"), Some(""));
        assert!(!t.contains_key("kz"));
    }

    #[test]
    fn insert_remove_and_defaults_keep_the_order() {
        let mut t = Tags::new();
        assert_eq!(t.insert("m", "1"), None);
        assert_eq!(t.insert("a", "2"), None);
        assert_eq!(t.insert("z", "3"), None);
        assert_eq!(t.insert("m", "4").as_deref(), Some("1"));
        assert_eq!(t.get_or_insert_with("b", || "5".into()), "5");
        assert_eq!(t.get_or_insert_with("b", || "6".into()), "5");
        assert_eq!(t.keys().collect::<String>(), "abmz");
        assert_eq!(t.values().collect::<String>(), "2543");
        assert_eq!(t.remove("m").as_deref(), Some("4"));
        assert_eq!(t.remove("m"), None);
        t.retain(|k, _| k != "a");
        assert_eq!(pairs(&t), [("b", "5"), ("z", "3")]);
        t.extend([("c".to_string(), "7".to_string()), ("b".into(), "8".into())]);
        assert_eq!(pairs(&t), [("b", "8"), ("c", "7"), ("z", "3")]);
    }

    #[test]
    fn serialised_as_a_sorted_object_and_read_back() {
        let t: Tags = serde_json::from_value(json!({"z": "1", "a": "2"})).unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"a":"2","z":"1"}"#);
        let from_text: Tags = serde_json::from_str(r#"{"k":"1","k":"2"}"#).unwrap();
        assert_eq!(from_text, tags(&[("k", "2")]));
        let escaped: Tags = serde_json::from_str(r#"{"a\"b":"\u00e9","b":"x"}"#).unwrap();
        assert_eq!(pairs(&escaped), [("a\"b", "é"), ("b", "x")]);
        let unsorted: Tags = serde_json::from_str(r#"{"b":"1","a":"2"}"#).unwrap();
        assert_eq!(unsorted, tags(&[("a", "2"), ("b", "1")]));
        let err = serde_json::from_value::<Tags>(json!({"a": 1})).unwrap_err();
        assert!(err.to_string().contains("expected a string"), "{err}");
        assert_eq!(format!("{t:?}"), r#"{"a": "2", "z": "1"}"#);
    }

    #[test]
    fn matches_is_and() {
        let have = tags(&[("a", "1"), ("b", "2")]);
        let mut want = Tags::new();
        assert!(have.matches(&want));
        want.insert("a", "1");
        assert!(have.matches(&want));
        want.insert("c", "3");
        assert!(!have.matches(&want));
        assert!(!tags(&[("a", "9")]).matches(&tags(&[("a", "1")])));
    }

    #[test]
    fn equal_whatever_the_order_they_were_built_in() {
        let a = tags(&[("x", "1"), ("y", "2")]);
        let mut b = Tags::new();
        b.extend([("y", "2")]);
        b.extend([("x", "1")]);
        assert_eq!(a, b);
        let from_map: Tags = std::collections::BTreeMap::from([
            ("y".to_string(), "2".to_string()),
            ("x".into(), "1".into()),
        ])
        .into();
        assert_eq!(from_map, a);
        // The boundary between key and value is part of the identity, not just the text.
        assert_ne!(tags(&[("ab", "c")]), tags(&[("a", "bc")]));
    }
}
