//! The Group plugin: InfraKit's Group API on top of one [`Supervisor`] per group, plus
//! infrakit's extensions (plan previews and rollout control).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::Mutex;
use tokio::time::Instant;

use infrakit_rpc::Plugins;
use infrakit_spi::group::{PlanPreview, RolloutAction};
use infrakit_spi::{Description, Error, Group, GroupDescription, GroupSpec, Instance, Result};
use infrakit_store::Store;

pub use crate::context::ControllerConfig;
use crate::context::{plugins_of, Context};
use crate::executor;
use crate::explain;
use crate::fence::{Fence, Unfenced};
use crate::health::HealthClock;
use crate::history::History;
use crate::listing::{self, Listing, Watch};
use crate::observe::{self, membership};
use crate::preview;
use crate::pushed::{HealthFeed, Watcher};
use crate::rollout::RolloutState;
use crate::settings::Settings;
use crate::state::{self, decode_record};
use crate::supervisor::{self, Supervisor};
use crate::telemetry::{kind, Telemetry};

/// The group controller, served as a Group plugin.
pub struct GroupPlugin {
    ctx: Arc<Context>,
    groups: Mutex<BTreeMap<String, Supervisor>>,
}

impl std::fmt::Debug for GroupPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupPlugin")
            .field("ctx", &self.ctx)
            .finish()
    }
}

/// The members of the group `settings` describe, as its instance plugin lists them (without
/// what it should not have listed), and what the plugin did wrong, if anything.
async fn listed(
    instance: &dyn Instance,
    settings: &Settings,
    properties: bool,
) -> Result<(Vec<Description>, Option<String>)> {
    listing::members(
        instance,
        &settings.props.instance.plugin,
        &membership(&settings.id),
        properties,
    )
    .await
}

/// How long `DescribeGroup` waits for the instance plugin's listing before it answers with what
/// the controller last observed.
const DESCRIBE_WAIT: Duration = Duration::from_secs(5);

/// The group's instances for `DescribeGroup`: listed now, or, when the instance plugin takes
/// longer than [`DESCRIBE_WAIT`] (a throttled cloud API, a slow backend) and a pass has observed
/// the group, what that pass saw, with a fault saying so (the caller's own deadline would
/// otherwise pass with no answer at all).
async fn listed_or_observed(
    instance: &dyn Instance,
    settings: &Settings,
    observed: Option<crate::state::Observed>,
) -> Result<(Vec<Description>, Option<String>)> {
    let listing = listed(instance, settings, true);
    let Some(observed) = observed else {
        return listing.await;
    };
    tokio::pin!(listing);
    tokio::select! {
        listed = &mut listing => listed,
        _ = tokio::time::sleep(DESCRIBE_WAIT) => {
            let age = observed.at.elapsed();
            let plugin = &settings.props.instance.plugin;
            tracing::debug!(group = %settings.id, plugin = %plugin, "instance plugin slow to list; describing what the last pass observed");
            Ok((
                observed.instances.as_ref().clone(),
                Some(format!(
                    "instance plugin '{plugin}' did not list within {}; instances as observed {} ago",
                    humantime::format_duration(DESCRIBE_WAIT),
                    humantime::format_duration(Duration::from_millis(age.as_millis() as u64)),
                )),
            ))
        }
    }
}

/// Re-roots a plugin's validation error under the group spec field it came from.
fn under(path: &str, e: Error) -> Error {
    match e {
        Error::Invalid { path: p, message } => {
            let p = p
                .strip_prefix("Properties")
                .unwrap_or(&p)
                .trim_start_matches('.')
                .to_string();
            let full = if p.is_empty() {
                format!("{path}.Properties")
            } else {
                format!("{path}.Properties.{p}")
            };
            Error::invalid(full, message)
        }
        Error::Unavailable { .. } | Error::Timeout { .. } => {
            Error::invalid(format!("{path}.Plugin"), e.to_string())
        }
        other => Error::invalid(format!("{path}.Properties"), other.to_string()),
    }
}

impl GroupPlugin {
    /// A group plugin that keeps its groups in memory only.
    pub fn new(plugins: Arc<Plugins>, config: ControllerConfig) -> Self {
        GroupPlugin {
            ctx: Arc::new(Context {
                plugins,
                config,
                store: None,
                fence: Arc::new(Unfenced),
            }),
            groups: Mutex::new(BTreeMap::new()),
        }
    }

    /// A group plugin that persists specs and rollout progress in `store`, and resumes managing
    /// the groups found there.
    pub async fn with_store(
        plugins: Arc<Plugins>,
        config: ControllerConfig,
        store: Arc<dyn Store>,
    ) -> Result<Self> {
        Self::fenced(plugins, config, store, Arc::new(Unfenced)).await
    }

    /// Like [`GroupPlugin::with_store`], acting only while `fence` allows (a manager's term of
    /// leadership).
    pub async fn fenced(
        plugins: Arc<Plugins>,
        config: ControllerConfig,
        store: Arc<dyn Store>,
        fence: Arc<dyn Fence>,
    ) -> Result<Self> {
        let records = store
            .load()
            .await
            .map_err(|e| Error::caused("cannot load group state", e))?;
        let plugin = GroupPlugin {
            ctx: Arc::new(Context {
                plugins,
                config,
                store: Some(store),
                fence,
            }),
            groups: Mutex::new(BTreeMap::new()),
        };
        {
            let mut groups = plugin.groups.lock().await;
            for (id, record) in records {
                let restored = decode_record(&record)
                    .and_then(|(spec, rollout)| Ok((Settings::parse(&spec)?, rollout)));
                match restored {
                    Ok((settings, rollout)) => {
                        tracing::info!(group = %id, "resuming management of group");
                        groups.insert(id, Supervisor::start(plugin.ctx.clone(), settings, rollout));
                    }
                    Err(e) => {
                        tracing::error!(group = %id, error = %e, "ignoring unreadable group state")
                    }
                }
            }
        }
        Ok(plugin)
    }

    /// Parses a spec and checks it with its plugins, without changing anything.
    async fn validate(&self, spec: &GroupSpec) -> Result<Settings> {
        let settings = Settings::parse(spec)?;
        let instance = self
            .ctx
            .plugins
            .instance(&settings.props.instance.plugin)
            .map_err(|e| under("Properties.Instance", e))?;
        let flavor = self
            .ctx
            .plugins
            .flavor(&settings.props.flavor.plugin)
            .map_err(|e| under("Properties.Flavor", e))?;
        flavor
            .validate(
                &settings.props.flavor.properties,
                &settings.props.allocation,
            )
            .await
            .map_err(|e| under("Properties.Flavor", e))?;
        instance
            .validate(&settings.props.instance.properties)
            .await
            .map_err(|e| under("Properties.Instance", e))?;
        Ok(settings)
    }

    /// The current settings of group `id`.
    async fn settings_of(&self, id: &str) -> Result<Arc<Settings>> {
        let groups = self.groups.lock().await;
        Ok(groups
            .get(id)
            .ok_or_else(|| Error::group_not_watched(id))?
            .settings())
    }

    /// Stops managing group `id` and forgets its saved state; returns its last settings.
    async fn unmanage(&self, id: &str) -> Result<Arc<Settings>> {
        let sup = self
            .groups
            .lock()
            .await
            .remove(id)
            .ok_or_else(|| Error::group_not_watched(id))?;
        let settings = sup.settings();
        drop(sup);
        self.ctx.config.telemetry.metrics.forget(id);
        if let Some(store) = &self.ctx.store {
            if let Err(e) = store.delete(id).await {
                tracing::warn!(group = id, error = %e, "cannot remove the group's saved state");
            }
        }
        Ok(settings)
    }

    /// Commits a modified copy of a group's spec (used by size changes).
    async fn recommit(&self, id: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Result<()> {
        let mut spec = self.settings_of(id).await?.spec.clone();
        edit(&mut spec.properties);
        self.commit_group(spec, false).await.map(|_| ())
    }
}

#[async_trait]
impl Group for GroupPlugin {
    async fn commit_group(&self, spec: GroupSpec, pretend: bool) -> Result<String> {
        let settings = self.validate(&spec).await?;
        let mut groups = self.groups.lock().await;
        let Some(sup) = groups.get(&settings.id) else {
            let details = explain::new_group(&settings);
            if !pretend {
                let rollout = RolloutState::default();
                state::save_new(&self.ctx, &settings, &rollout).await?;
                tracing::info!(group = %settings.id, "managing group");
                self.telemetry().events.group(
                    kind::COMMITTED,
                    &settings.id,
                    None,
                    format!("committed: {details}"),
                );
                groups.insert(
                    settings.id.clone(),
                    Supervisor::start(self.ctx.clone(), settings, rollout),
                );
            }
            return Ok(details);
        };
        let old = sup.settings();
        let (instance, _) = plugins_of(&self.ctx, &settings)?;
        let (members, _) = listed(instance.as_ref(), &settings, false).await?;
        let hashes: Vec<Option<String>> = members
            .iter()
            .map(|d| d.config_hash().map(str::to_string))
            .collect();
        let details = explain::update(&old, &settings, &hashes);
        if !pretend {
            tracing::info!(group = %settings.id, details, "updating group");
            let id = settings.id.clone();
            sup.commit(settings).await?;
            self.telemetry().events.group(
                kind::COMMITTED,
                &id,
                None,
                format!("committed: {details}"),
            );
        }
        Ok(details)
    }

    async fn free_group(&self, id: &str) -> Result<()> {
        self.unmanage(id).await?;
        tracing::info!(group = id, "freed group; its instances are left alone");
        self.telemetry().events.group(
            kind::COMMITTED,
            id,
            None,
            "freed: no longer managed; its instances are left alone",
        );
        Ok(())
    }

    async fn describe_group(&self, id: &str) -> Result<GroupDescription> {
        let (settings, snapshot, observed) = {
            let groups = self.groups.lock().await;
            let sup = groups.get(id).ok_or_else(|| Error::group_not_watched(id))?;
            (sup.settings(), sup.snapshot(), sup.last_observed())
        };
        let (instance, _) = plugins_of(&self.ctx, &settings)?;
        let (instances, mut fault) =
            listed_or_observed(instance.as_ref(), &settings, observed).await?;
        let adopted = match self.groups.lock().await.get(id) {
            Some(sup) => sup.created_despite_failure(&instances),
            None => 0,
        };
        if adopted > 0 {
            let plugin = &settings.props.instance.plugin;
            let said = format!(
                "instance plugin '{plugin}' said {adopted} provision(s) failed that created their instance anyway (adopted)"
            );
            fault = Some(match fault {
                Some(f) => format!("{f}; {said}"),
                None => said,
            });
        }
        let mut status = snapshot.status;
        if let Some(fault) = fault {
            status.message = match status.message.as_str() {
                "" => fault,
                said => format!("{said}; {fault}"),
            };
        }
        status.desired = settings.desired();
        status.config_hash = settings.config_hash.clone();
        if !snapshot.observed && status.message.is_empty() {
            status.message = "not observed yet".into();
        }
        Ok(GroupDescription {
            converged: snapshot.converged && instances.len() == settings.desired(),
            instances,
            status: Some(status),
        })
    }

    async fn destroy_group(&self, id: &str) -> Result<()> {
        let settings = self.unmanage(id).await?;
        let (instance, flavor) = plugins_of(&self.ctx, &settings)?;
        let (members, _) = listed(instance.as_ref(), &settings, true).await?;
        let (instance, flavor) = (instance.as_ref(), flavor.as_ref());
        let settings = settings.as_ref();
        let destroys: Vec<_> = members
            .iter()
            .map(|d| async move {
                executor::destroy_one(
                    &self.ctx,
                    settings,
                    instance,
                    flavor,
                    d,
                    crate::planner::Reason::ScaleDown,
                )
                .await
                .map_err(|e| Error::plugin(e.to_string()))
            })
            .collect();
        let errors = executor::run_bounded(destroys, self.ctx.config.max_parallel.max(1)).await;
        if !errors.is_empty() {
            return Err(Error::plugin(format!(
                "group {id} is no longer managed, but {} instance(s) could not be destroyed: {}",
                errors.len(),
                errors.join("; ")
            )));
        }
        tracing::info!(group = id, destroyed = members.len(), "destroyed group");
        self.telemetry().events.group(
            kind::DESTROYED,
            id,
            None,
            format!("group destroyed with its {} instance(s)", members.len()),
        );
        Ok(())
    }

    async fn inspect_groups(&self) -> Result<Vec<GroupSpec>> {
        Ok(self
            .groups
            .lock()
            .await
            .values()
            .map(|s| s.settings().spec.clone())
            .collect())
    }

    async fn destroy_instances(&self, id: &str, ids: &[String]) -> Result<()> {
        let settings = self.settings_of(id).await?;
        let (instance, flavor) = plugins_of(&self.ctx, &settings)?;
        let (members, _) = listed(instance.as_ref(), &settings, true).await?;
        let mut victims = Vec::new();
        for wanted in ids {
            match members.iter().find(|d| &d.id == wanted) {
                Some(d) => victims.push(d.clone()),
                None => {
                    return Err(Error::plugin(format!(
                        "instance {wanted} is not a member of group {id}"
                    )))
                }
            }
        }
        if !settings.is_pets() {
            let size = settings.desired().saturating_sub(victims.len());
            self.recommit(id, |p| p["Allocation"] = json!({"Size": size}))
                .await?;
        }
        for d in &victims {
            executor::destroy_one(
                &self.ctx,
                &settings,
                instance.as_ref(),
                flavor.as_ref(),
                d,
                crate::planner::Reason::ScaleDown,
            )
            .await
            .map_err(|e| Error::plugin(e.to_string()))?;
        }
        Ok(())
    }

    async fn size(&self, id: &str) -> Result<usize> {
        Ok(self.settings_of(id).await?.desired())
    }

    async fn set_size(&self, id: &str, size: usize) -> Result<()> {
        let pets = self.settings_of(id).await?.is_pets();
        if pets {
            return Err(Error::plugin(format!(
                "group {id} is allocated by logical IDs; change its LogicalIDs to resize it"
            )));
        }
        self.recommit(id, |p| p["Allocation"] = json!({"Size": size}))
            .await
    }

    async fn plan_group(&self, spec: GroupSpec) -> Result<PlanPreview> {
        let settings = self.validate(&spec).await?;
        let old = {
            let groups = self.groups.lock().await;
            groups.get(&settings.id).map(|s| s.settings())
        };
        let (instance, flavor) = plugins_of(&self.ctx, &settings)?;
        // A fresh look: no cache, every instance checked.
        let observed = observe::observe(
            &self.ctx,
            (&settings, &Watch::default(), &HealthFeed::default()),
            (instance.as_ref(), flavor.as_ref()),
            (
                &mut Listing::default(),
                &mut HealthClock::default(),
                &mut Watcher::default(),
            ),
        )
        .await?;
        // Treat what is healthy now as established, so the simulation starts from a steady view.
        let mut history = History::default();
        let then = Instant::now();
        history.observe(observed.health(), then, drop);
        let later = then + Duration::from_secs(86_400);
        let members = observe::members(&settings, &observed, &mut history, later);
        let gate = RolloutState::default().gate(&settings);
        let sim = preview::simulate(&supervisor::target(&settings, gate), &members, 10_000);
        let details = match &old {
            None => explain::new_group(&settings),
            Some(old) => {
                let hashes: Vec<Option<String>> = observed
                    .descriptions
                    .iter()
                    .map(|d| d.config_hash().map(str::to_string))
                    .collect();
                explain::update(old, &settings, &hashes)
            }
        };
        Ok(PlanPreview {
            details,
            steps: sim.steps,
            min_healthy: sim.min_available,
            max_instances: sim.max_instances,
        })
    }

    async fn rollout(&self, id: &str, action: RolloutAction) -> Result<()> {
        let groups = self.groups.lock().await;
        groups
            .get(id)
            .ok_or_else(|| Error::group_not_watched(id))?
            .rollout(action)
            .await?;
        let (k, what) = match action {
            RolloutAction::Pause => (kind::ROLLOUT_PAUSED, "rollout paused by an operator"),
            RolloutAction::Resume => (kind::ROLLOUT_RESUMED, "rollout resumed by an operator"),
            RolloutAction::Undo => (
                kind::ROLLED_BACK,
                "rollout undone by an operator: back to the previous configuration",
            ),
        };
        self.telemetry().events.group(k, id, None, what);
        Ok(())
    }
}

impl GroupPlugin {
    /// Where this controller's events and metrics go.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.ctx.config.telemetry
    }
}

impl infrakit_spi::event::Publisher for GroupPlugin {
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<infrakit_spi::Event> {
        self.telemetry().events.subscribe()
    }

    fn recent(&self) -> Vec<infrakit_spi::Event> {
        self.telemetry().events.recent()
    }
}
