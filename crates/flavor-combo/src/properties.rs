//! The combo flavor's properties, InfraKit's shape:
//!
//! ```json
//! {"Flavors": [
//!   {"Plugin": "flavor-vanilla", "Properties": {"Init": ["echo hello"]}},
//!   {"Plugin": "flavor-zookeeper", "Properties": {"DataDir": "/var/lib/zookeeper"}}
//! ]}
//! ```
//!
//! Unknown fields are rejected with their path (`Properties.Flavors[0].Plugn: unknown field ...`),
//! and so are an empty list and a blank plugin name.

use infrakit_spi::error::decode_at;
use infrakit_spi::{Error, Result};
use serde::Deserialize;
use serde_json::Value;

/// Path prefix of every error reported while parsing properties.
pub(crate) const PREFIX: &str = "Properties";

/// The parsed properties of the combo flavor.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComboProperties {
    /// The flavors to apply, in order.
    #[serde(rename = "Flavors")]
    pub flavors: Vec<FlavorRef>,
}

/// One flavor of the combination: which plugin, with which properties.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlavorRef {
    /// Plugin name, optionally typed: `flavor-vanilla`, `flavor-swarm/worker`.
    #[serde(rename = "Plugin")]
    pub plugin: String,
    /// The properties handed to that flavor (`null` when absent).
    #[serde(rename = "Properties", default)]
    pub properties: Value,
}

impl ComboProperties {
    /// Decodes and checks combo properties; errors name the bad field, e.g.
    /// `Properties.Flavors[1].Plugin`.
    pub fn parse(properties: &Value) -> Result<ComboProperties> {
        if !properties.is_object() {
            return Err(Error::invalid(
                PREFIX,
                "must be an object with a list of Flavors",
            ));
        }
        let parsed: ComboProperties = decode_at(PREFIX, properties)?;
        if parsed.flavors.is_empty() {
            return Err(Error::invalid(
                flavors_path(),
                "must name at least one flavor",
            ));
        }
        if let Some(i) = parsed
            .flavors
            .iter()
            .position(|f| f.plugin.trim().is_empty())
        {
            return Err(Error::invalid(plugin_path(i), "must not be blank"));
        }
        Ok(parsed)
    }
}

fn flavors_path() -> String {
    format!("{PREFIX}.Flavors")
}

/// Path of entry `i` of the list.
pub(crate) fn entry_path(i: usize) -> String {
    format!("{PREFIX}.Flavors[{i}]")
}

/// Path of the plugin name of entry `i`.
pub(crate) fn plugin_path(i: usize) -> String {
    format!("{}.Plugin", entry_path(i))
}

/// Path of the properties of entry `i`.
pub(crate) fn properties_path(i: usize) -> String {
    format!("{}.Properties", entry_path(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err_path(v: Value) -> String {
        match ComboProperties::parse(&v).unwrap_err() {
            Error::Invalid { path, .. } => path,
            other => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn parses_the_original_shape() {
        let p = ComboProperties::parse(&json!({"Flavors": [
            {"Plugin": "flavor-vanilla", "Properties": {"Init": ["echo a"]}},
            {"Plugin": "flavor-swarm/worker"}
        ]}))
        .unwrap();
        assert_eq!(p.flavors.len(), 2);
        assert_eq!(p.flavors[0].properties, json!({"Init": ["echo a"]}));
        assert_eq!(p.flavors[1].plugin, "flavor-swarm/worker");
        assert_eq!(p.flavors[1].properties, Value::Null);
    }

    #[test]
    fn bad_fields_are_reported_with_their_path() {
        assert_eq!(err_path(Value::Null), "Properties");
        assert_eq!(err_path(json!([])), "Properties");
        assert_eq!(err_path(json!({})), "Properties");
        assert_eq!(err_path(json!({"Flavors": []})), "Properties.Flavors");
        assert_eq!(err_path(json!({"Flavors": {}})), "Properties.Flavors");
        assert_eq!(
            err_path(json!({"Flavors": [{"Plugin": "a"}, {"Plugin": 3}]})),
            "Properties.Flavors[1].Plugin"
        );
        assert_eq!(
            err_path(json!({"Flavors": [{"Plugin": "a"}, {"Plugin": " "}]})),
            "Properties.Flavors[1].Plugin"
        );
        assert_eq!(
            err_path(json!({"Flavors": [{"Plugin": "a", "Propertie": {}}]})),
            "Properties.Flavors[0].Propertie"
        );
        assert_eq!(
            err_path(json!({"Flavors": [{"Plugin": "a"}], "Extra": 1})),
            "Properties.Extra"
        );
    }
}
