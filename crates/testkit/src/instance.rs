//! Inputs of instance plugins written in one line: tags from pairs, a spec from properties and
//! tags.

use infrakit_spi::{Spec, Tags};
use serde_json::Value;

/// Tags from `(key, value)` pairs: `tags(&[("infrakit.group", "web"), ("tier", "front")])`.
pub fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A spec with these properties and tags, and nothing else (no Init, logical ID or
/// attachments).
pub fn spec(properties: Value, tags: Tags) -> Spec {
    Spec {
        properties,
        tags,
        ..Spec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tags_and_spec() {
        let t = tags(&[("tier", "web"), ("infrakit.group", "g")]);
        assert_eq!(t.len(), 2);
        assert_eq!(&t["tier"], "web");
        assert_eq!(&t["infrakit.group"], "g");
        assert!(tags(&[]).is_empty());

        let s = spec(json!({"Cmd": "sleep"}), t.clone());
        assert_eq!(s.properties, json!({"Cmd": "sleep"}));
        assert_eq!(s.tags, t);
        assert_eq!(
            Spec {
                properties: Value::Null,
                tags: Tags::new(),
                ..s
            },
            Spec::default()
        );
    }
}
