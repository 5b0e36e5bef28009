//! InfraKit's vanilla flavor, plus health probes.
//!
//! The vanilla flavor adds init lines, tags and attachments to every instance of a group and
//! judges health by the instance's provider state and, if configured, a probe:
//!
//! ```json
//! {
//!   "Init": ["echo hello"],
//!   "Tags": {"tier": "web", "member": "{{ Index }}"},
//!   "Attachments": [{"ID": "data-{{ LogicalID }}", "Type": "volume"}],
//!   "Health": {
//!     "HTTP": {"URL": "http://127.0.0.1:{{ Tags.port }}/health", "Status": 200},
//!     "Interval": "1s",
//!     "Timeout": "1s"
//!   }
//! }
//! ```
//!
//! * **Prepare** appends the `Init` lines to the spec's init script (joined with `\n`), merges
//!   `Tags` into the spec's tags (the flavor's win), and appends `Attachments`. Attachment IDs and
//!   tag values are templates: `{{ LogicalID }}` (the spec's logical ID, empty for cattle),
//!   `{{ Group }}` and `{{ Index }}` (the `Index`'s group and sequence), so each pet of a group
//!   can get its own volume (`data-{{ LogicalID }}`). Strings without `{{` (or `{%`, `{#`) are
//!   used as they are.
//! * **Healthy** reports [`Health::Unhealthy`] when the instance plugin says the instance's
//!   `State` is `exited`, `dead`, `stopped` or `terminated`. Otherwise, without a probe, it is
//!   [`Health::Healthy`]; with one, the probe decides:
//!   `{"Exec": ["sh", "-c", "..."]}` (exit status 0), `{"TCP": "host:port"}` (connects) or
//!   `{"HTTP": {"URL": "http://...", "Status": 200}}` (answers with that status), each within
//!   `Timeout`. Exec probes see `INFRAKIT_INSTANCE_ID`, `INFRAKIT_LOGICAL_ID` and
//!   `INFRAKIT_GROUP` in their environment. Probe strings may use placeholders: `{{ ID }}`,
//!   `{{ LogicalID }}`, `{{ Group }}`, `{{ Tags.name }}` and `{{ Properties.field }}`.
//!   Results are cached per instance for `Interval`, so the group controller may ask often.
//! * **Watch** (`FlavorHealth.Watch`, with a probe): the flavor probes the instances it is given
//!   once per `Interval` by itself and publishes each change of verdict as an event on
//!   `/flavor/health/<watch>` (see [`infrakit_spi::Event::health`]), so the group controller
//!   hears of changes without asking.
//! * **Drain** does nothing.

mod cache;
pub mod probe;
pub mod properties;
mod template;
mod verdict;
mod watch;

use std::cell::OnceCell;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use infrakit_spi::{
    Allocation, Description, Error, Event, Flavor, Health, HealthCadence, Index, Publisher, Result,
    Spec,
};
use serde_json::Value;

pub use probe::{ProbeError, ENV_GROUP, ENV_INSTANCE_ID, ENV_LOGICAL_ID};
pub use properties::{HealthProbe, ProbeCheck, VanillaProperties};

pub use verdict::DEAD_STATES;

/// The vanilla flavor. Cheap to share behind an `Arc`; all methods take `&self` and may be called
/// concurrently.
#[derive(Debug, Default)]
pub struct VanillaFlavor {
    cache: Arc<cache::HealthCache>,
    watches: Arc<watch::Watches>,
    /// The last properties parsed for `Healthy`, which is called with the same properties for
    /// every member of a group on every reconcile.
    parsed: std::sync::Mutex<Option<(Value, Arc<VanillaProperties>)>>,
}

impl VanillaFlavor {
    /// A flavor with an empty health cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many health watches are running (see [`Flavor::watch_health`]).
    pub fn watches(&self) -> usize {
        self.watches.len()
    }

    /// `properties` parsed, reusing the last parse when they are the same.
    fn parsed(&self, properties: &Value) -> Result<Arc<VanillaProperties>> {
        let mut last = self
            .parsed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((value, parsed)) = last.as_ref() {
            if value == properties {
                return Ok(parsed.clone());
            }
        }
        let parsed = Arc::new(VanillaProperties::parse(properties)?);
        *last = Some((properties.clone(), parsed.clone()));
        Ok(parsed)
    }
}

/// Adds `properties` to `spec` for the instance at `index`: init lines appended, tags merged
/// (the flavor's win), attachments appended. Attachment IDs and tag values are rendered as
/// templates with `LogicalID` (the spec's, empty if none), `Group` and `Index` (`index.group`
/// and `index.sequence`). The spec's properties and logical ID are left alone.
///
/// A template that cannot be rendered is [`Error::Invalid`] at its field, e.g.
/// `Properties.Attachments[0].ID` or `Properties.Tags.role`.
pub fn apply(properties: &VanillaProperties, mut spec: Spec, index: &Index) -> Result<Spec> {
    let ctx = OnceCell::new();
    let ctx = || ctx.get_or_init(|| template::prepare_context(spec.logical_id.as_deref(), index));
    let mut tags = Vec::with_capacity(properties.tags.len());
    for (key, value) in &properties.tags {
        let value = template::render(value, ctx())
            .map_err(|e| Error::invalid(properties::tag_path(key), e.to_string()))?;
        tags.push((key.to_string(), value));
    }
    let mut attachments = Vec::with_capacity(properties.attachments.len());
    for (i, a) in properties.attachments.iter().enumerate() {
        let id = template::render(&a.id, ctx())
            .map_err(|e| Error::invalid(properties::attachment_path(i), e.to_string()))?;
        attachments.push(infrakit_spi::Attachment {
            id,
            kind: a.kind.clone(),
        });
    }
    if !properties.init.is_empty() {
        let lines = properties.init.join("\n");
        spec.init = if spec.init.is_empty() {
            lines
        } else {
            format!("{}\n{lines}", spec.init)
        };
    }
    spec.tags.extend(tags);
    spec.attachments.extend(attachments);
    Ok(spec)
}

#[async_trait]
impl Flavor for VanillaFlavor {
    async fn validate(&self, properties: &Value, _allocation: &Allocation) -> Result<()> {
        VanillaProperties::parse(properties).map(drop)
    }

    async fn prepare(
        &self,
        properties: &Value,
        spec: Spec,
        _allocation: &Allocation,
        index: &Index,
    ) -> Result<Spec> {
        let properties = VanillaProperties::parse(properties)?;
        apply(&properties, spec, index)
    }

    async fn healthy(&self, properties: &Value, instance: &Description) -> Result<Health> {
        let properties = self.parsed(properties)?;
        Ok(match &properties.health {
            None => verdict::described_health(instance).unwrap_or(Health::Healthy),
            Some(probe) => verdict::judge(&self.cache, probe, instance).await,
        })
    }

    /// With a probe: probes `instances` once per interval and publishes the changes. Without
    /// one there is nothing to watch (a verdict changes only with the description).
    async fn watch_health(
        &self,
        properties: &Value,
        watch: &str,
        instances: &[&Description],
        lease: Duration,
    ) -> Result<bool> {
        let properties = self.parsed(properties)?;
        if properties.health.is_none() {
            return Ok(false);
        }
        let instances = instances.iter().map(|d| (*d).clone()).collect();
        self.watches
            .set(&self.cache, watch, properties, instances, lease);
        Ok(true)
    }

    async fn drain(&self, _properties: &Value, _instance: &Description) -> Result<()> {
        Ok(())
    }

    /// Without a probe, a verdict is read off the description alone; with one, it holds for
    /// the probe's interval (the cache answers until then).
    async fn health_cadence(&self, properties: &Value) -> Result<HealthCadence> {
        Ok(match &self.parsed(properties)?.health {
            None => HealthCadence::OnChange,
            Some(probe) => HealthCadence::Every(probe.interval),
        })
    }
}

/// The health-change events of the flavor's watches.
impl Publisher for VanillaFlavor {
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.watches.subscribe()
    }
}
