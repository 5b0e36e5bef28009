//! Objects of InfraKit's last version: a spec with a kind, a version and metadata (its
//! `types.Spec`), and the same with the state it is in (`types.Object`), as its `Controller`
//! and `Stack` interfaces exchange them. A group is the object of kind `group`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::group::{GroupDescription, GroupSpec};
use crate::{Error, Interface, InterfaceSpec, Result};

/// The kind of a group object.
pub const GROUP_KIND: &str = "group";

/// The Controller interface of InfraKit's last version.
pub const CONTROLLER: InterfaceSpec = InterfaceSpec {
    name: Interface::Controller.as_str(),
    version: "0.1.1",
};

/// The manager as InfraKit's last version names it in its handshake (methods `Manager.*`).
pub const STACK: InterfaceSpec = InterfaceSpec {
    name: "Stack",
    version: "0.1.1",
};

/// The Updatable (metadata) interface of InfraKit's last version.
pub const UPDATABLE: InterfaceSpec = InterfaceSpec {
    name: Interface::Updatable.as_str(),
    version: "0.1.1",
};

/// Who an object is: `id` (absent when the spec does not say) and a name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// The object's ID.
    #[serde(rename = "id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The object's name (`group/cattle`).
    #[serde(rename = "name", default)]
    pub name: String,
    /// The object's tags (`null` when none).
    #[serde(rename = "tags", default)]
    pub tags: Option<BTreeMap<String, String>>,
}

impl Metadata {
    /// The instance an address names: the ID if given, else the part of the name after its
    /// first `/` (`group/cattle` gives `cattle`), else the name.
    pub fn instance(&self) -> &str {
        if let Some(id) = self.id.as_deref().filter(|id| !id.is_empty()) {
            return id;
        }
        match self.name.split_once('/') {
            Some((_, rest)) => rest,
            None => &self.name,
        }
    }
}

/// A spec of any kind (InfraKit's `types.Spec`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectSpec {
    /// What the object is (`group`).
    #[serde(rename = "kind", default)]
    pub kind: String,
    /// The interface version that manages it (`Group/0.1.1`).
    #[serde(rename = "version", default)]
    pub version: String,
    /// Who it is.
    #[serde(rename = "metadata", default)]
    pub metadata: Metadata,
    /// A template the properties came from, if any.
    #[serde(rename = "template", default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Value>,
    /// Its configuration: for a group, the properties of its group spec.
    #[serde(rename = "properties", default)]
    pub properties: Value,
    /// Options of the controller, if any.
    #[serde(rename = "options", default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
    /// Other objects it depends on, if any.
    #[serde(rename = "depends", default, skip_serializing_if = "Option::is_none")]
    pub depends: Option<Value>,
}

impl ObjectSpec {
    /// The object of group `spec`, named `group/<id>` as InfraKit's last version names it.
    pub fn of_group(spec: &GroupSpec) -> ObjectSpec {
        ObjectSpec {
            kind: GROUP_KIND.into(),
            version: crate::group::INTERFACES[0].to_string(),
            metadata: Metadata {
                id: Some(spec.id.clone()),
                name: format!("{GROUP_KIND}/{}", spec.id),
                tags: None,
            },
            properties: spec.properties.clone(),
            ..ObjectSpec::default()
        }
    }

    /// The group spec this object describes; an object of another kind, or one that names no
    /// group, is refused with the path of the field at fault.
    pub fn to_group(&self) -> Result<GroupSpec> {
        if !self.kind.is_empty() && self.kind != GROUP_KIND {
            return Err(Error::invalid(
                "kind",
                format!(
                    "'{}' is not served here (only '{GROUP_KIND}' objects are)",
                    self.kind
                ),
            ));
        }
        let id = self.metadata.instance();
        if id.is_empty() {
            return Err(Error::invalid("metadata.name", "no group name"));
        }
        Ok(GroupSpec {
            id: id.to_string(),
            properties: self.properties.clone(),
        })
    }
}

/// A spec with its state (InfraKit's `types.Object`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Object {
    /// The spec.
    #[serde(flatten)]
    pub spec: ObjectSpec,
    /// What it is now: for a group, its description (`Instances`, `Converged`).
    #[serde(rename = "state", default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
}

impl Object {
    /// Group `spec` in the state `description` says.
    pub fn of_group(spec: &GroupSpec, description: &GroupDescription) -> Result<Object> {
        let state = serde_json::to_value(description)
            .map_err(|e| Error::plugin(format!("cannot encode group {}: {e}", spec.id)))?;
        Ok(Object {
            spec: ObjectSpec::of_group(spec),
            state: Some(state),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_group_object_reads_as_the_original_writes_it() {
        let spec = GroupSpec {
            id: "cattle".into(),
            properties: json!({"Allocation": {"Size": 5}}),
        };
        let v =
            serde_json::to_value(Object::of_group(&spec, &GroupDescription::default()).unwrap())
                .unwrap();
        assert_eq!(v["kind"], "group");
        assert_eq!(v["version"], "Group/0.1.1");
        assert_eq!(
            v["metadata"],
            json!({"id": "cattle", "name": "group/cattle", "tags": null})
        );
        assert_eq!(v["properties"]["Allocation"]["Size"], 5);
        assert!(v["state"]["Instances"].is_array(), "{v}");
        assert!(v.get("template").is_none() && v.get("depends").is_none());
    }

    #[test]
    fn a_spec_names_its_group_by_id_or_by_name() {
        let by_name: ObjectSpec =
            serde_json::from_value(json!({"kind": "group", "metadata": {"name": "group/web"}}))
                .unwrap();
        assert_eq!(by_name.to_group().unwrap().id, "web");
        let by_id: ObjectSpec = serde_json::from_value(
            json!({"kind": "group", "metadata": {"id": "db", "name": "mystack/other"}}),
        )
        .unwrap();
        assert_eq!(by_id.to_group().unwrap().id, "db");
        let bare: ObjectSpec =
            serde_json::from_value(json!({"metadata": {"name": "cache"}})).unwrap();
        assert_eq!(bare.to_group().unwrap().id, "cache");
    }

    #[test]
    fn other_kinds_and_nameless_specs_are_refused_with_the_field() {
        let ingress: ObjectSpec =
            serde_json::from_value(json!({"kind": "ingress", "metadata": {"name": "lb"}})).unwrap();
        assert!(ingress.to_group().unwrap_err().to_string().contains("kind"));
        let nameless: ObjectSpec = serde_json::from_value(json!({"kind": "group"})).unwrap();
        assert!(nameless
            .to_group()
            .unwrap_err()
            .to_string()
            .contains("metadata.name"));
    }
}
