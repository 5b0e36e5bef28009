//! The Instance plugin kind: create, tag, describe and destroy one resource at a time.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::serde_util::{empty_vec_as_null, null_as_default};
use crate::{Interface, InterfaceSpec, Result};

pub use crate::properties::Properties;
pub use crate::tags::Tags;

/// Tag naming the group an instance belongs to.
pub const GROUP_TAG: &str = "infrakit.group";
/// Tag holding the configuration hash an instance was created with.
pub const CONFIG_HASH_TAG: &str = "infrakit.config.hash";
/// Tag holding an instance's logical ID (pets).
pub const LOGICAL_ID_TAG: &str = "infrakit.logical_id";
/// Tag written by InfraKit before 2018 for the configuration hash; read for compatibility.
pub const LEGACY_CONFIG_TAG: &str = "infrakit.config_sha";
/// Tag that keeps an instance from being chosen by scale-in (`infrakit.protect=true`).
pub const PROTECT_TAG: &str = "infrakit.protect";
/// Tag carrying the token of the provision that created an instance, so a provision whose
/// answer was lost is recognised when its instance shows up.
pub const TOKEN_TAG: &str = "infrakit.provision.token";

/// The versions of the Instance API that clients of each InfraKit generation require.
pub const INTERFACES: &[InterfaceSpec] = &[
    InterfaceSpec {
        name: Interface::Instance.as_str(),
        version: "0.6.1",
    },
    InterfaceSpec {
        name: Interface::Instance.as_str(),
        version: "0.5.0",
    },
    InterfaceSpec {
        name: Interface::Instance.as_str(),
        version: "0.3.0",
    },
    InterfaceSpec {
        name: Interface::Instance.as_str(),
        version: "0.1.0",
    },
];

/// Something attached to an instance that outlives it, such as a volume.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attachment {
    /// Identifier of the attachment (e.g. a volume name).
    #[serde(rename = "ID")]
    pub id: String,
    /// Kind of attachment (e.g. `volume`, `ebs`).
    #[serde(rename = "Type", default)]
    pub kind: String,
}

/// What to create: the input of `Instance.Provision`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// Plugin-specific properties (command line, image, machine type, ...).
    #[serde(rename = "Properties", default)]
    pub properties: Value,
    /// Tags to put on the instance.
    #[serde(rename = "Tags", default, deserialize_with = "null_as_default")]
    pub tags: Tags,
    /// A script to run when the instance starts.
    #[serde(rename = "Init", default, deserialize_with = "null_as_default")]
    pub init: String,
    /// The logical ID of a pet, `null` for cattle.
    #[serde(rename = "LogicalID", default)]
    pub logical_id: Option<String>,
    /// Attachments to connect to the instance.
    #[serde(
        rename = "Attachments",
        default,
        deserialize_with = "null_as_default",
        serialize_with = "empty_vec_as_null"
    )]
    pub attachments: Vec<Attachment>,
}

/// What exists: one entry of `Instance.DescribeInstances`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Description {
    /// The plugin-assigned identifier.
    #[serde(rename = "ID")]
    pub id: String,
    /// The logical ID, if the instance is a pet.
    #[serde(rename = "LogicalID", default)]
    pub logical_id: Option<String>,
    /// The instance's tags.
    #[serde(rename = "Tags", default, deserialize_with = "null_as_default")]
    pub tags: Tags,
    /// Provider state, present when asked for with `Properties: true`.
    #[serde(
        rename = "Properties",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub properties: Option<Properties>,
    /// When the instance was created, where the plugin knows it (a process's start, a
    /// container's creation, an EC2 launch): an extension of InfraKit's description, absent from
    /// the original's plugins, whose instances are aged from when the controller first saw them.
    #[serde(
        rename = "CreatedAt",
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::serde_util::rfc3339_opt"
    )]
    pub created: Option<std::time::SystemTime>,
}

impl Description {
    /// The logical ID, falling back to the `infrakit.logical_id` tag.
    pub fn logical_id(&self) -> Option<&str> {
        self.logical_id
            .as_deref()
            .or_else(|| self.tags.get(LOGICAL_ID_TAG))
    }

    /// The configuration hash tag, new or legacy spelling.
    pub fn config_hash(&self) -> Option<&str> {
        self.tags
            .get(CONFIG_HASH_TAG)
            .or_else(|| self.tags.get(LEGACY_CONFIG_TAG))
    }
}

/// Why an instance is being destroyed (`Instance.Destroy`'s optional `Context`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyContext {
    /// `terminate`, `rolling_update`, `scale_down`, `unhealthy`, ...
    #[serde(rename = "Reason", default)]
    pub reason: String,
}

impl DestroyContext {
    /// A context with the given reason.
    pub fn reason(reason: &str) -> Self {
        DestroyContext {
            reason: reason.to_string(),
        }
    }
}

/// An Instance plugin.
///
/// Implementations know nothing about groups: the group controller works out membership from the
/// tags that the plugin keeps on each instance.
#[async_trait]
pub trait Instance: Send + Sync {
    /// Checks `properties` without side effects.
    async fn validate(&self, properties: &Value) -> Result<()>;
    /// Creates one instance and returns its ID.
    async fn provision(&self, spec: Spec) -> Result<String>;
    /// Merges `labels` into the instance's tags.
    async fn label(&self, id: &str, labels: &Tags) -> Result<()>;
    /// Destroys the instance permanently. Destroying an instance that is already gone succeeds.
    async fn destroy(&self, id: &str, context: &DestroyContext) -> Result<()>;
    /// Lists the instances that carry every one of `tags` (all instances when `tags` is empty).
    async fn describe_instances(&self, tags: &Tags, properties: bool) -> Result<Vec<Description>>;
    /// Creates one instance per spec, at most `parallel` at a time: one answer per spec, in
    /// order. The default calls [`Instance::provision`] for each; a client of a remote plugin
    /// sends them all in one `InstanceBatch.Provision` call when the plugin serves the
    /// extension ([`BATCH_EXTENSION`]).
    async fn provision_many(&self, specs: Vec<Spec>, parallel: usize) -> Vec<Result<String>> {
        provision_each(self, specs, parallel).await
    }
}

/// [`Instance::provision`] for each spec, at most `parallel` at a time, answers in order: what
/// [`Instance::provision_many`] does by default, and what a client does for a plugin without
/// the batch extension.
pub async fn provision_each<I: Instance + ?Sized>(
    instance: &I,
    specs: Vec<Spec>,
    parallel: usize,
) -> Vec<Result<String>> {
    use futures::StreamExt;
    futures::stream::iter(specs)
        .map(|spec| instance.provision(spec))
        .buffered(parallel.max(1))
        .collect()
        .await
}

/// The batch extension's interface: `InstanceBatch.Provision`, many provisions in one call.
pub const BATCH_EXTENSION: InterfaceSpec = InterfaceSpec {
    name: Interface::InstanceBatch.as_str(),
    version: "0.1.0",
};

/// `s` reduced to the characters that names of containers, directories and IDs safely allow
/// (`[a-zA-Z0-9_.-]`, others become `-`), starting with a letter or digit; `x` when nothing is
/// left.
pub fn safe_name(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        "x".to_string()
    } else {
        trimmed.to_string()
    }
}

/// True when `have` carries every key/value pair of `want`.
pub fn tags_match(have: &Tags, want: &Tags) -> bool {
    have.matches(want)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spec_round_trips_the_wire_shape() {
        let wire = json!({"Properties":{"Note":"v1"},"Tags":{"infrakit.group":"cattle"},"Init":"echo hello","LogicalID":null,"Attachments":null});
        let spec: Spec = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(spec.init, "echo hello");
        assert_eq!(serde_json::to_value(&spec).unwrap(), wire);
    }

    #[test]
    fn spec_accepts_nulls_and_missing_fields() {
        let spec: Spec = serde_json::from_value(
            json!({"Tags": null, "Init": null, "Attachments": [{"ID": "v1"}]}),
        )
        .unwrap();
        assert!(spec.tags.is_empty());
        assert_eq!(spec.attachments[0].id, "v1");
    }

    #[test]
    fn description_omits_empty_properties_and_falls_back_to_tag() {
        let d: Description = serde_json::from_value(
            json!({"ID":"i-1","LogicalID":null,"Tags":{"infrakit.logical_id":"db1"}}),
        )
        .unwrap();
        assert_eq!(d.logical_id(), Some("db1"));
        let back = serde_json::to_value(&d).unwrap();
        assert!(back.get("Properties").is_none());
    }

    #[test]
    fn description_properties_read_from_text_values_and_checked_paths() {
        let wire = r#"{"ID":"i-1","LogicalID":null,"Tags":{"b":"2","a":"1"},"Properties":{"State":"running","PID":7}}"#;
        let d: Description = serde_json::from_str(wire).unwrap();
        let p = d.properties.as_ref().unwrap();
        assert_eq!(p.field::<String>("State").as_deref(), Some("running"));
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"ID":"i-1","LogicalID":null,"Tags":{"a":"1","b":"2"},"Properties":{"State":"running","PID":7}}"#
        );
        let value: Value = serde_json::from_str(wire).unwrap();
        let checked: Description = crate::error::decode_at("Instance", &value).unwrap();
        assert_eq!(checked, d);
        let bad = serde_json::json!({"ID": "i-1", "Tags": {"a": 1}});
        let err = crate::error::decode_at::<Description>("Instance", &bad).unwrap_err();
        assert!(err.to_string().contains("Instance.Tags.a"), "{err}");
    }

    #[test]
    fn tags_match_is_and() {
        let have: Tags = [("a", "1"), ("b", "2")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut want = Tags::new();
        assert!(tags_match(&have, &want));
        want.insert("a", "1");
        assert!(tags_match(&have, &want));
        want.insert("c", "3");
        assert!(!tags_match(&have, &want));
    }
}
