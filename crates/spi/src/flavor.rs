//! The Flavor plugin kind: what runs on an instance, and when it counts as healthy.
//!
//! Besides the original's per-instance `Flavor.Healthy`, a flavor may say how often its verdict
//! can change ([`HealthCadence`]) and judge many instances in one call ([`Flavor::healthy_many`]):
//! the `FlavorHealth/0.1.0` extension ([`HEALTH_EXTENSION`]), advertised in the handshake. A
//! caller that meets a plugin without it asks `Flavor.Healthy` for each instance on every pass,
//! as the original does. Version 0.2.0 of the extension ([`HEALTH_WATCH_EXTENSION`]) adds
//! [`Flavor::watch_health`]: a flavor with a probe keeps probing the instances it is given on the
//! probe's interval and publishes only the changes, so a caller need not ask at all while
//! nothing changes.

use std::time::Duration;

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

/// The health extension's interface: `FlavorHealth.Cadence` and `FlavorHealth.Check`.
pub const HEALTH_EXTENSION: InterfaceSpec = InterfaceSpec {
    name: Interface::FlavorHealth.as_str(),
    version: "0.1.0",
};

/// The health extension's second version, which adds `FlavorHealth.Watch`: the flavor keeps
/// judging some instances on its own clock and publishes each change of verdict as an event.
pub const HEALTH_WATCH_EXTENSION: InterfaceSpec = InterfaceSpec {
    name: Interface::FlavorHealth.as_str(),
    version: "0.2.0",
};

/// The batch extension's interface: `FlavorBatch.Prepare`, many specs prepared in one call.
pub const BATCH_EXTENSION: InterfaceSpec = InterfaceSpec {
    name: Interface::FlavorBatch.as_str(),
    version: "0.1.0",
};

/// How often a flavor's verdict on an instance can change, for some flavor properties: how
/// often a caller needs to ask again.
///
/// On the wire (`FlavorHealth.Cadence`): `{"Cadence": "EveryPass"}`, `{"Cadence": "OnChange"}`
/// or `{"Cadence": "Every", "Interval": "5s"}`. A cadence this version does not know reads as
/// [`HealthCadence::EveryPass`], the safe answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HealthCadence {
    /// Nothing is known: ask on every pass (what a plugin without the extension gets).
    #[default]
    EveryPass,
    /// The verdict depends on the instance's description alone (there is no probe): ask again
    /// only when the description changes.
    OnChange,
    /// A verdict holds for this long (a probe's interval), or until the description changes.
    Every(Duration),
}

impl HealthCadence {
    /// The cadence of two checks whose verdicts are combined: the more frequent.
    pub fn and(self, other: HealthCadence) -> HealthCadence {
        use HealthCadence::*;
        match (self, other) {
            (EveryPass, _) | (_, EveryPass) => EveryPass,
            (OnChange, c) | (c, OnChange) => c,
            (Every(a), Every(b)) => Every(a.min(b)),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct CadenceWire {
    #[serde(rename = "Cadence")]
    cadence: String,
    #[serde(rename = "Interval", default, skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
}

impl Serialize for HealthCadence {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let (cadence, interval) = match self {
            HealthCadence::EveryPass => ("EveryPass", None),
            HealthCadence::OnChange => ("OnChange", None),
            HealthCadence::Every(d) => ("Every", Some(humantime::format_duration(*d).to_string())),
        };
        CadenceWire {
            cadence: cadence.into(),
            interval,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for HealthCadence {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let w = CadenceWire::deserialize(d)?;
        Ok(match (w.cadence.as_str(), w.interval) {
            ("OnChange", _) => HealthCadence::OnChange,
            ("Every", Some(i)) => match humantime::parse_duration(&i) {
                Ok(d) if !d.is_zero() => HealthCadence::Every(d),
                Ok(_) => HealthCadence::EveryPass,
                Err(e) => {
                    return Err(serde::de::Error::custom(format!(
                        "Interval: {e} (got \"{i}\")"
                    )))
                }
            },
            _ => HealthCadence::EveryPass,
        })
    }
}

/// What a flavor says of its health checks (see [`Flavor::health_checks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HealthChecks {
    /// How often a verdict can change.
    pub cadence: HealthCadence,
    /// Whether one [`Flavor::healthy_many`] call is cheaper than a call per instance.
    pub batched: bool,
}

/// How many checks the default [`Flavor::healthy_many`] runs at once.
const MANY_AT_ONCE: usize = 32;

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
    /// How often the verdict of [`Flavor::healthy`] can change for `properties`. The default,
    /// [`HealthCadence::EveryPass`], promises nothing.
    async fn health_cadence(&self, _properties: &Value) -> Result<HealthCadence> {
        Ok(HealthCadence::EveryPass)
    }
    /// What a caller should know of this flavor's health checks: their cadence, and whether
    /// [`Flavor::healthy_many`] saves calls. In-process flavors need not batch: the default says
    /// the cadence and no batching; a client of a remote plugin says batching when the plugin
    /// serves the extension.
    async fn health_checks(&self, properties: &Value) -> Result<HealthChecks> {
        Ok(HealthChecks {
            cadence: self.health_cadence(properties).await?,
            batched: false,
        })
    }
    /// Judges many instances: one verdict per instance, in order. The default asks
    /// [`Flavor::healthy`] for each, a few dozen at a time.
    async fn healthy_many(
        &self,
        properties: &Value,
        instances: &[&Description],
    ) -> Result<Vec<Health>> {
        let mut out = Vec::with_capacity(instances.len());
        for chunk in instances.chunks(MANY_AT_ONCE) {
            let mut checks = Vec::with_capacity(chunk.len());
            for d in chunk {
                checks.push(self.healthy(properties, d));
            }
            for answer in futures::future::join_all(checks).await {
                out.push(answer?);
            }
        }
        Ok(out)
    }
    /// Keeps judging `instances` on this flavor's own clock and publishes each change of verdict
    /// as an [`Event::health`](crate::Event::health) under
    /// [`health_topic(watch)`](crate::event::health_topic), replacing what watch `watch` watched
    /// before. The first verdict on each instance is published too. A watch not renewed (called
    /// again) within `lease` ends; an empty `instances` ends it at once.
    ///
    /// Answers whether the flavor watches: the default, for flavors whose verdicts change only
    /// with the description (or that cannot watch), is `false`, and the caller keeps asking.
    async fn watch_health(
        &self,
        _properties: &Value,
        _watch: &str,
        _instances: &[&Description],
        _lease: Duration,
    ) -> Result<bool> {
        Ok(false)
    }
    /// Best-effort cleanup before the instance is destroyed.
    async fn drain(&self, properties: &Value, instance: &Description) -> Result<()>;
    /// Prepares many specs, each with its index: one answer per spec, in order. The default
    /// calls [`Flavor::prepare`] for each, a few dozen at a time; a client of a remote plugin
    /// sends them all in one `FlavorBatch.Prepare` call when the plugin serves the extension
    /// ([`BATCH_EXTENSION`]).
    async fn prepare_many(
        &self,
        properties: &Value,
        specs: Vec<(Spec, Index)>,
        allocation: &Allocation,
    ) -> Vec<Result<Spec>> {
        prepare_each(self, properties, specs, allocation).await
    }
}

/// [`Flavor::prepare`] for each spec, a few dozen at a time, answers in order: what
/// [`Flavor::prepare_many`] does by default, and what a client does for a plugin without the
/// batch extension.
pub async fn prepare_each<F: Flavor + ?Sized>(
    flavor: &F,
    properties: &Value,
    specs: Vec<(Spec, Index)>,
    allocation: &Allocation,
) -> Vec<Result<Spec>> {
    use futures::StreamExt;
    futures::stream::iter(specs)
        .map(|(spec, index)| async move { flavor.prepare(properties, spec, allocation, &index).await })
        .buffered(MANY_AT_ONCE)
        .collect()
        .await
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
