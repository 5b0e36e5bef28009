//! [`Tags`]: the labels an instance carries, stored compactly.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instance's tags: string keys to string values, sorted by key, each key at most once.
///
/// Kept as one sorted vector of pairs rather than a B-tree. An instance carries a handful of
/// tags and a controller holds a set per instance of its groups on every observation, so the
/// difference (one exact-size allocation against a B-tree node of over 500 bytes) is most of a
/// large group's memory. Lookups are binary searches; iteration, equality, hashing and the
/// serialised form (a JSON object) follow the key order, as a `BTreeMap`'s do.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tags(Vec<(String, String)>);

impl Tags {
    /// No tags.
    pub const fn new() -> Tags {
        Tags(Vec::new())
    }

    /// The number of tags.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.position(key).ok().map(|i| &self.0[i].1)
    }

    /// True when `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    /// Sets `key` to `value`, returning the value it replaces.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        match self.position(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// The value of `key`, set to `default()` first when it is not set.
    pub fn get_or_insert_with(&mut self, key: String, default: impl FnOnce() -> String) -> &String {
        let i = match self.position(&key) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (key, default()));
                i
            }
        };
        &self.0[i].1
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.position(key).ok().map(|i| self.0.remove(i).1)
    }

    /// Keeps only the tags for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&String, &String) -> bool) {
        self.0.retain(|(k, v)| keep(k, v));
    }

    /// The tags in key order.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.0.iter())
    }

    /// The keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator {
        self.0.iter().map(|(k, _)| k)
    }

    /// The values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator {
        self.0.iter().map(|(_, v)| v)
    }

    /// True when these tags include every key/value pair of `want` (all tags match nothing).
    pub fn matches(&self, want: &Tags) -> bool {
        want.iter().all(|(k, v)| self.get(k) == Some(v))
    }

    /// Builds from pairs in any order; of repeated keys the last wins.
    fn from_pairs(mut pairs: Vec<(String, String)>) -> Tags {
        if !pairs.is_sorted_by(|a, b| a.0 < b.0) {
            // Stable, so equal keys stay in the order given; the last of each run is kept.
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            pairs.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    std::mem::swap(&mut later.1, &mut kept.1);
                }
                same
            });
        }
        pairs.shrink_to_fit();
        Tags(pairs)
    }
}

impl fmt::Debug for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl std::ops::Index<&str> for Tags {
    type Output = String;

    /// The value of `key`.
    ///
    /// # Panics
    ///
    /// When `key` is not set.
    fn index(&self, key: &str) -> &String {
        self.get(key)
            .unwrap_or_else(|| panic!("no tag {key:?} in {self:?}"))
    }
}

/// Iterator over [`Tags`] in key order.
#[derive(Debug, Clone)]
pub struct Iter<'a>(std::slice::Iter<'a, (String, String)>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a String, &'a String);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k, v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(k, v)| (k, v))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Tags {
    type Item = (&'a String, &'a String);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl IntoIterator for Tags {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl FromIterator<(String, String)> for Tags {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Tags {
        Tags::from_pairs(iter.into_iter().collect())
    }
}

impl Extend<(String, String)> for Tags {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<const N: usize> From<[(String, String); N]> for Tags {
    fn from(pairs: [(String, String); N]) -> Tags {
        Tags::from_pairs(Vec::from(pairs))
    }
}

impl From<std::collections::BTreeMap<String, String>> for Tags {
    fn from(map: std::collections::BTreeMap<String, String>) -> Tags {
        // Already sorted and unique.
        Tags(map.into_iter().collect())
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
        struct TagsVisitor;

        impl<'de> Visitor<'de> for TagsVisitor {
            type Value = Tags;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Tags, A::Error> {
                let mut pairs = Vec::with_capacity(access.size_hint().unwrap_or(0).min(64));
                while let Some(pair) = access.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(Tags::from_pairs(pairs))
            }
        }

        deserializer.deserialize_map(TagsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kept_sorted_with_the_last_of_repeated_keys() {
        let t = tags(&[("b", "1"), ("a", "2"), ("b", "3"), ("c", "4"), ("a", "5")]);
        let pairs: Vec<_> = t.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(pairs, [("a", "5"), ("b", "3"), ("c", "4")]);
        assert_eq!(t.get("b").map(String::as_str), Some("3"));
        assert_eq!(t.get("z"), None);
    }

    #[test]
    fn insert_remove_and_defaults_keep_the_order() {
        let mut t = Tags::new();
        assert_eq!(t.insert("m".into(), "1".into()), None);
        assert_eq!(t.insert("a".into(), "2".into()), None);
        assert_eq!(t.insert("z".into(), "3".into()), None);
        assert_eq!(t.insert("m".into(), "4".into()).as_deref(), Some("1"));
        assert_eq!(t.get_or_insert_with("b".into(), || "5".into()), "5");
        assert_eq!(t.get_or_insert_with("b".into(), || "6".into()), "5");
        assert_eq!(t.keys().map(String::as_str).collect::<String>(), "abmz");
        assert_eq!(t.remove("m").as_deref(), Some("4"));
        assert_eq!(t.remove("m"), None);
        t.retain(|k, _| k != "a");
        assert_eq!(t.keys().map(String::as_str).collect::<String>(), "bz");
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn serialised_as_a_sorted_object_and_read_back() {
        let t: Tags = serde_json::from_value(json!({"z": "1", "a": "2"})).unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"a":"2","z":"1"}"#);
        let from_text: Tags = serde_json::from_str(r#"{"k":"1","k":"2"}"#).unwrap();
        assert_eq!(from_text, tags(&[("k", "2")]));
        let err = serde_json::from_value::<Tags>(json!({"a": 1})).unwrap_err();
        assert!(err.to_string().contains("expected a string"), "{err}");
        assert_eq!(format!("{t:?}"), r#"{"a": "2", "z": "1"}"#);
    }

    #[test]
    fn matches_is_and() {
        let have = tags(&[("a", "1"), ("b", "2")]);
        let mut want = Tags::new();
        assert!(have.matches(&want));
        want.insert("a".into(), "1".into());
        assert!(have.matches(&want));
        want.insert("c".into(), "3".into());
        assert!(!have.matches(&want));
        assert!(!tags(&[("a", "9")]).matches(&tags(&[("a", "1")])));
    }

    #[test]
    fn equal_whatever_the_order_they_were_built_in() {
        let a = tags(&[("x", "1"), ("y", "2")]);
        let mut b = Tags::new();
        b.extend([("y".to_string(), "2".to_string())]);
        b.extend([("x".to_string(), "1".to_string())]);
        assert_eq!(a, b);
        let from_map: Tags = std::collections::BTreeMap::from([
            ("y".to_string(), "2".to_string()),
            ("x".to_string(), "1".to_string()),
        ])
        .into();
        assert_eq!(from_map, a);
    }
}
