//! The Group plugin kind and the group spec: what a group is made of and how its configuration
//! is fingerprinted.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha1::{Digest, Sha1};

use crate::error::decode_at;
use crate::flavor::{Allocation, Health};
use crate::instance::Description;
use crate::serde_util::null_as_default;
use crate::{Error, Interface, InterfaceSpec, Result};

/// The versions of the Group API that clients of each InfraKit generation require.
pub const INTERFACES: &[InterfaceSpec] = &[
    InterfaceSpec {
        name: Interface::Group.as_str(),
        version: "0.1.1",
    },
    InterfaceSpec {
        name: Interface::Group.as_str(),
        version: "0.1.0",
    },
];

/// A group as committed: an ID and free-form properties (parsed by [`GroupProperties::parse`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupSpec {
    /// The group's ID.
    #[serde(rename = "ID", default, deserialize_with = "null_as_default")]
    pub id: String,
    /// The group's configuration.
    #[serde(rename = "Properties", default)]
    pub properties: Value,
}

/// A reference to a plugin plus the properties to hand it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginRef {
    /// Plugin name, optionally typed: `instance-file`, `flavor-swarm/worker`.
    #[serde(rename = "Plugin", default, deserialize_with = "null_as_default")]
    pub plugin: String,
    /// Properties passed to the plugin.
    #[serde(rename = "Properties", default)]
    pub properties: Value,
}

impl PluginRef {
    /// Splits the plugin name into the socket lookup name and the subtype (`""` for the default).
    pub fn lookup_and_type(&self) -> (&str, &str) {
        split_plugin_name(&self.plugin)
    }
}

/// Splits `name/type` into `(name, type)`; the type is `""` when absent.
pub fn split_plugin_name(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((lookup, kind)) => (lookup, kind),
        None => (name, ""),
    }
}

/// The parsed, validated properties of a group spec.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupProperties {
    /// How many instances, or which logical IDs.
    pub allocation: Allocation,
    /// The instance plugin and its properties.
    pub instance: PluginRef,
    /// The flavor plugin and its properties.
    pub flavor: PluginRef,
    /// Rolling update settings, kept verbatim (interpreted by the group controller).
    pub updating: Option<Value>,
    /// Health settings, kept verbatim (interpreted by the group controller).
    pub health: Option<Value>,
    /// Scaling settings, kept verbatim (interpreted by the group controller).
    pub scaling: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProperties {
    #[serde(rename = "Allocation", default)]
    allocation: Option<RawAllocation>,
    #[serde(rename = "Instance", default)]
    instance: Option<PluginRef>,
    #[serde(rename = "Flavor", default)]
    flavor: Option<PluginRef>,
    #[serde(rename = "Updating", default)]
    updating: Option<Value>,
    #[serde(rename = "Health", default)]
    health: Option<Value>,
    #[serde(rename = "Scaling", default)]
    scaling: Option<Value>,
}

/// The largest `Allocation.Size` a spec may ask for. Far beyond what one controller can run
/// (it plans every missing instance at once), and it keeps a typo such as `Size: 1e12` from
/// exhausting its memory.
pub const MAX_GROUP_SIZE: u64 = 1_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllocation {
    #[serde(rename = "Size", default)]
    size: Option<u64>,
    #[serde(rename = "LogicalIDs", default)]
    logical_ids: Option<Vec<String>>,
}

impl GroupProperties {
    /// Parses and validates a group spec. Errors name the bad field, e.g.
    /// `Properties.Allocation.Size: invalid type: floating point `2.5`, expected u64`.
    pub fn parse(spec: &GroupSpec) -> Result<GroupProperties> {
        if spec.id.trim().is_empty() {
            return Err(Error::invalid("ID", "group ID must not be blank"));
        }
        if spec.id.contains('/') || spec.id.chars().any(char::is_whitespace) {
            return Err(Error::invalid(
                "ID",
                format!("group ID '{}' must not contain '/' or spaces", spec.id),
            ));
        }
        if !spec.properties.is_object() {
            return Err(Error::invalid("Properties", "must be an object"));
        }
        let raw: RawProperties = decode_at("Properties", &spec.properties)?;
        let allocation = match raw.allocation {
            None => {
                return Err(Error::invalid(
                    "Properties.Allocation",
                    "must be set, with either Size or LogicalIDs",
                ))
            }
            Some(RawAllocation {
                size: Some(_),
                logical_ids: Some(_),
            }) => {
                return Err(Error::invalid(
                    "Properties.Allocation",
                    "only one of Size or LogicalIDs may be set",
                ))
            }
            Some(RawAllocation {
                size: None,
                logical_ids: None,
            }) => {
                return Err(Error::invalid(
                    "Properties.Allocation",
                    "must set either Size or LogicalIDs",
                ))
            }
            Some(RawAllocation {
                size: Some(size),
                logical_ids: None,
            }) if size > MAX_GROUP_SIZE => {
                return Err(Error::invalid(
                    "Properties.Allocation.Size",
                    format!("{size} is more than the largest group size, {MAX_GROUP_SIZE}"),
                ))
            }
            Some(RawAllocation {
                size: Some(size),
                logical_ids: None,
            }) => Allocation::size(size),
            Some(RawAllocation {
                size: None,
                logical_ids: Some(ids),
            }) => {
                validate_logical_ids(&ids)?;
                Allocation {
                    size: 0,
                    logical_ids: Some(ids),
                }
            }
        };
        let instance = required_plugin(raw.instance, "Properties.Instance")?;
        let flavor = required_plugin(raw.flavor, "Properties.Flavor")?;
        Ok(GroupProperties {
            allocation,
            instance,
            flavor,
            updating: raw.updating,
            health: raw.health,
            scaling: raw.scaling,
        })
    }

    /// The configuration hash (`infrakit.config.hash`), computed exactly as InfraKit does:
    /// SHA-1 over a key-sorted, indented JSON rendering of the `Instance` block followed by the
    /// `Flavor` block, base32-encoded, lower-cased, without padding. Allocation is not part of it.
    pub fn config_hash(&self) -> String {
        let mut hasher = Sha1::new();
        hasher.update(go_stable_format(&self.instance));
        hasher.update(go_stable_format(&self.flavor));
        let digest = hasher.finalize();
        data_encoding::BASE32
            .encode(&digest)
            .trim_end_matches('=')
            .to_ascii_lowercase()
    }

    /// Renders these properties back to JSON (for `InspectGroups`).
    pub fn to_value(&self) -> Value {
        let mut map = serde_json::Map::new();
        map.insert(
            "Allocation".into(),
            serde_json::to_value(&self.allocation).unwrap_or_default(),
        );
        map.insert(
            "Instance".into(),
            serde_json::to_value(&self.instance).unwrap_or_default(),
        );
        map.insert(
            "Flavor".into(),
            serde_json::to_value(&self.flavor).unwrap_or_default(),
        );
        if let Some(u) = &self.updating {
            map.insert("Updating".into(), u.clone());
        }
        if let Some(h) = &self.health {
            map.insert("Health".into(), h.clone());
        }
        if let Some(s) = &self.scaling {
            map.insert("Scaling".into(), s.clone());
        }
        Value::Object(map)
    }
}

fn required_plugin(p: Option<PluginRef>, path: &str) -> Result<PluginRef> {
    match p {
        None => Err(Error::invalid(path, "must be set, with a Plugin name")),
        Some(p) if p.plugin.trim().is_empty() => Err(Error::invalid(
            format!("{path}.Plugin"),
            "must not be blank",
        )),
        Some(p) => Ok(p),
    }
}

fn validate_logical_ids(ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Err(Error::invalid(
            "Properties.Allocation.LogicalIDs",
            "must not be empty",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, id) in ids.iter().enumerate() {
        if id.trim().is_empty() {
            return Err(Error::invalid(
                format!("Properties.Allocation.LogicalIDs[{i}]"),
                "must not be blank",
            ));
        }
        if !seen.insert(id) {
            return Err(Error::invalid(
                format!("Properties.Allocation.LogicalIDs[{i}]"),
                format!("duplicate logical ID '{id}'"),
            ));
        }
    }
    Ok(())
}

/// Go's `json.MarshalIndent(map, "  ", "  ")` of a value that went through
/// `map[string]interface{}`: sorted keys, numbers as float64, HTML-escaped strings.
fn go_stable_format(plugin: &PluginRef) -> Vec<u8> {
    let value = go_numbers(serde_json::to_value(plugin).unwrap_or_default());
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"  ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    value
        .serialize(&mut ser)
        .expect("serialising a JSON value cannot fail");
    let text = String::from_utf8(out).expect("serde_json writes UTF-8");
    let mut go = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => go.push_str("\n  "),
            '<' => go.push_str("\\u003c"),
            '>' => go.push_str("\\u003e"),
            '&' => go.push_str("\\u0026"),
            '\u{2028}' => go.push_str("\\u2028"),
            '\u{2029}' => go.push_str("\\u2029"),
            c => go.push(c),
        }
    }
    go.into_bytes()
}

/// Numbers decoded by Go into `interface{}` become float64; integral ones print as integers.
fn go_numbers(v: Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e21 && n.is_f64() => {
                if f < 0.0 {
                    Value::from(f as i64)
                } else {
                    Value::from(f as u64)
                }
            }
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(go_numbers).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, go_numbers(v))).collect()),
        other => other,
    }
}

/// Which configuration an instance runs, relative to the group's current spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigState {
    /// Created from the current spec.
    #[serde(rename = "current")]
    Current,
    /// Created from an earlier spec; a rolling update will replace it.
    #[serde(rename = "old")]
    Old,
}

/// Status of one instance, as the group controller sees it (an infrakit extension).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// Instance ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Logical ID (pets).
    #[serde(rename = "LogicalID", default)]
    pub logical_id: Option<String>,
    /// Current or old configuration.
    #[serde(rename = "Config")]
    pub config: ConfigState,
    /// Health as last reported by the flavor.
    #[serde(rename = "Health")]
    pub health: Health,
    /// Seconds since the instance was created, where its plugin says (`CreatedAt`), else since
    /// the controller first saw it.
    #[serde(rename = "AgeSeconds", default)]
    pub age_seconds: u64,
}

/// Status of a whole group (an infrakit extension to `DescribeGroup`; original clients ignore it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// Desired number of instances.
    #[serde(rename = "Desired")]
    pub desired: usize,
    /// Instances that exist.
    #[serde(rename = "Actual")]
    pub actual: usize,
    /// Instances reported healthy.
    #[serde(rename = "Healthy")]
    pub healthy: usize,
    /// The configuration hash of the current spec.
    #[serde(rename = "ConfigHash", default)]
    pub config_hash: String,
    /// What the controller is doing or waiting for, in words.
    #[serde(rename = "Message", default)]
    pub message: String,
    /// Per-instance status.
    #[serde(rename = "Instances", default)]
    pub instances: Vec<InstanceStatus>,
    /// The configuration rollout, if one has happened.
    #[serde(rename = "Rollout", default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
}

/// Progress of a configuration rollout (an infrakit extension).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutStatus {
    /// `progressing`, `paused`, `complete`, `rolling back`, `rolled back` or `failed`.
    #[serde(rename = "Phase")]
    pub phase: String,
    /// Instances on the current configuration.
    #[serde(rename = "Updated")]
    pub updated: usize,
    /// Instances wanted.
    #[serde(rename = "Total")]
    pub total: usize,
    /// Why the rollout is paused or failed, if it is.
    #[serde(rename = "Reason", default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// What a commit would do, step by step (an infrakit extension, `Group.PlanGroup`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanPreview {
    /// InfraKit's one-sentence summary (the `Details` of a pretend commit).
    #[serde(rename = "Details")]
    pub details: String,
    /// The steps, in order, assuming new instances become healthy.
    #[serde(rename = "Steps", default)]
    pub steps: Vec<String>,
    /// The lowest number of healthy instances at any point of the change.
    #[serde(rename = "MinHealthy")]
    pub min_healthy: usize,
    /// The highest number of instances at any point of the change.
    #[serde(rename = "MaxInstances")]
    pub max_instances: usize,
}

/// The result of `Group.DescribeGroup`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupDescription {
    /// The member instances.
    #[serde(rename = "Instances", default, deserialize_with = "null_as_default")]
    pub instances: Vec<Description>,
    /// True when no update is in progress and the group has the desired members.
    #[serde(rename = "Converged", default)]
    pub converged: bool,
    /// Extended status (infrakit only).
    #[serde(rename = "Status", default, skip_serializing_if = "Option::is_none")]
    pub status: Option<GroupStatus>,
}

/// A Group plugin: keeps groups of instances matching their specs.
#[async_trait]
pub trait Group: Send + Sync {
    /// Starts managing a group, or updates it; returns a human description of the plan.
    /// With `pretend`, nothing changes.
    async fn commit_group(&self, spec: GroupSpec, pretend: bool) -> Result<String>;
    /// Stops managing a group, leaving its instances alone.
    async fn free_group(&self, id: &str) -> Result<()>;
    /// Describes a group's members.
    async fn describe_group(&self, id: &str) -> Result<GroupDescription>;
    /// Stops managing a group and destroys all its instances.
    async fn destroy_group(&self, id: &str) -> Result<()>;
    /// The specs of all managed groups.
    async fn inspect_groups(&self) -> Result<Vec<GroupSpec>>;
    /// Destroys the given members and shrinks the group by as many.
    async fn destroy_instances(&self, id: &str, instances: &[String]) -> Result<()>;
    /// The group's target size.
    async fn size(&self, id: &str) -> Result<usize>;
    /// Changes the group's target size.
    async fn set_size(&self, id: &str, size: usize) -> Result<()>;

    /// Describes, step by step, what committing `spec` would do (infrakit extension).
    async fn plan_group(&self, spec: GroupSpec) -> Result<PlanPreview> {
        Err(crate::Error::plugin(format!(
            "this group plugin cannot preview plans (group {})",
            spec.id
        )))
    }

    /// Pauses, resumes or undoes a group's rollout (infrakit extension).
    async fn rollout(&self, id: &str, action: RolloutAction) -> Result<()> {
        Err(crate::Error::plugin(format!(
            "this group plugin cannot {} rollouts (group {id})",
            action.as_str()
        )))
    }
}

/// An operator's command to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutAction {
    /// Stop replacing instances.
    #[serde(rename = "pause")]
    Pause,
    /// Continue, also past a partition.
    #[serde(rename = "resume")]
    Resume,
    /// Go back to the previous configuration.
    #[serde(rename = "undo")]
    Undo,
}

impl RolloutAction {
    /// The lower-case verb.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutAction::Pause => "pause",
            RolloutAction::Resume => "resume",
            RolloutAction::Undo => "undo",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_beyond_the_largest_group_are_refused_at_their_path() {
        let spec = GroupSpec {
            id: "w".into(),
            properties: serde_json::json!({
                "Allocation": {"Size": 1_000_000_000_000u64},
                "Instance": {"Plugin": "i"},
                "Flavor": {"Plugin": "f"},
            }),
        };
        let e = GroupProperties::parse(&spec).unwrap_err().to_string();
        assert!(e.contains("Properties.Allocation.Size"), "{e}");
        assert!(e.contains("1000000"), "{e}");
    }
    use serde_json::json;

    fn spec(props: Value) -> GroupSpec {
        GroupSpec {
            id: "cattle".into(),
            properties: props,
        }
    }

    fn vector(init: &str) -> GroupSpec {
        spec(json!({
            "Allocation": {"Size": 2},
            "Instance": {"Plugin": "instance-file", "Properties": {"Note": "v1"}},
            "Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Init": [init], "Tags": {"tier": "web"}}}
        }))
    }

    #[test]
    fn config_hash_matches_the_recorded_test_vector() {
        let p = GroupProperties::parse(&vector("echo hello")).unwrap();
        assert_eq!(p.config_hash(), "rsfonnrfmaykaiytaj26ud5ixjk7m4rd");
        let p = GroupProperties::parse(&vector("echo hello2")).unwrap();
        assert_eq!(p.config_hash(), "6mwiha3atjemvd5xvtnpt6iemtnristq");
    }

    #[test]
    fn config_hash_ignores_allocation_and_key_order() {
        let a = GroupProperties::parse(&vector("x")).unwrap();
        let mut b = vector("x");
        b.properties["Allocation"] = json!({"Size": 7});
        let b = GroupProperties::parse(&b).unwrap();
        assert_eq!(a.config_hash(), b.config_hash());
    }

    fn err_of(props: Value) -> String {
        GroupProperties::parse(&spec(props))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_specs_name_the_field() {
        let i = json!({"Plugin": "instance-file"});
        let f = json!({"Plugin": "flavor-vanilla"});
        assert!(err_of(json!({"Instance": i, "Flavor": f})).starts_with("Properties.Allocation:"));
        assert!(err_of(
            json!({"Allocation": {"Size": 1, "LogicalIDs": ["a"]}, "Instance": i, "Flavor": f})
        )
        .contains("only one of Size or LogicalIDs"));
        assert!(
            err_of(json!({"Allocation": {"Size": 2.5}, "Instance": i, "Flavor": f}))
                .starts_with("Properties.Allocation.Size:")
        );
        assert!(
            err_of(json!({"Allocation": {"Size": "two"}, "Instance": i, "Flavor": f}))
                .starts_with("Properties.Allocation.Size:")
        );
        assert!(err_of(json!({"Allocation": {"Size": 1}, "Flavor": f}))
            .starts_with("Properties.Instance:"));
        assert!(err_of(
            json!({"Allocation": {"Size": 1}, "Instance": {"Plugin": ""}, "Flavor": f})
        )
        .starts_with("Properties.Instance.Plugin:"));
        assert!(err_of(
            json!({"Allocation": {"LogicalIDs": ["a", "a"]}, "Instance": i, "Flavor": f})
        )
        .starts_with("Properties.Allocation.LogicalIDs[1]:"));
        assert!(
            err_of(json!({"Allocation": {"Sise": 1}, "Instance": i, "Flavor": f}))
                .starts_with("Properties.Allocation.Sise: unknown field")
        );
        let blank = GroupSpec {
            id: " ".into(),
            properties: json!({}),
        };
        assert!(GroupProperties::parse(&blank)
            .unwrap_err()
            .to_string()
            .starts_with("ID:"));
    }

    #[test]
    fn plugin_names_split_into_lookup_and_type() {
        assert_eq!(
            split_plugin_name("flavor-swarm/worker"),
            ("flavor-swarm", "worker")
        );
        assert_eq!(split_plugin_name("instance-file"), ("instance-file", ""));
    }
}
