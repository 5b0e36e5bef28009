//! The Group plugin kind and the group spec: what a group is made of and how its configuration
//! is fingerprinted.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha1::{Digest, Sha1};

use crate::error::decode_at;
use crate::flavor::{Allocation, Health};
use crate::instance::Description;
use crate::serde_util::null_as_default;
use crate::{Error, Interface, InterfaceSpec, Method, Result};

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
    /// What the group waits for, when it waits (the typed form of `Message`).
    #[serde(rename = "Waiting", default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Wait>,
}

/// Why a group is not converged although nothing (more) can be done now (an infrakit
/// extension, in [`GroupStatus`]; its text is the status message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Reason")]
pub enum Wait {
    /// Too many members are unhealthy for the health checks to be trusted: none is replaced.
    RemediationBraked {
        /// Members unhealthy.
        #[serde(rename = "Unhealthy")]
        unhealthy: usize,
        /// Members in all.
        #[serde(rename = "Of")]
        of: usize,
        /// `MaxUnhealthy`.
        #[serde(rename = "Limit")]
        limit: usize,
    },
    /// Instances above the size are kept: protected, or the only available ones.
    KeptAboveSize {
        /// How many.
        #[serde(rename = "Kept")]
        kept: usize,
        /// The size.
        #[serde(rename = "Size")]
        size: usize,
    },
    /// A rolling update waits for new instances to become available.
    NewInstancesStarting {
        /// New instances not available yet.
        #[serde(rename = "Starting")]
        starting: usize,
        /// Old instances left.
        #[serde(rename = "OldLeft")]
        old_left: usize,
    },
    /// A rolling update cannot replace old instances within its limits.
    CannotReplace {
        /// Old instances left.
        #[serde(rename = "OldLeft")]
        old_left: usize,
        /// `MaxSurge`.
        #[serde(rename = "MaxSurge")]
        max_surge: usize,
        /// `MaxUnavailable`.
        #[serde(rename = "MaxUnavailable")]
        max_unavailable: usize,
    },
    /// The rollout holds at its `Partition` until resumed.
    AtPartition {
        /// Instances (or pets' members) updated.
        #[serde(rename = "Updated")]
        updated: usize,
        /// Instances (or members) wanted.
        #[serde(rename = "Total")]
        total: usize,
        /// The partition.
        #[serde(rename = "Partition")]
        partition: usize,
        /// A group of pets (counted in members).
        #[serde(rename = "Pets", default)]
        pets: bool,
    },
    /// The rollout is paused.
    RolloutPaused {
        /// Instances (or members) updated.
        #[serde(rename = "Updated")]
        updated: usize,
        /// Instances (or members) wanted.
        #[serde(rename = "Total")]
        total: usize,
        /// A group of pets (counted in members).
        #[serde(rename = "Pets", default)]
        pets: bool,
    },
    /// Pets wait for others to become available.
    MembersWaiting {
        /// Members waiting.
        #[serde(rename = "Waiting")]
        waiting: usize,
        /// `MaxUnavailable`.
        #[serde(rename = "MaxUnavailable")]
        max_unavailable: usize,
        /// Created in order, one at a time.
        #[serde(rename = "Ordered", default)]
        ordered: bool,
    },
    /// Instances keep dying soon after starting: provisions are held back.
    CrashLoop {
        /// Young deaths in the window.
        #[serde(rename = "Deaths")]
        deaths: usize,
        /// A death within this many seconds of starting is young.
        #[serde(rename = "YoungSeconds")]
        young_secs: u64,
        /// The window, in seconds.
        #[serde(rename = "WindowSeconds")]
        window_secs: u64,
        /// Seconds until the next provision.
        #[serde(rename = "NextSeconds")]
        next_secs: u64,
    },
    /// The controller may not act now (e.g. its lease is not known valid).
    NotActing {
        /// Why.
        #[serde(rename = "Why")]
        why: String,
    },
    /// Nothing to do, but some members are not healthy yet.
    NotHealthy {
        /// How many.
        #[serde(rename = "Count")]
        count: usize,
    },
    /// A reason this version does not know (from a newer controller; its `Message` says it).
    #[serde(other)]
    Unknown,
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let members = |pets: bool| if pets { " members" } else { "" };
        match self {
            Wait::RemediationBraked { unhealthy, of, limit } => write!(
                f,
                "remediation paused: {unhealthy} of {of} unhealthy, above the limit of {limit}"
            ),
            Wait::KeptAboveSize { kept, size } => write!(
                f,
                "{kept} instance(s) above the size of {size} are kept: protected, or the only available ones"
            ),
            Wait::NewInstancesStarting { starting, old_left } => write!(
                f,
                "rolling update: waiting for {starting} new instance(s) to become available ({old_left} old left)"
            ),
            Wait::CannotReplace { old_left, max_surge, max_unavailable } => write!(
                f,
                "rolling update: cannot replace {old_left} old instance(s) within MaxSurge {max_surge} and MaxUnavailable {max_unavailable}"
            ),
            Wait::AtPartition { updated, total, partition, pets } => write!(
                f,
                "rollout paused at partition: {updated} of {total}{} updated (Partition {partition})",
                members(*pets)
            ),
            Wait::RolloutPaused { updated, total, pets } => write!(
                f,
                "rollout paused: {updated} of {total}{} updated",
                members(*pets)
            ),
            Wait::MembersWaiting { waiting, max_unavailable, ordered } => write!(
                f,
                "{waiting} member(s) wait for others to become available (MaxUnavailable {max_unavailable}{})",
                if *ordered { ", ordered creation" } else { "" }
            ),
            Wait::CrashLoop { deaths, young_secs, window_secs, next_secs } => write!(
                f,
                "crash loop: {deaths} instances died within {young_secs}s of starting in the last {window_secs}s; next provision in {next_secs}s"
            ),
            Wait::NotActing { why } => write!(f, "not acting: {why}"),
            Wait::NotHealthy { count } => write!(f, "{count} instance(s) not healthy"),
            Wait::Unknown => f.write_str("waiting"),
        }
    }
}

/// Progress of a configuration rollout (an infrakit extension).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutStatus {
    /// Where the rollout stands.
    #[serde(rename = "Phase")]
    pub phase: RolloutPhase,
    /// Instances on the current configuration.
    #[serde(rename = "Updated")]
    pub updated: usize,
    /// Instances wanted.
    #[serde(rename = "Total")]
    pub total: usize,
    /// Why the rollout is paused (a [`Pause`], as text) or rolled back, if it is.
    #[serde(rename = "Reason", default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl RolloutStatus {
    /// Why it is paused, when it is.
    pub fn pause(&self) -> Option<Pause> {
        (self.phase == RolloutPhase::Paused).then(|| Pause::from_text(&self.reason))
    }

    /// True when the rollout failed: it rolled back, or it paused on its deadline.
    pub fn failed(&self) -> bool {
        self.phase == RolloutPhase::RolledBack || self.pause().is_some_and(|p| p.is_failure())
    }
}

/// Where a rollout stands, as `DescribeGroup` reports it (the wire strings are InfraKit's
/// lower-case words).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RolloutPhase {
    /// Replacing instances.
    #[default]
    #[serde(rename = "progressing")]
    Progressing,
    /// Stopped until resumed (see [`Pause`]).
    #[serde(rename = "paused")]
    Paused,
    /// Every member runs the current configuration.
    #[serde(rename = "complete")]
    Complete,
    /// Going back to the previous configuration after a failure.
    #[serde(rename = "rolling back")]
    RollingBack,
    /// Back on the previous configuration.
    #[serde(rename = "rolled back")]
    RolledBack,
    /// A phase this version does not know (from a newer controller).
    #[serde(other, rename = "unknown")]
    Unknown,
}

impl RolloutPhase {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutPhase::Progressing => "progressing",
            RolloutPhase::Paused => "paused",
            RolloutPhase::Complete => "complete",
            RolloutPhase::RollingBack => "rolling back",
            RolloutPhase::RolledBack => "rolled back",
            RolloutPhase::Unknown => "unknown",
        }
    }

    /// True while the rollout is under way (including paused).
    pub fn in_progress(self) -> bool {
        matches!(
            self,
            RolloutPhase::Progressing | RolloutPhase::Paused | RolloutPhase::RollingBack
        )
    }
}

/// Compares with the wire string (`phase == "complete"`).
impl PartialEq<&str> for RolloutPhase {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for RolloutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a rollout is paused. Stored and sent as its text (the [`fmt::Display`] form), which
/// [`Pause::from_text`] reads back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pause {
    /// An operator paused it.
    Operator,
    /// It made no progress within its `ProgressDeadline` (with `OnFailure: pause`).
    Failed(String),
    /// A rolling update's drain refused to let an instance go.
    Drain(String),
    /// A reason this version does not know.
    Other(String),
}

const OPERATOR_PAUSE: &str = "paused by an operator";
const FAILED_PREFIX: &str = "rollout failed: ";
const DRAIN_PREFIX: &str = "rollout paused: ";

impl Pause {
    /// Reads a pause back from its text.
    pub fn from_text(text: &str) -> Pause {
        if text == OPERATOR_PAUSE {
            Pause::Operator
        } else if let Some(why) = text.strip_prefix(FAILED_PREFIX) {
            Pause::Failed(why.to_string())
        } else if let Some(why) = text.strip_prefix(DRAIN_PREFIX) {
            Pause::Drain(why.to_string())
        } else {
            Pause::Other(text.to_string())
        }
    }

    /// True when the rollout paused because it failed.
    pub fn is_failure(&self) -> bool {
        matches!(self, Pause::Failed(_))
    }
}

impl fmt::Display for Pause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pause::Operator => f.write_str(OPERATOR_PAUSE),
            Pause::Failed(why) => write!(f, "{FAILED_PREFIX}{why}"),
            Pause::Drain(why) => write!(f, "{DRAIN_PREFIX}{why}"),
            Pause::Other(text) => f.write_str(text),
        }
    }
}

impl Serialize for Pause {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Pause {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Pause, D::Error> {
        Ok(Pause::from_text(&String::deserialize(d)?))
    }
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
    /// The method of this command.
    pub const fn method(self) -> Method {
        match self {
            RolloutAction::Pause => Method::GroupPauseRollout,
            RolloutAction::Resume => Method::GroupResumeRollout,
            RolloutAction::Undo => Method::GroupUndoRollout,
        }
    }

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
    fn rollout_commands_have_their_own_methods() {
        for action in [
            RolloutAction::Pause,
            RolloutAction::Resume,
            RolloutAction::Undo,
        ] {
            let m = action.method();
            assert_eq!(m.interface(), crate::Interface::Group);
            assert!(m.mutates());
            assert!(
                m.as_str().to_lowercase().contains(action.as_str()),
                "{m} for {action:?}"
            );
        }
    }

    #[test]
    fn waits_are_tagged_by_reason_and_read_as_text() {
        let wait = Wait::AtPartition {
            updated: 1,
            total: 3,
            partition: 1,
            pets: false,
        };
        let wire = serde_json::to_value(&wait).unwrap();
        assert_eq!(
            wire,
            serde_json::json!({"Reason": "AtPartition", "Updated": 1, "Total": 3, "Partition": 1, "Pets": false})
        );
        assert_eq!(serde_json::from_value::<Wait>(wire).unwrap(), wait);
        assert_eq!(
            wait.to_string(),
            "rollout paused at partition: 1 of 3 updated (Partition 1)"
        );
        let pets = Wait::RolloutPaused {
            updated: 2,
            total: 5,
            pets: true,
        };
        assert_eq!(pets.to_string(), "rollout paused: 2 of 5 members updated");
        let status = GroupStatus {
            waiting: Some(Wait::NotHealthy { count: 2 }),
            ..Default::default()
        };
        let wire = serde_json::to_value(&status).unwrap();
        assert_eq!(
            wire["Waiting"],
            serde_json::json!({"Reason": "NotHealthy", "Count": 2})
        );
        let newer = serde_json::json!({"Reason": "SomethingNew", "Detail": 1});
        assert_eq!(
            serde_json::from_value::<Wait>(newer).unwrap(),
            Wait::Unknown
        );
        let without = serde_json::to_value(GroupStatus::default()).unwrap();
        assert!(
            without.get("Waiting").is_none(),
            "left out when not waiting"
        );
    }

    #[test]
    fn rollout_phases_and_pauses_keep_their_wire_text() {
        for phase in [
            RolloutPhase::Progressing,
            RolloutPhase::Paused,
            RolloutPhase::Complete,
            RolloutPhase::RollingBack,
            RolloutPhase::RolledBack,
        ] {
            let wire = serde_json::to_value(phase).unwrap();
            assert_eq!(wire, phase.as_str());
            assert_eq!(serde_json::from_value::<RolloutPhase>(wire).unwrap(), phase);
        }
        assert_eq!(
            serde_json::from_value::<RolloutPhase>("exploding".into()).unwrap(),
            RolloutPhase::Unknown
        );
        for (pause, text) in [
            (Pause::Operator, "paused by an operator"),
            (
                Pause::Failed("no progress".into()),
                "rollout failed: no progress",
            ),
            (Pause::Drain("busy".into()), "rollout paused: busy"),
            (Pause::Other("because".into()), "because"),
        ] {
            assert_eq!(pause.to_string(), text);
            assert_eq!(serde_json::to_value(&pause).unwrap(), text);
            assert_eq!(serde_json::from_value::<Pause>(text.into()).unwrap(), pause);
        }
        let status = |phase, reason: &str| RolloutStatus {
            phase,
            reason: reason.into(),
            ..Default::default()
        };
        assert!(status(RolloutPhase::RolledBack, "rolled back: x").failed());
        assert!(status(RolloutPhase::Paused, "rollout failed: x").failed());
        assert!(!status(RolloutPhase::Paused, "paused by an operator").failed());
        assert!(!status(RolloutPhase::Progressing, "rollout failed: x").failed());
    }

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
