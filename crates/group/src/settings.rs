//! Validated group settings, derived from a committed [`GroupSpec`].

use std::time::Duration;

use serde::Deserialize;

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

fn duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Duration>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => humantime::parse_duration(s.trim()).map(Some).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration \"{s}\": {e} (use e.g. \"30s\", \"5m\")"
            ))
        }),
    }
}

/// What a rollout does when it makes no progress within its deadline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum OnFailure {
    /// Stop and wait for an operator.
    #[default]
    #[serde(rename = "pause")]
    Pause,
    /// Go back to the previous configuration.
    #[serde(rename = "rollback")]
    Rollback,
}

/// Which instances scale-in removes first (after unhealthy and old ones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum DeletePolicy {
    /// The most recently created.
    #[default]
    #[serde(rename = "newest")]
    Newest,
    /// The longest running.
    #[serde(rename = "oldest")]
    Oldest,
    /// Any (deterministically shuffled by ID).
    #[serde(rename = "random")]
    Random,
}

/// How pets are created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Ordering {
    /// All missing members at once.
    #[default]
    #[serde(rename = "parallel")]
    Parallel,
    /// One at a time in list order, each after the previous one is healthy.
    #[serde(rename = "ordered")]
    Ordered,
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
    /// How long a new instance must have been healthy to count as available.
    #[serde(rename = "MinHealthyTime", default, deserialize_with = "duration")]
    pub min_healthy_time: Option<Duration>,
    /// InfraKit's name for `MinHealthyTime`.
    #[serde(rename = "Duration", default, deserialize_with = "duration")]
    pub duration: Option<Duration>,
    /// InfraKit: consecutive healthy observations a new instance needs to count as available.
    #[serde(rename = "Count", default)]
    pub count: Option<u32>,
    /// A rollout that makes no progress for this long has failed (default 10m).
    #[serde(rename = "ProgressDeadline", default, deserialize_with = "duration")]
    pub progress_deadline: Option<Duration>,
    /// What a failed rollout does (default `pause`).
    #[serde(rename = "OnFailure", default)]
    pub on_failure: Option<OnFailure>,
    /// Update only this many instances, then pause until `rollout resume` (canaries).
    #[serde(rename = "Partition", default)]
    pub partition: Option<usize>,
    /// How long `Flavor.Drain` may take (default 30s).
    #[serde(rename = "DrainTimeout", default, deserialize_with = "duration")]
    pub drain_timeout: Option<Duration>,
    /// InfraKit: `"drain"` skips draining before destroy.
    #[serde(rename = "SkipBeforeInstanceDestroy", default)]
    pub skip_before_instance_destroy: Option<String>,
}

/// The `Health` block: when an instance is replaced for being unhealthy.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthPolicy {
    /// Replace an instance that has been Unhealthy this long (default 10s).
    #[serde(rename = "UnhealthyAfter", default, deserialize_with = "duration")]
    pub unhealthy_after: Option<Duration>,
    /// Replace an instance that is not Healthy this long after it appeared (default 60s).
    #[serde(rename = "StartupGrace", default, deserialize_with = "duration")]
    pub startup_grace: Option<Duration>,
    /// Stop replacing while more than this many are unhealthy (count or percent; default 40%).
    #[serde(rename = "MaxUnhealthy", default)]
    pub max_unhealthy: Option<IntOrPercent>,
}

/// The `Scaling` block.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scaling {
    /// Scale-in preference after unhealthy and old instances.
    #[serde(rename = "DeletePolicy", default)]
    pub delete_policy: DeletePolicy,
    /// How pets are created.
    #[serde(rename = "Ordering", default)]
    pub ordering: Ordering,
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
    /// Health-driven replacement settings.
    pub health: HealthPolicy,
    /// Scale-in and pet creation settings.
    pub scaling: Scaling,
}

impl Settings {
    /// Parses and validates a spec; errors carry the path of the bad field.
    pub fn parse(spec: &GroupSpec) -> Result<Settings> {
        let props = GroupProperties::parse(spec)?;
        let updating: Updating = match &props.updating {
            Some(v) if !v.is_null() => decode_at("Properties.Updating", v)?,
            _ => Updating::default(),
        };
        let health: HealthPolicy = match &props.health {
            Some(v) if !v.is_null() => decode_at("Properties.Health", v)?,
            _ => HealthPolicy::default(),
        };
        let scaling: Scaling = match &props.scaling {
            Some(v) if !v.is_null() => decode_at("Properties.Scaling", v)?,
            _ => Scaling::default(),
        };
        if updating.min_healthy_time.is_some() && updating.duration.is_some() {
            return Err(Error::invalid(
                "Properties.Updating.Duration",
                "set MinHealthyTime or its InfraKit name Duration, not both",
            ));
        }
        let settings = Settings {
            id: spec.id.clone(),
            spec: spec.clone(),
            config_hash: props.config_hash(),
            props,
            updating,
            health,
            scaling,
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

    /// How long a new instance must have been healthy to count as available (default 0).
    pub fn min_healthy_time(&self) -> Duration {
        self.updating
            .min_healthy_time
            .or(self.updating.duration)
            .unwrap_or_default()
    }

    /// Consecutive healthy observations a new instance needs (InfraKit's `Count`, default 0).
    pub fn min_healthy_count(&self) -> u32 {
        self.updating.count.unwrap_or(0)
    }

    /// How long a rollout may go without progress (default 10 minutes).
    pub fn progress_deadline(&self) -> Duration {
        self.updating
            .progress_deadline
            .unwrap_or(Duration::from_secs(600))
    }

    /// What a failed rollout does.
    pub fn on_failure(&self) -> OnFailure {
        self.updating.on_failure.unwrap_or_default()
    }

    /// How long a drain may take (default 30 s).
    pub fn drain_timeout(&self) -> Duration {
        self.updating
            .drain_timeout
            .unwrap_or(Duration::from_secs(30))
    }

    /// Replace instances Unhealthy this long (default 10 s).
    pub fn unhealthy_after(&self) -> Duration {
        self.health
            .unhealthy_after
            .unwrap_or(Duration::from_secs(10))
    }

    /// Replace instances not Healthy this long after they appeared (default 60 s).
    pub fn startup_grace(&self) -> Duration {
        self.health.startup_grace.unwrap_or(Duration::from_secs(60))
    }

    /// Most unhealthy instances that are still replaced (default 40% of the desired count).
    pub fn max_unhealthy(&self) -> usize {
        self.health
            .max_unhealthy
            .unwrap_or(IntOrPercent::Percent(40))
            .resolve(self.desired(), false)
    }

    /// Whether instances are drained before being destroyed.
    pub fn drain_before_destroy(&self) -> bool {
        self.updating.skip_before_instance_destroy.as_deref() != Some("drain")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

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
    fn health_and_scaling_blocks_parse_with_defaults() {
        let mut sp = spec(
            json!({"MinHealthyTime": "5s", "OnFailure": "rollback", "Partition": 2}),
            json!({"Size": 10}),
        );
        sp.properties["Health"] = json!({"UnhealthyAfter": "3s", "MaxUnhealthy": 2});
        sp.properties["Scaling"] = json!({"DeletePolicy": "oldest"});
        let s = Settings::parse(&sp).unwrap();
        assert_eq!(s.min_healthy_time(), Duration::from_secs(5));
        assert_eq!(s.on_failure(), OnFailure::Rollback);
        assert_eq!(s.updating.partition, Some(2));
        assert_eq!(s.unhealthy_after(), Duration::from_secs(3));
        assert_eq!(s.startup_grace(), Duration::from_secs(60));
        assert_eq!(s.max_unhealthy(), 2);
        assert_eq!(s.scaling.delete_policy, DeletePolicy::Oldest);
        let d = Settings::parse(&spec(Value::Null, json!({"Size": 10}))).unwrap();
        assert_eq!(d.max_unhealthy(), 4, "40% of 10");
        assert_eq!(d.progress_deadline(), Duration::from_secs(600));

        let mut bad = spec(Value::Null, json!({"Size": 1}));
        bad.properties["Health"] = json!({"UnhealthyAfter": "soon"});
        let e = Settings::parse(&bad).unwrap_err().to_string();
        assert!(e.starts_with("Properties.Health.UnhealthyAfter"), "{e}");
        let e = Settings::parse(&spec(json!({"OnFailure": "explode"}), json!({"Size": 1})))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("Properties.Updating.OnFailure"), "{e}");
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
