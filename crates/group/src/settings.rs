//! Validated group settings, derived from a committed [`GroupSpec`].

use serde::Deserialize;
use serde_json::Value;

use infrakit_spi::error::decode_at;
use infrakit_spi::{Error, GroupProperties, GroupSpec, Result};

/// A count, or a percentage of the desired size (`"25%"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum IntOrPercent {
    /// An absolute number of instances.
    Int(u64),
    /// A percentage, written `"N%"`.
    Percent(#[serde(deserialize_with = "percent")] u64),
}

fn percent<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    let s = String::deserialize(d)?;
    s.strip_suffix('%')
        .and_then(|n| n.trim().parse::<u64>().ok())
        .filter(|n| *n <= 100)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected a count or a percentage like \"25%\", got \"{s}\""
            ))
        })
}

impl IntOrPercent {
    /// The number of instances out of `of`, rounding percentages up (`round_up`) or down.
    pub fn resolve(self, of: usize, round_up: bool) -> usize {
        match self {
            IntOrPercent::Int(n) => n as usize,
            IntOrPercent::Percent(p) => {
                let x = of as u64 * p;
                (if round_up { x.div_ceil(100) } else { x / 100 }) as usize
            }
        }
    }
}

/// The `Updating` block: how a configuration change rolls out.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Updating {
    /// How many instances above the desired count may exist during an update.
    #[serde(rename = "MaxSurge", default)]
    pub max_surge: Option<IntOrPercent>,
    /// How many of the desired instances may be unavailable because of the update.
    #[serde(rename = "MaxUnavailable", default)]
    pub max_unavailable: Option<IntOrPercent>,
    /// InfraKit: how long new instances must stay healthy (accepted, used by later versions).
    #[serde(rename = "Duration", default)]
    pub duration: Option<Value>,
    /// InfraKit: how many consecutive healthy polls are required (accepted).
    #[serde(rename = "Count", default)]
    pub count: Option<Value>,
    /// InfraKit: `"drain"` skips draining before destroy.
    #[serde(rename = "SkipBeforeInstanceDestroy", default)]
    pub skip_before_instance_destroy: Option<String>,
}

/// Everything the controller needs to know about one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The group ID.
    pub id: String,
    /// The spec as committed.
    pub spec: GroupSpec,
    /// Parsed properties.
    pub props: GroupProperties,
    /// `infrakit.config.hash` of the current configuration.
    pub config_hash: String,
    /// Rolling update settings.
    pub updating: Updating,
}

impl Settings {
    /// Parses and validates a spec; errors carry the path of the bad field.
    pub fn parse(spec: &GroupSpec) -> Result<Settings> {
        let props = GroupProperties::parse(spec)?;
        let updating: Updating = match &props.updating {
            Some(v) if !v.is_null() => decode_at("Properties.Updating", v)?,
            _ => Updating::default(),
        };
        let settings = Settings {
            id: spec.id.clone(),
            spec: spec.clone(),
            config_hash: props.config_hash(),
            props,
            updating,
        };
        if settings.max_surge() == 0 && settings.max_unavailable() == 0 {
            return Err(Error::invalid(
                "Properties.Updating",
                "MaxSurge and MaxUnavailable cannot both be 0: a rolling update could never start",
            ));
        }
        Ok(settings)
    }

    /// The number of instances wanted.
    pub fn desired(&self) -> usize {
        self.props.allocation.desired()
    }

    /// True for a group of pets (allocated by logical IDs).
    pub fn is_pets(&self) -> bool {
        self.props.allocation.is_pets()
    }

    /// Instances allowed above the desired count during an update (default 1 for cattle, 0 for pets).
    pub fn max_surge(&self) -> usize {
        match self.updating.max_surge {
            Some(v) => v.resolve(self.desired(), true),
            None if self.is_pets() => 0,
            None => 1,
        }
    }

    /// Desired instances that may be down because of an update (default 0 for cattle, 1 for pets).
    pub fn max_unavailable(&self) -> usize {
        match self.updating.max_unavailable {
            Some(v) => v.resolve(self.desired(), false),
            None if self.is_pets() => 1,
            None => 0,
        }
    }

    /// Whether instances are drained before being destroyed.
    pub fn drain_before_destroy(&self) -> bool {
        self.updating.skip_before_instance_destroy.as_deref() != Some("drain")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(updating: Value, allocation: Value) -> GroupSpec {
        GroupSpec {
            id: "g".into(),
            properties: json!({
                "Allocation": allocation,
                "Instance": {"Plugin": "instance-file"},
                "Flavor": {"Plugin": "flavor-vanilla"},
                "Updating": updating,
            }),
        }
    }

    #[test]
    fn defaults_differ_for_cattle_and_pets() {
        let cattle = Settings::parse(&spec(Value::Null, json!({"Size": 4}))).unwrap();
        assert_eq!((cattle.max_surge(), cattle.max_unavailable()), (1, 0));
        let pets =
            Settings::parse(&spec(Value::Null, json!({"LogicalIDs": ["a", "b", "c"]}))).unwrap();
        assert_eq!((pets.max_surge(), pets.max_unavailable()), (0, 1));
    }

    #[test]
    fn percentages_round_surge_up_and_unavailable_down() {
        let s = Settings::parse(&spec(
            json!({"MaxSurge": "25%", "MaxUnavailable": "25%"}),
            json!({"Size": 10}),
        ))
        .unwrap();
        assert_eq!((s.max_surge(), s.max_unavailable()), (3, 2));
    }

    #[test]
    fn bad_updating_blocks_are_rejected_with_a_path() {
        let e =
            Settings::parse(&spec(json!({"MaxSurge": "lots"}), json!({"Size": 1}))).unwrap_err();
        assert!(
            e.to_string().starts_with("Properties.Updating.MaxSurge"),
            "{e}"
        );
        let e = Settings::parse(&spec(
            json!({"MaxSurge": 0, "MaxUnavailable": 0}),
            json!({"Size": 1}),
        ))
        .unwrap_err();
        assert!(e.to_string().starts_with("Properties.Updating:"), "{e}");
        let e = Settings::parse(&spec(json!({"MaxSurje": 1}), json!({"Size": 1}))).unwrap_err();
        assert!(e.to_string().contains("MaxSurje"), "{e}");
    }

    #[test]
    fn infrakit_updating_fields_are_accepted() {
        let s = Settings::parse(&spec(
            json!({"Duration": "0s", "Count": 0, "SkipBeforeInstanceDestroy": null}),
            json!({"Size": 2}),
        ))
        .unwrap();
        assert!(s.drain_before_destroy());
    }
}
