//! The Flavor plugin kind: what runs on an instance, and when it counts as healthy.

use async_trait::async_trait;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::instance::{Description, Spec};
use crate::serde_util::null_as_default;
use crate::{Interface, InterfaceSpec, Result};

/// The versions of the Flavor API that clients of each InfraKit generation require.
pub const INTERFACES: &[InterfaceSpec] = &[
    InterfaceSpec {
        name: Interface::Flavor.as_str(),
        version: "0.1.1",
    },
    InterfaceSpec {
        name: Interface::Flavor.as_str(),
        version: "0.1.0",
    },
];

/// How a group allocates its instances: a count (cattle) or a list of logical IDs (pets).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Number of identical instances.
    #[serde(rename = "Size", default)]
    pub size: u64,
    /// One instance per logical ID.
    #[serde(rename = "LogicalIDs", default)]
    pub logical_ids: Option<Vec<String>>,
}

impl Allocation {
    /// A cattle allocation of `n` instances.
    pub fn size(n: u64) -> Self {
        Allocation {
            size: n,
            logical_ids: None,
        }
    }

    /// A pet allocation: one instance per logical ID.
    pub fn pets<S: AsRef<str>>(ids: &[S]) -> Self {
        Allocation {
            size: 0,
            logical_ids: Some(ids.iter().map(|s| s.as_ref().to_string()).collect()),
        }
    }

    /// The number of instances this allocation asks for.
    pub fn desired(&self) -> usize {
        match &self.logical_ids {
            Some(ids) if !ids.is_empty() => ids.len(),
            _ => self.size as usize,
        }
    }

    /// True for pets (an allocation by logical IDs).
    pub fn is_pets(&self) -> bool {
        matches!(&self.logical_ids, Some(ids) if !ids.is_empty())
    }
}

/// Where an instance sits in its group, passed to `Flavor.Prepare`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// The group ID.
    #[serde(rename = "Group", default, deserialize_with = "null_as_default")]
    pub group: String,
    /// A sequence number (InfraKit sends the group's target size here).
    #[serde(rename = "Sequence", default)]
    pub sequence: u64,
}

/// Health of an instance as judged by its flavor. On the wire: `0`, `1` or `2`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Health {
    /// Not known yet (starting, or the check did not answer).
    #[default]
    Unknown,
    /// Serving as intended.
    Healthy,
    /// Reachable but not serving.
    Unhealthy,
}

impl Health {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Health::Unknown => 0,
            Health::Healthy => 1,
            Health::Unhealthy => 2,
        }
    }

    /// Lower-case name for display.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Health {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for Health {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u8::deserialize(d)? {
            0 => Ok(Health::Unknown),
            1 => Ok(Health::Healthy),
            2 => Ok(Health::Unhealthy),
            n => Err(serde::de::Error::custom(format!(
                "health must be 0, 1 or 2, got {n}"
            ))),
        }
    }
}

/// A Flavor plugin.
#[async_trait]
pub trait Flavor: Send + Sync {
    /// Checks the flavor properties against the group's allocation.
    async fn validate(&self, properties: &Value, allocation: &Allocation) -> Result<()>;
    /// Adds what this flavor needs (init script, tags, attachments) to an instance spec.
    async fn prepare(
        &self,
        properties: &Value,
        spec: Spec,
        allocation: &Allocation,
        index: &Index,
    ) -> Result<Spec>;
    /// Judges the health of one instance.
    async fn healthy(&self, properties: &Value, instance: &Description) -> Result<Health>;
    /// Best-effort cleanup before the instance is destroyed.
    async fn drain(&self, properties: &Value, instance: &Description) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn health_is_an_integer_on_the_wire() {
        assert_eq!(serde_json::to_value(Health::Unhealthy).unwrap(), json!(2));
        let h: Health = serde_json::from_value(json!(1)).unwrap();
        assert_eq!(h, Health::Healthy);
        assert!(serde_json::from_value::<Health>(json!(7)).is_err());
    }

    #[test]
    fn allocation_serialises_both_fields() {
        assert_eq!(
            serde_json::to_value(Allocation::size(2)).unwrap(),
            json!({"Size": 2, "LogicalIDs": null})
        );
        let pets = Allocation {
            size: 0,
            logical_ids: Some(vec!["a".into(), "b".into()]),
        };
        assert_eq!(pets.desired(), 2);
        assert!(pets.is_pets());
    }
}
