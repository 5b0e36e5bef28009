//! Metadata trees of InfraKit's last version (its `Updatable` interface): a JSON tree read by
//! path, changed by proposing changes and committing the proposal with the hash the proposal
//! came with, so a commit fails instead of overwriting a change made in between.
//!
//! The hash is the original's: MD5 of the tree before and the tree proposed, each as compact
//! JSON with sorted keys, in lowercase hex.

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// A path into a tree: `a/b/c` on the wire (InfraKit's last version), or `["a","b","c"]`
/// (earlier ones). `.`, `""` and empty segments name the root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Path(Vec<String>);

impl Path {
    /// The root of the tree.
    pub fn root() -> Path {
        Path(Vec::new())
    }

    /// The path of `text`, segments separated by `/`.
    pub fn parse(text: &str) -> Path {
        Path(
            text.split('/')
                .filter(|s| !s.is_empty() && *s != ".")
                .map(str::to_string)
                .collect(),
        )
    }

    /// The segments, root first.
    pub fn segments(&self) -> &[String] {
        &self.0
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str(".")
        } else {
            f.write_str(&self.0.join("/"))
        }
    }
}

impl Serialize for Path {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Path {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Path, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Text(String),
            Segments(Vec<String>),
            Nothing(()),
        }
        Ok(match Wire::deserialize(d)? {
            Wire::Text(t) => Path::parse(&t),
            Wire::Segments(s) => Path::parse(&s.join("/")),
            Wire::Nothing(()) => Path::root(),
        })
    }
}

/// One change: put `value` at `path`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Where.
    #[serde(rename = "Path", default)]
    pub path: Path,
    /// What (`null` removes the key).
    #[serde(rename = "Value", default)]
    pub value: Value,
}

/// The value at `path` in `tree`, if there is one.
pub fn get<'a>(tree: &'a Value, path: &Path) -> Option<&'a Value> {
    path.segments()
        .iter()
        .try_fold(tree, |node, key| node.as_object()?.get(key))
}

/// The keys under `path` in `tree`, sorted (none when it is not an object).
pub fn keys(tree: &Value, path: &Path) -> Vec<String> {
    let mut keys: Vec<String> = get(tree, path)
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// `tree` with `changes` applied in order; objects are created along a path as needed, and a
/// change at the root replaces the whole tree (which must then be an object).
pub fn apply(tree: &Value, changes: &[Change]) -> Result<Value> {
    let mut out = match tree {
        Value::Object(_) => tree.clone(),
        _ => Value::Object(Map::new()),
    };
    for (i, change) in changes.iter().enumerate() {
        let Some((last, parents)) = change.path.segments().split_last() else {
            if !change.value.is_object() {
                return Err(Error::invalid(
                    format!("Changes[{i}].Value"),
                    "the root of the tree must be an object",
                ));
            }
            out = change.value.clone();
            continue;
        };
        let mut node = &mut out;
        for key in parents {
            let map = object(node);
            node = map
                .entry(key.clone())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        let map = object(node);
        if change.value.is_null() {
            map.remove(last);
        } else {
            map.insert(last.clone(), change.value.clone());
        }
    }
    Ok(out)
}

/// `node` as an object, replacing whatever else it held.
fn object(node: &mut Value) -> &mut Map<String, Value> {
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    match node {
        Value::Object(map) => map,
        _ => unreachable!("made an object above"),
    }
}

/// The hash a proposal is committed with: it names both the tree it was made from and the
/// tree proposed.
pub fn fingerprint(original: &Value, proposed: &Value) -> String {
    let mut hash = Md5::new();
    for v in [original, proposed] {
        hash.update(sorted(v).to_string().as_bytes());
    }
    data_encoding::HEXLOWER.encode(&hash.finalize())
}

/// `v` with object keys in sorted order, whatever map the JSON library keeps.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Checks a commit: `cas` must be the hash of `current` (the tree now) and `proposed`;
/// otherwise the tree changed since the proposal was made (`cas mismatch`, the original's
/// text).
pub fn check_cas(current: &Value, proposed: &Value, cas: &str) -> Result<()> {
    if fingerprint(current, proposed) == cas {
        Ok(())
    } else {
        Err(Error::plugin("cas mismatch"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_read_as_text_or_segments() {
        let p: Path = serde_json::from_value(json!("zones/east/size")).unwrap();
        assert_eq!(p.segments(), ["zones", "east", "size"]);
        let q: Path = serde_json::from_value(json!(["zones", "east", "size"])).unwrap();
        assert_eq!(p, q);
        for root in [json!("."), json!(""), json!(null), json!([])] {
            let r: Path = serde_json::from_value(root.clone()).unwrap();
            assert_eq!(r, Path::root(), "{root}");
        }
        assert_eq!(serde_json::to_value(&p).unwrap(), json!("zones/east/size"));
        assert_eq!(serde_json::to_value(Path::root()).unwrap(), json!("."));
    }

    #[test]
    fn get_and_keys_walk_the_tree() {
        let tree = json!({"zone": {"b": 2, "a": 1}, "size": 3});
        assert_eq!(get(&tree, &Path::parse("zone/a")), Some(&json!(1)));
        assert_eq!(get(&tree, &Path::parse("zone/c")), None);
        assert_eq!(get(&tree, &Path::parse("size/x")), None);
        assert_eq!(keys(&tree, &Path::root()), ["size", "zone"]);
        assert_eq!(keys(&tree, &Path::parse("zone")), ["a", "b"]);
        assert!(keys(&tree, &Path::parse("size")).is_empty());
    }

    #[test]
    fn changes_create_replace_and_remove() {
        let tree = json!({"a": {"x": 1}, "b": 2});
        let changes = [
            Change {
                path: Path::parse("a/y/z"),
                value: json!("new"),
            },
            Change {
                path: Path::parse("b"),
                value: Value::Null,
            },
            Change {
                path: Path::parse("b/c"),
                value: json!(true),
            },
        ];
        assert_eq!(
            apply(&tree, &changes).unwrap(),
            json!({"a": {"x": 1, "y": {"z": "new"}}, "b": {"c": true}})
        );
        let root = Change {
            path: Path::root(),
            value: json!(5),
        };
        assert!(apply(&tree, &[root])
            .unwrap_err()
            .to_string()
            .contains("Changes[0].Value"));
    }

    #[test]
    fn a_commit_fails_once_the_tree_changed() {
        let before = json!({"size": 3});
        let proposed = json!({"size": 5});
        let cas = fingerprint(&before, &proposed);
        assert_eq!(cas.len(), 32);
        assert!(check_cas(&before, &proposed, &cas).is_ok());
        let changed = json!({"size": 4});
        assert_eq!(
            check_cas(&changed, &proposed, &cas)
                .unwrap_err()
                .to_string(),
            "cas mismatch"
        );
        // Key order does not change the hash.
        let a: Value = serde_json::from_str(r#"{"x":1,"y":2}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"y":2,"x":1}"#).unwrap();
        assert_eq!(fingerprint(&a, &a), fingerprint(&b, &b));
    }
}
