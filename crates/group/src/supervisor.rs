//! One group's control loop: observe, plan, execute.
//!
//! A supervisor reconciles when its timer fires (the poll interval, shorter while a change is in
//! progress), when its settings change, and at once when the instance plugin publishes an event
//! about one of the group's instances. Reconciles of one group never overlap. Nothing is planned
//! until an observation succeeds, so a plugin that is down never makes the controller act on a
//! guess. Instances that die as soon as they start put the group in crash-loop back-off (see
//! [`crate::history`]) instead of a tight create loop.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use infrakit_rpc::Plugins;
use infrakit_spi::event::INSTANCE_TOPIC;
use infrakit_spi::group::{ConfigState, GroupStatus, InstanceStatus};
use infrakit_spi::instance::{CONFIG_HASH_TAG, GROUP_TAG, LOGICAL_ID_TAG};
use infrakit_spi::{
    Description, DestroyContext, Error, Flavor, Health, Index, Instance, Result, Spec, Tags,
};

use crate::history::History;
use crate::planner::{self, Action, Desired, Member, Plan, Target};
use crate::settings::Settings;

/// Tag that keeps an instance from being chosen by scale-in.
pub const PROTECT_TAG: &str = "infrakit.protect";

/// How long to wait before looking again while a change is in progress.
const PROGRESS_RECHECK: Duration = Duration::from_millis(250);
/// Longest back-off after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Knobs shared by every supervisor.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Time between reconciles of a converged group.
    pub poll_interval: Duration,
    /// Provisions (and, separately, destroys) run at most this many at a time.
    pub max_parallel: usize,
    /// A `Flavor.Healthy` call slower than this counts as Unknown.
    pub health_timeout: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            poll_interval: Duration::from_secs(1),
            max_parallel: 64,
            health_timeout: Duration::from_secs(5),
        }
    }
}

/// Shared by the supervisors of one group plugin.
#[derive(Debug)]
pub struct Context {
    /// Where plugins are found.
    pub plugins: Arc<Plugins>,
    /// Controller knobs.
    pub config: ControllerConfig,
}

/// The last reconcile's view of a group.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Extended status for `DescribeGroup`.
    pub status: GroupStatus,
    /// True when the last plan had nothing to do or wait for.
    pub converged: bool,
    /// True once an observation has succeeded.
    pub observed: bool,
    /// The settings this view was computed against.
    pub settings: Option<Arc<Settings>>,
}

/// A running control loop for one group.
pub struct Supervisor {
    settings: watch::Sender<Arc<Settings>>,
    wake: Arc<Notify>,
    snapshot: Arc<RwLock<Snapshot>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts managing a group.
    pub fn start(ctx: Arc<Context>, settings: Settings) -> Supervisor {
        let (tx, rx) = watch::channel(Arc::new(settings));
        let wake = Arc::new(Notify::new());
        let snapshot = Arc::new(RwLock::new(Snapshot::default()));
        let control = tokio::spawn(run(ctx.clone(), rx.clone(), wake.clone(), snapshot.clone()));
        let events = tokio::spawn(watch_events(ctx, rx, wake.clone()));
        Supervisor {
            settings: tx,
            wake,
            snapshot,
            tasks: vec![control, events],
        }
    }

    /// Replaces the settings; the loop reconciles against them at once.
    pub fn update(&self, settings: Settings) {
        self.settings.send_replace(Arc::new(settings));
    }

    /// The current settings.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.borrow().clone()
    }

    /// The last reconcile's view.
    /// `converged` is false until a reconcile has run against the current settings.
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = self
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let current = self.settings();
        if !snap
            .settings
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, &current))
        {
            snap.converged = false;
        }
        snap
    }

    /// Asks for a reconcile now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What one reconcile did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Actions ran; look again at once.
    Acted,
    /// Nothing to do now, but not converged (e.g. waiting for health).
    Waiting,
    /// Nothing to do.
    Converged,
}

async fn run(
    ctx: Arc<Context>,
    mut settings: watch::Receiver<Arc<Settings>>,
    wake: Arc<Notify>,
    snapshot: Arc<RwLock<Snapshot>>,
) {
    let mut history = History::default();
    let mut delay = Duration::ZERO;
    let mut failures: u32 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = wake.notified() => {}
            changed = settings.changed() => if changed.is_err() { return },
        }
        let current = settings.borrow_and_update().clone();
        let result = reconcile(&ctx, &current, &mut history).await;
        let mut snap = snapshot.write().unwrap_or_else(|p| p.into_inner());
        snap.settings = Some(current.clone());
        match result {
            Ok((outcome, status)) => {
                failures = 0;
                snap.converged = outcome == Outcome::Converged;
                snap.observed = true;
                snap.status = status;
                delay = match outcome {
                    Outcome::Acted => Duration::ZERO,
                    Outcome::Waiting => PROGRESS_RECHECK.min(ctx.config.poll_interval),
                    Outcome::Converged => ctx.config.poll_interval,
                };
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let backoff = Duration::from_millis(250u64.saturating_mul(1 << failures.min(10)))
                    .min(MAX_BACKOFF)
                    .max(ctx.config.poll_interval.min(MAX_BACKOFF));
                tracing::warn!(group = %current.id, error = %e, retry_in = ?backoff, "reconcile failed; nothing was changed");
                snap.converged = false;
                snap.status.message =
                    format!("cannot reconcile: {e} (nothing changed; retrying in {backoff:?})");
                delay = backoff;
            }
        }
    }
}

/// The instance and flavor plugins a group uses.
pub(crate) fn plugins_of(
    ctx: &Context,
    settings: &Settings,
) -> Result<(Arc<dyn Instance>, Arc<dyn Flavor>)> {
    Ok((
        ctx.plugins.instance(&settings.props.instance.plugin)?,
        ctx.plugins.flavor(&settings.props.flavor.plugin)?,
    ))
}

/// Tags that select the members of group `id`.
pub fn membership(id: &str) -> Tags {
    Tags::from([(GROUP_TAG.to_string(), id.to_string())])
}

/// One observation: the group's instances with their health.
pub(crate) async fn observe(
    ctx: &Context,
    settings: &Settings,
    instance: &dyn Instance,
    flavor: &dyn Flavor,
) -> Result<Vec<(Description, Health)>> {
    let descriptions = instance
        .describe_instances(&membership(&settings.id), true)
        .await?;
    let flavor_props = &settings.props.flavor.properties;
    let timeout = ctx.config.health_timeout;
    let checks = descriptions.into_iter().map(|d| async move {
        let health = match tokio::time::timeout(timeout, flavor.healthy(flavor_props, &d)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                tracing::debug!(instance = %d.id, error = %e, "health check failed; counting as unknown");
                Health::Unknown
            }
            Err(_) => {
                tracing::debug!(instance = %d.id, "health check timed out; counting as unknown");
                Health::Unknown
            }
        };
        (d, health)
    });
    Ok(futures::stream::iter(checks)
        .buffered(ctx.config.max_parallel.max(1))
        .collect()
        .await)
}

async fn reconcile(
    ctx: &Context,
    settings: &Settings,
    history: &mut History,
) -> Result<(Outcome, GroupStatus)> {
    let (instance, flavor) = plugins_of(ctx, settings)?;
    let observed = observe(ctx, settings, instance.as_ref(), flavor.as_ref()).await?;
    let now = Instant::now();
    history.observe(observed.iter().map(|(d, _)| d.id.as_str()), now);
    let members: Vec<Member> = observed
        .iter()
        .map(|(d, h)| Member {
            id: d.id.clone(),
            logical_id: d.logical_id().map(str::to_string),
            current: d.config_hash() == Some(settings.config_hash.as_str()),
            health: *h,
            age: history.age(&d.id, now),
            protected: d.tags.get(PROTECT_TAG).map(String::as_str) == Some("true"),
        })
        .collect();
    let target = Target {
        desired: match &settings.props.allocation.logical_ids {
            Some(ids) if !ids.is_empty() => Desired::LogicalIds(ids.clone()),
            _ => Desired::Size(settings.desired()),
        },
        max_surge: settings.max_surge(),
        max_unavailable: settings.max_unavailable(),
    };
    let mut plan = planner::plan(&target, &members);

    // Crash-loop protection: hold back provisions while new instances keep dying young.
    let wanted = plan
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Provision { .. }))
        .count();
    let (allowed, why) = history.allow_provisions(wanted, target.desired.count(), now);
    if allowed < wanted {
        let mut skip = wanted - allowed;
        plan.actions.retain(|a| match a {
            Action::Provision { .. } if skip > 0 => {
                skip -= 1;
                false
            }
            _ => true,
        });
    }
    if let Some(why) = why {
        plan.waiting = Some(why);
    }
    for a in &plan.actions {
        if let Action::Destroy { id, .. } = a {
            history.destroyed(id);
        }
    }

    let mut message = plan.waiting.clone().unwrap_or_default();
    let outcome = if !plan.actions.is_empty() {
        let errors = execute(
            ctx,
            settings,
            instance.as_ref(),
            flavor.as_ref(),
            &plan,
            &observed,
        )
        .await;
        if !errors.is_empty() {
            let text = format!("{} action(s) failed: {}", errors.len(), errors.join("; "));
            return Err(Error::plugin(text));
        }
        message = describe_plan(&plan);
        Outcome::Acted
    } else if plan.converged() {
        Outcome::Converged
    } else {
        Outcome::Waiting
    };
    let healthy = members
        .iter()
        .filter(|m| m.health == Health::Healthy)
        .count();
    let status = GroupStatus {
        desired: target.desired.count(),
        actual: members.len(),
        healthy,
        config_hash: settings.config_hash.clone(),
        message,
        instances: members
            .iter()
            .map(|m| InstanceStatus {
                id: m.id.clone(),
                logical_id: m.logical_id.clone(),
                config: if m.current {
                    ConfigState::Current
                } else {
                    ConfigState::Old
                },
                health: m.health,
                age_seconds: m.age.as_secs(),
            })
            .collect(),
    };
    Ok((outcome, status))
}

fn describe_plan(plan: &Plan) -> String {
    let provisions = plan
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Provision { .. }))
        .count();
    let destroys = plan.actions.len() - provisions;
    format!("provisioning {provisions}, destroying {destroys}")
}

/// Runs a plan: destroys first, then provisions, each at most `max_parallel` at a time.
/// Returns the errors, one line each.
async fn execute(
    ctx: &Context,
    settings: &Settings,
    instance: &dyn Instance,
    flavor: &dyn Flavor,
    plan: &Plan,
    observed: &[(Description, Health)],
) -> Vec<String> {
    let parallel = ctx.config.max_parallel.max(1);
    let mut destroys = Vec::new();
    let mut provisions = Vec::new();
    for (seq, action) in plan.actions.iter().enumerate() {
        match action {
            Action::Destroy { id, reason } => {
                if let Some((d, _)) = observed.iter().find(|(d, _)| &d.id == id) {
                    tracing::info!(group = %settings.id, instance = %d.id, reason = reason.as_str(), "destroying instance");
                    destroys.push(destroy_one(settings, instance, flavor, d, reason.as_str()));
                }
            }
            Action::Provision { logical_id } => {
                let sequence = match (logical_id, &settings.props.allocation.logical_ids) {
                    (Some(l), Some(ids)) => ids.iter().position(|x| x == l).unwrap_or(seq),
                    _ => seq,
                };
                provisions.push(provision_one(
                    settings,
                    instance,
                    flavor,
                    logical_id.clone(),
                    sequence as u64,
                ));
            }
        }
    }
    let mut errors = run_bounded(destroys, parallel).await;
    errors.extend(run_bounded(provisions, parallel).await);
    errors
}

/// Runs futures at most `parallel` at a time and returns the messages of those that failed.
pub(crate) async fn run_bounded<T, F>(futures: Vec<F>, parallel: usize) -> Vec<String>
where
    F: std::future::Future<Output = Result<T>>,
{
    let results: Vec<Result<T>> = futures::stream::iter(futures)
        .buffer_unordered(parallel)
        .collect()
        .await;
    results
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect()
}

/// Prepares a spec with the flavor and provisions it.
pub(crate) async fn provision_one(
    settings: &Settings,
    instance: &dyn Instance,
    flavor: &dyn Flavor,
    logical_id: Option<String>,
    sequence: u64,
) -> Result<String> {
    let mut tags = membership(&settings.id);
    tags.insert(CONFIG_HASH_TAG.into(), settings.config_hash.clone());
    if let Some(l) = &logical_id {
        tags.insert(LOGICAL_ID_TAG.into(), l.clone());
    }
    let spec = Spec {
        properties: settings.props.instance.properties.clone(),
        tags: tags.clone(),
        init: String::new(),
        logical_id: logical_id.clone(),
        attachments: Vec::new(),
    };
    let index = Index {
        group: settings.id.clone(),
        sequence,
    };
    let mut spec = flavor
        .prepare(
            &settings.props.flavor.properties,
            spec,
            &settings.props.allocation,
            &index,
        )
        .await
        .map_err(|e| Error::plugin(format!("Flavor.Prepare: {e}")))?;
    // Membership tags are ours: a flavor cannot change them.
    spec.tags.extend(tags);
    spec.logical_id = logical_id;
    let id = instance
        .provision(spec)
        .await
        .map_err(|e| Error::plugin(format!("Instance.Provision: {e}")))?;
    tracing::info!(group = %settings.id, instance = %id, "provisioned instance");
    Ok(id)
}

/// Drains (unless the spec skips it) and destroys one instance. A failing drain is logged; the
/// destroy still happens, as in InfraKit.
pub(crate) async fn destroy_one(
    settings: &Settings,
    instance: &dyn Instance,
    flavor: &dyn Flavor,
    d: &Description,
    reason: &str,
) -> Result<()> {
    if settings.drain_before_destroy() {
        if let Err(e) = flavor.drain(&settings.props.flavor.properties, d).await {
            tracing::warn!(instance = %d.id, error = %e, "drain failed; destroying anyway");
        }
    }
    instance
        .destroy(&d.id, &DestroyContext::reason(reason))
        .await
        .map_err(|e| Error::plugin(format!("Instance.Destroy {}: {e}", d.id)))
}

/// Follows the instance plugin's events and wakes the supervisor on any about this group.
async fn watch_events(
    ctx: Arc<Context>,
    mut settings: watch::Receiver<Arc<Settings>>,
    wake: Arc<Notify>,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let current = settings.borrow_and_update().clone();
        match ctx
            .plugins
            .subscribe(&current.props.instance.plugin, INSTANCE_TOPIC)
            .await
        {
            Ok(stream) => {
                backoff = Duration::from_millis(500);
                // Something may have happened while we were not listening.
                wake.notify_one();
                let mut stream = stream.map(Ok::<_, ()>);
                loop {
                    tokio::select! {
                        event = stream.try_next() => match event {
                            Ok(Some(e)) => {
                                let group = e.data.get("Tags").and_then(|t| t.get(GROUP_TAG)).and_then(|g| g.as_str());
                                if group.is_none() || group == Some(current.id.as_str()) {
                                    tracing::debug!(group = %current.id, event = %e.topic, instance = %e.id, "instance event");
                                    wake.notify_one();
                                }
                            }
                            _ => break,
                        },
                        changed = settings.changed() => {
                            if changed.is_err() { return; }
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::debug!(plugin = %current.props.instance.plugin, error = %e, "no instance events; relying on polling");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    changed = settings.changed() => if changed.is_err() { return },
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
