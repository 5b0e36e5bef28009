//! Instance properties: a Terraform JSON fragment with one primary resource.
//!
//! Two shapes are accepted:
//!
//! * the tf.json fragment of InfraKit 0.5 and later,
//!   `{"resource": {"<type>": {"<name>": {...}, ...}, ...}, "data": {...}, "primary": "<type>.<name>"}`,
//!   where `data` (data sources) and `primary` are optional. With one resource, that resource is
//!   the primary one; with several, `primary` names it, or else the only resource of a known
//!   machine type ([`MACHINE_TYPES`]) is taken;
//! * InfraKit 0.1's `{"type": "<type>", "value": {...}}`: one resource, the primary.
//!
//! Parsing checks the structure only (Terraform checks the attributes when it applies); every
//! error names the bad field, e.g. `Properties.resource.terraform_data.vm.count: the primary
//! resource cannot use count or for_each`.

use std::collections::BTreeMap;

use infrakit_spi::error::decode_at;
use infrakit_spi::{Error, Result};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Resource types known to be machines; with several resources and no `primary`, the only one of
/// these types is the primary resource.
pub const MACHINE_TYPES: &[&str] = &[
    "aws_instance",
    "azurerm_virtual_machine",
    "azurerm_linux_virtual_machine",
    "digitalocean_droplet",
    "google_compute_instance",
    "softlayer_virtual_guest",
    "ibm_compute_vm_instance",
];

/// The body of one resource or data source (its attributes and blocks).
pub type Body = Map<String, Value>;
/// Resources or data sources by type, then by name.
pub type Blocks = BTreeMap<String, BTreeMap<String, Body>>;

/// Validated instance properties.
#[derive(Debug, Clone, PartialEq)]
pub struct TerraformProperties {
    /// Managed resources by type and name, as written by the user.
    pub resources: Blocks,
    /// Data sources by type and name.
    pub data: Blocks,
    /// Type and name of the primary resource, the one that is "the instance".
    pub primary: (String, String),
    /// True for InfraKit 0.1's `{"type": ..., "value": ...}` shape.
    pub legacy: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fragment {
    resource: Blocks,
    #[serde(default)]
    data: Blocks,
    #[serde(default)]
    primary: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Legacy {
    #[serde(rename = "type")]
    kind: String,
    value: Body,
}

/// True for a Terraform identifier: a letter or `_`, then letters, digits, `_` and `-`.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl TerraformProperties {
    /// Parses and checks `properties` (the `Properties` of an instance spec).
    pub fn parse(properties: &Value) -> Result<TerraformProperties> {
        let Some(obj) = properties.as_object() else {
            return Err(Error::invalid(
                "Properties",
                "expected a Terraform JSON fragment {\"resource\": {\"<type>\": {\"<name>\": {...}}}} \
                 or {\"type\": \"<type>\", \"value\": {...}}",
            ));
        };
        let props = if obj.contains_key("type") || obj.contains_key("value") {
            if obj.contains_key("resource") {
                return Err(Error::invalid(
                    "Properties.type",
                    "use either the fragment form (resource) or the type/value form, not both",
                ));
            }
            let legacy: Legacy = decode_at("Properties", properties)?;
            if !is_identifier(&legacy.kind) {
                return Err(Error::invalid(
                    "Properties.type",
                    format!("{:?} is not a resource type name", legacy.kind),
                ));
            }
            let mut resources = Blocks::new();
            resources
                .entry(legacy.kind.clone())
                .or_default()
                .insert("instance".to_string(), legacy.value);
            TerraformProperties {
                resources,
                data: Blocks::new(),
                primary: (legacy.kind, "instance".to_string()),
                legacy: true,
            }
        } else if obj.contains_key("resource") {
            let fragment: Fragment = decode_at("Properties", properties).map_err(hint)?;
            check_names("Properties.resource", &fragment.resource)?;
            check_names("Properties.data", &fragment.data)?;
            let primary = choose_primary(&fragment.resource, fragment.primary.as_deref())?;
            TerraformProperties {
                resources: fragment.resource,
                data: fragment.data,
                primary,
                legacy: false,
            }
        } else {
            return Err(Error::invalid(
                "Properties.resource",
                "missing: expected a Terraform JSON fragment {\"resource\": {\"<type>\": {\"<name>\": {...}}}} \
                 or {\"type\": \"<type>\", \"value\": {...}}",
            ));
        };
        let (kind, name) = &props.primary;
        let body = &props.resources[kind][name];
        for meta in ["count", "for_each"] {
            if body.contains_key(meta) {
                return Err(Error::invalid(
                    format!("{}.{meta}", props.primary_path()),
                    "the primary resource cannot use count or for_each: it is one instance",
                ));
            }
        }
        Ok(props)
    }

    /// The path of the primary resource's body in the properties, for error messages.
    pub fn primary_path(&self) -> String {
        if self.legacy {
            return "Properties.value".to_string();
        }
        format!("Properties.resource.{}.{}", self.primary.0, self.primary.1)
    }

    /// The primary resource's type.
    pub fn primary_type(&self) -> &str {
        &self.primary.0
    }

    /// The primary resource's body.
    pub fn primary_body(&self) -> &Body {
        &self.resources[&self.primary.0][&self.primary.1]
    }
}

/// Explains the keys a fragment may have when there is an unknown one.
fn hint(e: Error) -> Error {
    match e {
        Error::Invalid { path, message } if message.starts_with("unknown field") => {
            Error::Invalid {
                message: format!(
                    "{message}; a fragment has resource, data and primary only: put variables, \
                 providers, locals and shared resources in .tf files of the plugin's directory"
                ),
                path,
            }
        }
        other => other,
    }
}

fn check_names(path: &str, blocks: &Blocks) -> Result<()> {
    for (kind, named) in blocks {
        if !is_identifier(kind) {
            return Err(Error::invalid(
                format!("{path}.{kind}"),
                "not a resource type name",
            ));
        }
        if named.is_empty() {
            return Err(Error::invalid(
                format!("{path}.{kind}"),
                "must name at least one resource",
            ));
        }
        for name in named.keys() {
            if !is_identifier(name) {
                return Err(Error::invalid(
                    format!("{path}.{kind}.{name}"),
                    "a name starts with a letter or _ and has only letters, digits, _ and -",
                ));
            }
        }
    }
    Ok(())
}

fn choose_primary(resources: &Blocks, named: Option<&str>) -> Result<(String, String)> {
    let all: Vec<(&String, &String)> = resources
        .iter()
        .flat_map(|(k, m)| m.keys().map(move |n| (k, n)))
        .collect();
    if let Some(address) = named {
        let found = address
            .split_once('.')
            .filter(|(k, n)| resources.get(*k).is_some_and(|m| m.contains_key(*n)));
        return match found {
            Some((k, n)) => Ok((k.to_string(), n.to_string())),
            None => Err(Error::invalid(
                "Properties.primary",
                format!(
                    "{address:?} is not a resource of the fragment (one of: {})",
                    all.iter()
                        .map(|(k, n)| format!("{k}.{n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        };
    }
    match all.as_slice() {
        [] => Err(Error::invalid(
            "Properties.resource",
            "must have at least one resource",
        )),
        [(k, n)] => Ok((k.to_string(), n.to_string())),
        _ => {
            let machines: Vec<_> = all
                .iter()
                .filter(|(k, _)| MACHINE_TYPES.contains(&k.as_str()))
                .collect();
            match machines.as_slice() {
                [(k, n)] => Ok((k.to_string(), n.to_string())),
                _ => Err(Error::invalid(
                    "Properties.primary",
                    format!(
                        "missing: the fragment has {} resources; name the one that is the instance, \
                         e.g. \"primary\": \"{}.{}\"",
                        all.len(),
                        all[0].0,
                        all[0].1
                    ),
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        TerraformProperties::parse(&v).unwrap_err().to_string()
    }

    #[test]
    fn one_resource_is_the_primary() {
        let p = TerraformProperties::parse(
            &json!({"resource": {"terraform_data": {"vm": {"input": 1}}}}),
        )
        .unwrap();
        assert_eq!(p.primary, ("terraform_data".into(), "vm".into()));
        assert_eq!(p.primary_body()["input"], 1);
    }

    #[test]
    fn the_type_value_form_is_one_resource() {
        let p =
            TerraformProperties::parse(&json!({"type": "aws_instance", "value": {"ami": "ami-1"}}))
                .unwrap();
        assert_eq!(p.primary_type(), "aws_instance");
        assert_eq!(p.primary_body()["ami"], "ami-1");
    }

    #[test]
    fn a_machine_type_or_primary_picks_among_several() {
        let p = TerraformProperties::parse(&json!({"resource": {
            "aws_instance": {"vm": {}}, "aws_ebs_volume": {"disk": {}}
        }}))
        .unwrap();
        assert_eq!(p.primary, ("aws_instance".into(), "vm".into()));
        let p = TerraformProperties::parse(&json!({"primary": "terraform_data.b", "resource": {
            "terraform_data": {"a": {}, "b": {}}
        }}))
        .unwrap();
        assert_eq!(p.primary.1, "b");
        assert!(
            err(json!({"resource": {"terraform_data": {"a": {}, "b": {}}}}))
                .starts_with("Properties.primary: missing"),
        );
        assert!(
            err(json!({"primary": "terraform_data.c", "resource": {"terraform_data": {"a": {}, "b": {}}}}))
                .starts_with("Properties.primary: \"terraform_data.c\" is not a resource"),
        );
    }

    #[test]
    fn bad_fragments_name_the_field() {
        assert!(err(json!("x")).starts_with("Properties:"));
        assert!(err(json!({})).starts_with("Properties.resource: missing"));
        assert!(err(json!({"resource": {}})).starts_with("Properties.resource: must have"));
        assert!(err(json!({"resource": {"t": {"a": 1}}})).starts_with("Properties.resource.t.a:"));
        assert!(err(json!({"resource": {"t": {"1a": {}}}}))
            .starts_with("Properties.resource.t.1a: a name starts"));
        assert!(err(json!({"resource": {"t": {"a": {}}}, "locals": {}}))
            .starts_with("Properties.locals: unknown field"));
        assert!(err(json!({"resource": {"t": {"a": {"count": 2}}}}))
            .starts_with("Properties.resource.t.a.count:"));
        assert!(err(json!({"type": "t"})).starts_with("Properties: missing field `value`"));
        assert!(
            err(json!({"type": "t", "value": {"count": 2}})).starts_with("Properties.value.count:")
        );
        assert!(err(json!({"type": 3, "value": {}})).starts_with("Properties.type:"));
        assert!(
            err(json!({"type": "t", "value": {}, "resource": {}})).starts_with("Properties.type:")
        );
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("instance-1700000000-abc123"));
        assert!(is_identifier("_x"));
        assert!(!is_identifier("1x"));
        assert!(!is_identifier("a.b"));
        assert!(!is_identifier(""));
    }
}
