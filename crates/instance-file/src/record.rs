//! What one instance file holds ([`InstanceFile`]) and the kinds of the events the plugin
//! publishes about them.

use infrakit_spi::{Spec, Tags};
use serde::{Deserialize, Serialize};

/// Event kind: an instance file appeared.
pub const CREATED: &str = "created";
/// Event kind: an instance file's tags, logical ID or spec changed.
pub const CHANGED: &str = "changed";
/// Event kind: an instance file was deleted (or stopped being a readable instance file).
pub const DESTROYED: &str = "destroyed";

/// The content of one instance file: the description fields plus the spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct InstanceFile {
    #[serde(rename = "ID", default)]
    pub(crate) id: String,
    #[serde(rename = "LogicalID", default)]
    pub(crate) logical_id: Option<String>,
    #[serde(rename = "Tags", default, deserialize_with = "null_as_default")]
    pub(crate) tags: Tags,
    #[serde(rename = "Spec", default)]
    pub(crate) spec: Spec,
}

fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
