//! What Terraform actually created: the output of `terraform show -json`, parsed.
//!
//! An instance exists when its record (the output `infrakit_<id>`, see [`crate::render`]) is in
//! the state *and* its primary resource is, managed and not tainted. A resource removed outside
//! the plugin (`terraform state rm`, `terraform destroy -target`) therefore makes its instance
//! disappear, whatever the files say; a resource whose creation failed half-way (tainted) is no
//! instance either.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::render::{Record, OUTPUT_PREFIX};

/// The parsed state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// Managed and data resources of the root module, in state order.
    pub resources: Vec<Resource>,
    /// Root module outputs by name.
    pub outputs: BTreeMap<String, Value>,
}

/// One resource instance in the state.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Resource {
    /// Full address, e.g. `terraform_data.instance-1-abc` or `aws_ebs_volume.x[0]`.
    pub address: String,
    /// `managed` or `data`.
    #[serde(default)]
    pub mode: String,
    /// Resource type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Resource name.
    pub name: String,
    /// `count`/`for_each` key, if any.
    #[serde(default)]
    pub index: Option<Value>,
    /// The attributes.
    #[serde(default)]
    pub values: Value,
    /// True when creation failed half-way and Terraform will replace it.
    #[serde(default)]
    pub tainted: bool,
}

#[derive(Deserialize)]
struct Show {
    #[serde(default)]
    values: Option<Values>,
}

#[derive(Deserialize)]
struct Values {
    #[serde(default)]
    outputs: BTreeMap<String, ShowOutput>,
    #[serde(default)]
    root_module: Option<Module>,
}

#[derive(Deserialize)]
struct ShowOutput {
    #[serde(default)]
    value: Value,
}

#[derive(Deserialize)]
struct Module {
    #[serde(default)]
    resources: Vec<Resource>,
}

/// An instance found in the state.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// What the plugin recorded.
    pub record: Record,
    /// The primary resource's attributes.
    pub values: Value,
}

impl State {
    /// Parses the output of `terraform show -json`.
    pub fn parse(json: &[u8]) -> Result<State, serde_json::Error> {
        let show: Show = serde_json::from_slice(json)?;
        let Some(values) = show.values else {
            return Ok(State::default());
        };
        Ok(State {
            resources: values.root_module.map(|m| m.resources).unwrap_or_default(),
            outputs: values
                .outputs
                .into_iter()
                .map(|(k, o)| (k, o.value))
                .collect(),
        })
    }

    /// The managed, untainted root resource at `address` (no `count`/`for_each` key).
    pub fn managed(&self, address: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| {
            r.mode == "managed" && r.address == address && r.index.is_none() && !r.tainted
        })
    }

    /// The instances: recorded ones whose primary resource exists, sorted by ID.
    pub fn instances(&self) -> Vec<Found> {
        let mut out: Vec<Found> = self
            .outputs
            .iter()
            .filter(|(name, _)| name.starts_with(OUTPUT_PREFIX))
            .filter_map(|(name, v)| {
                let record: Record = serde_json::from_value(v.clone()).ok()?;
                if name[OUTPUT_PREFIX.len()..] != record.id {
                    return None;
                }
                let primary = self.managed(&record.primary)?;
                Some(Found {
                    values: primary.values.clone(),
                    record,
                })
            })
            .collect();
        out.sort_by(|a, b| a.record.id.cmp(&b.record.id));
        out
    }

    /// The instance `id`, if it exists.
    pub fn instance(&self, id: &str) -> Option<Found> {
        self.instances().into_iter().find(|f| f.record.id == id)
    }

    /// True when anything of instance `id` is still in the state: a resource named `id` or
    /// `id-<name>`, or its record.
    pub fn holds_anything_of(&self, id: &str) -> bool {
        self.outputs.contains_key(&crate::render::output_name(id))
            || self.resources.iter().any(|r| belongs_to(&r.name, id))
    }
}

/// True when a resource named `name` was written for instance `id` (its primary or one of its
/// extra resources).
pub fn belongs_to(name: &str, id: &str) -> bool {
    name == id
        || name
            .strip_prefix(id)
            .is_some_and(|rest| rest.starts_with('-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn show(resources: Value, outputs: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "format_version": "1.0",
            "values": {"outputs": outputs, "root_module": {"resources": resources}}
        }))
        .unwrap()
    }

    fn res(address: &str, extra: Value) -> Value {
        let (kind, name) = address.split_once('.').unwrap();
        let mut r = json!({"address": address, "mode": "managed", "type": kind, "name": name,
            "values": {"id": format!("uuid-{name}")}});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    }

    fn record(id: &str, lid: &str) -> Value {
        json!({"value": {"ID": id, "LogicalID": lid, "Tags": {"infrakit.group": "g"},
            "Primary": format!("terraform_data.{id}")}, "sensitive": false})
    }

    #[test]
    fn an_empty_state_has_no_values() {
        let s = State::parse(br#"{"format_version":"1.0"}"#).unwrap();
        assert_eq!(s, State::default());
        assert!(s.instances().is_empty());
    }

    #[test]
    fn instances_need_their_record_and_a_healthy_primary() {
        let s = State::parse(&show(
            json!([
                res("terraform_data.a", json!({})),
                res("terraform_data.a-disk", json!({})),
                res("terraform_data.b", json!({"tainted": true})),
                res("terraform_data.shared", json!({})),
                res("terraform_data.d", json!({"index": 0})),
            ]),
            json!({
                "infrakit_a": record("a", "db1"),
                "infrakit_b": record("b", ""),
                "infrakit_c": record("c", ""),
                "infrakit_d": record("d", ""),
                "infrakit_e": record("x", ""),
                "user_output": {"value": 3},
            }),
        ))
        .unwrap();
        let found = s.instances();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].record.id, "a");
        assert_eq!(found[0].record.logical_id, "db1");
        assert_eq!(found[0].values["id"], "uuid-a");
        assert!(s.instance("b").is_none(), "tainted");
        assert!(
            s.instance("c").is_none(),
            "primary gone (state rm or destroy -target)"
        );
        assert!(s.holds_anything_of("a"));
        assert!(s.holds_anything_of("c"), "its record");
        assert!(!s.holds_anything_of("sh"));
    }

    #[test]
    fn names_belong_to_their_instance() {
        assert!(belongs_to("i-1", "i-1"));
        assert!(belongs_to("i-1-disk", "i-1"));
        assert!(!belongs_to("i-10", "i-1"));
        assert!(!belongs_to("x-i-1", "i-1"));
    }
}
