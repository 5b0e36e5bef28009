//! One group's control loop: observe, plan, execute.
//!
//! A supervisor reconciles when its timer fires (the poll interval, shorter while a change is in
//! progress), when its settings change, and at once when the instance plugin publishes an event
//! about one of the group's instances. Reconciles of one group never overlap. Nothing is planned
//! until an observation succeeds, so a plugin that is down never makes the controller act on a
//! guess. The spec and rollout progress are persisted before anything acts on them, and
//! provisions are recorded before they start, so a restarted controller resumes without
//! overshooting. Instances that die as soon as they start put the group in crash-loop back-off
//! (see [`crate::history`]).

use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use infrakit_rpc::Plugins;
use infrakit_spi::event::INSTANCE_TOPIC;
use infrakit_spi::group::{ConfigState, GroupStatus, InstanceStatus, RolloutAction, RolloutStatus};
use infrakit_spi::instance::GROUP_TAG;
use infrakit_spi::{Description, Error, Flavor, Health, Instance, Result, Tags};
use infrakit_store::Store;

use crate::executor::execute;
use crate::fence::Fence;
use crate::history::History;
use crate::instrumented::{TimedFlavor, TimedInstance};
use crate::planner::{self, Action, Desired, Gate, Member, Plan, Target};
use crate::rollout::{self, Phase, Progress, RolloutState, Transition, TOKEN_TAG};
use crate::settings::Settings;
use crate::telemetry::{kind, Telemetry};

/// Tag that keeps an instance from being chosen by scale-in.
pub const PROTECT_TAG: &str = "infrakit.protect";

/// How long to wait before looking again while a change is in progress.
const PROGRESS_RECHECK: Duration = Duration::from_millis(250);
/// Pause between reconciles that keep acting (after the first few, which run back to back).
const ACTED_RECHECK: Duration = Duration::from_millis(50);
/// Longest back-off after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Knobs shared by every supervisor.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Time between reconciles of a converged group.
    pub poll_interval: Duration,
    /// Provisions (and, separately, destroys and health checks) run at most this many at a time.
    pub max_parallel: usize,
    /// A `Flavor.Healthy` call slower than this counts as Unknown.
    pub health_timeout: Duration,
    /// Where events and metrics go. Share one to see several controllers' (e.g. successive
    /// leadership terms) in one place.
    pub telemetry: Arc<Telemetry>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            poll_interval: Duration::from_secs(1),
            max_parallel: 64,
            health_timeout: Duration::from_secs(5),
            telemetry: Telemetry::new(),
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
    /// Where specs and rollout progress are kept, if anywhere.
    pub store: Option<Arc<dyn Store>>,
    /// Checked before every provision, drain and destroy.
    pub fence: Arc<dyn Fence>,
}

impl Context {
    /// Fails when this controller may not act now.
    pub(crate) fn may_act(&self) -> Result<()> {
        self.fence
            .check()
            .map_err(|why| Error::plugin(format!("not acting: {why}")))
    }
}

/// The last reconcile's view of a group, as stored between reconciles.
#[derive(Debug, Clone, Default)]
struct Stored {
    view: Arc<View>,
    /// Replaces the view's message (e.g. why the last reconcile failed).
    message: Option<String>,
    converged: bool,
    observed: bool,
    settings: Option<Arc<Settings>>,
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

/// State shared by a supervisor's handle and its loop.
pub(crate) struct Shared {
    id: String,
    settings: watch::Sender<Arc<Settings>>,
    rollout: Mutex<RolloutState>,
    snapshot: RwLock<Stored>,
    wake: Notify,
    restart_clock: AtomicBool,
    /// Set when the stored record lists provisions that are no longer pending (they completed,
    /// showed up, or expired): saving is retried until it succeeds, or else a controller taking
    /// over would count them as still in flight and not replace those that died meanwhile.
    unsaved: AtomicBool,
    /// Serialises writes of the record with changes of the settings in force, so that every
    /// write holds the settings in force: a pass that started before a commit must not store
    /// the spec the commit replaced (a restart would then bring the old spec back).
    writes: tokio::sync::Mutex<()>,
}

impl Shared {
    pub(crate) fn rollout(&self) -> std::sync::MutexGuard<'_, RolloutState> {
        self.rollout.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, settings: &Settings, rollout: &RolloutState) -> Value {
        json!({"Spec": settings.spec, "Rollout": rollout})
    }

    /// Persists the settings in force with the current rollout state.
    pub(crate) async fn persist(&self, ctx: &Context) -> Result<()> {
        let _writing = self.writes.lock().await;
        let settings = self.settings.borrow().clone();
        self.write(ctx, &settings).await
    }

    /// Whether `settings` are still the ones in force (a pass may outlive them).
    pub(crate) fn is_current(&self, settings: &Arc<Settings>) -> bool {
        Arc::ptr_eq(&self.settings.borrow(), settings)
    }

    /// Writes `settings` with the current rollout state. Callers hold `writes`.
    async fn write(&self, ctx: &Context, settings: &Settings) -> Result<()> {
        let Some(store) = &ctx.store else {
            return Ok(());
        };
        let unsaved = self.unsaved.swap(false, AtomicOrdering::SeqCst);
        let record = self.record(settings, &self.rollout());
        let saved = store.put(&self.id, &record).await;
        if saved.is_err() && unsaved {
            self.unsaved.store(true, AtomicOrdering::SeqCst);
        }
        saved.map_err(|e| Error::plugin(format!("cannot save the state of group {}: {e}", self.id)))
    }

    /// Changes the rollout state with `change` and stores it with `next` settings (or the ones in
    /// force), putting `next` in force, as one step no other write can come between; on a failed
    /// write the rollout state is put back and nothing changes.
    pub(crate) async fn change(
        &self,
        ctx: &Context,
        next: Option<Settings>,
        change: impl FnOnce(&mut RolloutState),
    ) -> Result<()> {
        let _writing = self.writes.lock().await;
        let before = self.rollout().clone();
        change(&mut self.rollout());
        let written = match &next {
            Some(settings) => self.write(ctx, settings).await,
            None => {
                let settings = self.settings.borrow().clone();
                self.write(ctx, &settings).await
            }
        };
        if let Err(e) = written {
            *self.rollout() = before;
            return Err(e);
        }
        if let Some(settings) = next {
            self.settings.send_replace(Arc::new(settings));
        }
        Ok(())
    }

    /// Notes that the stored record lists provisions that are no longer pending.
    pub(crate) fn mark_unsaved(&self) {
        self.unsaved.store(true, AtomicOrdering::SeqCst);
    }
}

/// The record stored for a group.
pub fn decode_record(value: &Value) -> Result<(infrakit_spi::GroupSpec, RolloutState)> {
    let spec = infrakit_spi::error::decode_at("Spec", &value["Spec"])?;
    let rollout = match value.get("Rollout") {
        Some(r) if !r.is_null() => infrakit_spi::error::decode_at("Rollout", r)?,
        _ => RolloutState::default(),
    };
    Ok((spec, rollout))
}

/// A running control loop for one group.
pub struct Supervisor {
    ctx: Arc<Context>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts managing a group from its settings and rollout state.
    pub fn start(ctx: Arc<Context>, settings: Settings, rollout: RolloutState) -> Supervisor {
        let id = settings.id.clone();
        let (tx, rx) = watch::channel(Arc::new(settings));
        let shared = Arc::new(Shared {
            id,
            settings: tx,
            rollout: Mutex::new(rollout),
            snapshot: RwLock::new(Stored::default()),
            wake: Notify::new(),
            restart_clock: AtomicBool::new(false),
            unsaved: AtomicBool::new(false),
            writes: tokio::sync::Mutex::new(()),
        });
        let control = tokio::spawn(run(ctx.clone(), shared.clone(), rx.clone()));
        let events = tokio::spawn(watch_events(ctx.clone(), rx, shared.clone()));
        Supervisor {
            ctx,
            shared,
            tasks: vec![control, events],
        }
    }

    /// Persists and applies new settings; the loop reconciles against them at once.
    pub async fn commit(&self, settings: Settings) -> Result<()> {
        let old = self.settings();
        self.shared
            .change(&self.ctx, Some(settings.clone()), |r| {
                r.on_commit(&old, &settings)
            })
            .await?;
        self.shared
            .restart_clock
            .store(true, AtomicOrdering::SeqCst);
        Ok(())
    }

    /// Writes the current spec and rollout state (e.g. the first time a group is managed).
    pub async fn save(&self) -> Result<()> {
        self.shared.persist(&self.ctx).await
    }

    /// Pauses, resumes or undoes the rollout.
    pub async fn rollout(&self, action: RolloutAction) -> Result<()> {
        let settings = self.settings();
        let next = match action {
            RolloutAction::Undo => {
                let Some(previous) = self.shared.rollout().previous.clone() else {
                    return Err(Error::plugin(format!(
                        "group {} has no previous configuration to go back to",
                        self.shared.id
                    )));
                };
                Some(Settings::parse(&previous)?)
            }
            RolloutAction::Pause | RolloutAction::Resume => None,
        };
        let undo_to = next.clone();
        self.shared
            .change(&self.ctx, next, |r| match undo_to {
                Some(previous) => {
                    r.on_commit(&settings, &previous);
                    r.reason = "undone by an operator".into();
                }
                None if action == RolloutAction::Pause => {
                    r.paused = Some("paused by an operator".into())
                }
                None => {
                    r.paused = None;
                    r.partition_released = true;
                }
            })
            .await?;
        self.shared
            .restart_clock
            .store(true, AtomicOrdering::SeqCst);
        if action != RolloutAction::Undo {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// The current settings.
    pub fn settings(&self) -> Arc<Settings> {
        self.shared.settings.borrow().clone()
    }

    /// The last reconcile's view. `converged` is false until a reconcile has run against the
    /// current settings.
    pub fn snapshot(&self) -> Snapshot {
        let stored = self
            .shared
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut status = stored.view.status();
        if let Some(message) = stored.message {
            status.message = message;
        }
        let mut snap = Snapshot {
            status,
            converged: stored.converged,
            observed: stored.observed,
            settings: stored.settings,
        };
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
        self.shared.wake.notify_one();
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
    /// Actions ran (or the spec changed); look again at once.
    Acted,
    /// Nothing to do now, but not converged (e.g. waiting for health).
    Waiting,
    /// Nothing to do.
    Converged,
}

async fn run(ctx: Arc<Context>, shared: Arc<Shared>, mut settings: watch::Receiver<Arc<Settings>>) {
    let mut history = History::default();
    let mut progress = Progress::new(Instant::now());
    let mut delay = Duration::ZERO;
    let mut failures: u32 = 0;
    let mut acted_in_a_row: u32 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.wake.notified() => {}
            changed = settings.changed() => if changed.is_err() { return },
        }
        let current = settings.borrow_and_update().clone();
        if shared.restart_clock.swap(false, AtomicOrdering::SeqCst) {
            progress.reset(Instant::now());
        }
        let started = Instant::now();
        let result = reconcile(&ctx, &shared, &current, &mut history, &mut progress).await;
        let metrics = &ctx.config.telemetry.metrics;
        metrics.reconciled(&current.id, started.elapsed(), result.is_ok());
        if let Ok((_, view)) = &result {
            view.record(&current.id, metrics);
        }
        let mut snap = shared.snapshot.write().unwrap_or_else(|p| p.into_inner());
        snap.settings = Some(current.clone());
        match result {
            Ok((outcome, status)) => {
                failures = 0;
                snap.converged = outcome == Outcome::Converged;
                snap.observed = true;
                snap.view = Arc::new(status);
                snap.message = None;
                acted_in_a_row = if outcome == Outcome::Acted {
                    acted_in_a_row + 1
                } else {
                    0
                };
                delay = match outcome {
                    // Look again at once after acting; but a plugin that keeps accepting work
                    // without it ever showing up must not turn this into a busy loop.
                    Outcome::Acted if acted_in_a_row < 3 => Duration::ZERO,
                    Outcome::Acted => ACTED_RECHECK,
                    Outcome::Waiting => PROGRESS_RECHECK.min(ctx.config.poll_interval),
                    Outcome::Converged => ctx.config.poll_interval,
                };
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let backoff = Duration::from_millis(250u64.saturating_mul(1 << failures.min(10)))
                    .min(MAX_BACKOFF)
                    .max(ctx.config.poll_interval.min(MAX_BACKOFF));
                tracing::warn!(group = %current.id, error = %e, retry_in = ?backoff, "reconcile failed");
                snap.converged = false;
                snap.message = Some(format!("cannot reconcile: {e} (retrying in {backoff:?})"));
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
    let metrics = &ctx.config.telemetry.metrics;
    let (instance, flavor) = (
        &settings.props.instance.plugin,
        &settings.props.flavor.plugin,
    );
    Ok((
        Arc::new(TimedInstance::new(
            ctx.plugins.instance(instance)?,
            instance,
            metrics,
        )),
        Arc::new(TimedFlavor::new(
            ctx.plugins.flavor(flavor)?,
            flavor,
            metrics,
        )),
    ))
}

/// Tags that select the members of group `id`.
pub fn membership(id: &str) -> Tags {
    Tags::from([(GROUP_TAG.to_string(), id.to_string())])
}

/// One observation: the group's instances with their health.
///
/// Most health checks answer at once (no probe, or a cached result): those are taken as they
/// come, without a timer or a place in the bounded stream. Once `max_parallel` checks have had to
/// wait, the rest go through a stream that runs at most `max_parallel` at a time, each with the
/// health timeout, so probes never run unbounded.
pub(crate) async fn observe(
    ctx: &Context,
    settings: &Settings,
    instance: &dyn Instance,
    flavor: &dyn Flavor,
) -> Result<Observation> {
    let descriptions = instance
        .describe_instances(&membership(&settings.id), true)
        .await?;
    let flavor_props = &settings.props.flavor.properties;
    let timeout = ctx.config.health_timeout;
    let max_parallel = ctx.config.max_parallel.max(1);
    let n = descriptions.len();

    let mut health = vec![Verdict::default(); n];
    let timing = Timing {
        metrics: &ctx.config.telemetry.metrics,
        plugin: &settings.props.flavor.plugin,
        timeout,
    };
    check_health(
        &descriptions,
        &mut health,
        flavor,
        flavor_props,
        timing,
        max_parallel,
    )
    .await;
    Ok(Observation {
        descriptions,
        verdicts: health,
    })
}

/// What one observation found: the group's instances, and the flavor's verdict on each, in
/// the same order (kept apart so the descriptions are never copied).
pub(crate) struct Observation {
    pub descriptions: Vec<Description>,
    pub verdicts: Vec<Verdict>,
}

impl Observation {
    /// Each instance's ID and health, for [`History::observe`].
    pub fn health(&self) -> impl Iterator<Item = (&str, Health)> {
        self.descriptions
            .iter()
            .zip(&self.verdicts)
            .map(|(d, v)| (d.id.as_str(), v.health))
    }
}

/// A health check's outcome.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Verdict {
    pub health: Health,
    /// Whether the check answered (false: it failed or timed out, and the health is Unknown
    /// for want of an answer).
    pub answered: bool,
}

impl Default for Verdict {
    fn default() -> Self {
        Verdict {
            health: Health::Unknown,
            answered: false,
        }
    }
}

/// A health check in progress.
type Check<'a> = futures::future::BoxFuture<'a, Result<Health>>;

/// How health checks that have to wait are bounded and measured.
#[derive(Clone, Copy)]
struct Timing<'a> {
    metrics: &'a crate::telemetry::Metrics,
    plugin: &'a str,
    timeout: Duration,
}

/// Fills `health` with the flavor's verdict on each of `descriptions` (see [`observe`]).
async fn check_health<'a>(
    descriptions: &'a [Description],
    health: &mut [Verdict],
    flavor: &'a dyn Flavor,
    flavor_props: &'a Value,
    timing: Timing<'_>,
    max_parallel: usize,
) {
    let n = descriptions.len();
    let mut waiting: Vec<(usize, Check<'a>)> = Vec::new();
    let mut next = 0;
    while next < n && waiting.len() < max_parallel {
        let d = &descriptions[next];
        let mut check = flavor.healthy(flavor_props, d);
        match futures::FutureExt::now_or_never(&mut check) {
            Some(answer) => health[next] = settle(d, Ok(answer)),
            None => waiting.push((next, check)),
        }
        next += 1;
    }
    if waiting.is_empty() && next == n {
        return;
    }
    let calls = timing.metrics.call(timing.plugin, "Flavor.Healthy");
    let timeout = timing.timeout;
    let calls = &calls;
    let mut checks = Vec::with_capacity(waiting.len() + n - next);
    for (i, check) in waiting {
        checks.push(finish(i, &descriptions[i], check, timeout, calls));
    }
    for (i, d) in descriptions.iter().enumerate().skip(next) {
        checks.push(finish(
            i,
            d,
            flavor.healthy(flavor_props, d),
            timeout,
            calls,
        ));
    }
    let settled: Vec<(usize, Verdict)> = futures::stream::iter(checks)
        .buffer_unordered(max_parallel)
        .collect()
        .await;
    for (i, h) in settled {
        health[i] = h;
    }
}

/// Waits for a health check that did not answer at once, at most `timeout`.
async fn finish<'a>(
    i: usize,
    d: &'a Description,
    check: Check<'a>,
    timeout: Duration,
    calls: &crate::telemetry::CallMetrics,
) -> (usize, Verdict) {
    let start = Instant::now();
    let answer = tokio::time::timeout(timeout, check).await;
    calls.record(start.elapsed(), matches!(answer, Ok(Ok(_))));
    (i, settle(d, answer))
}

/// The health a check's answer (or its timeout) stands for.
fn settle(
    d: &Description,
    answer: std::result::Result<Result<Health>, tokio::time::error::Elapsed>,
) -> Verdict {
    match answer {
        Ok(Ok(health)) => Verdict {
            health,
            answered: true,
        },
        Ok(Err(e)) => {
            tracing::debug!(instance = %d.id, error = %e, "health check failed; counting as unknown");
            Verdict::default()
        }
        Err(_) => {
            tracing::debug!(instance = %d.id, "health check timed out; counting as unknown");
            Verdict::default()
        }
    }
}

/// The planner's target for `settings` under `gate`.
pub(crate) fn target(settings: &Settings, gate: Gate) -> Target {
    Target {
        desired: match &settings.props.allocation.logical_ids {
            Some(ids) if !ids.is_empty() => Desired::LogicalIds(ids.clone()),
            _ => Desired::Size(settings.desired()),
        },
        max_surge: settings.max_surge(),
        max_unavailable: settings.max_unavailable(),
        max_unhealthy: settings.max_unhealthy(),
        unhealthy_after: settings.unhealthy_after(),
        startup_grace: settings.startup_grace(),
        min_healthy_time: settings.min_healthy_time(),
        min_healthy_count: settings.min_healthy_count(),
        delete_policy: settings.scaling.delete_policy,
        ordering: settings.scaling.ordering,
        gate,
    }
}

/// Members as the planner sees them: `observed` recorded in `history` at `now`, with the
/// timings that gives each.
pub(crate) fn members(
    settings: &Settings,
    observed: &Observation,
    history: &mut History,
    now: Instant,
) -> Vec<Member> {
    let mut members: Vec<Member> = observed
        .descriptions
        .iter()
        .zip(&observed.verdicts)
        .map(|(d, v)| Member {
            id: d.id.clone(),
            logical_id: d.logical_id().map(str::to_string),
            current: d.config_hash() == Some(settings.config_hash.as_str()),
            health: v.health,
            protected: d.tags.get(PROTECT_TAG) == Some("true"),
            unanswered: !v.answered,
            created: d.created,
            ..Member::default()
        })
        .collect();
    let mut next = members.iter_mut();
    history.observe(observed.health(), now, |t| {
        if let Some(m) = next.next() {
            m.age = t.age;
            m.healthy_for = t.healthy_for;
            m.healthy_streak = t.streak;
            m.unhealthy_for = t.unhealthy_for;
            m.ever_healthy = t.ever_healthy;
        }
    });
    members
}

async fn reconcile(
    ctx: &Context,
    shared: &Shared,
    settings: &Arc<Settings>,
    history: &mut History,
    progress: &mut Progress,
) -> Result<(Outcome, View)> {
    let (instance, flavor) = plugins_of(ctx, settings)?;
    let observed = observe(ctx, settings, instance.as_ref(), flavor.as_ref()).await?;
    let now = Instant::now();
    let mut members = members(settings, &observed, history, now);
    let events = &ctx.config.telemetry.events;
    for id in history.take_lost() {
        events.group(
            kind::LOST,
            &settings.id,
            Some(&id),
            format!("instance {id} disappeared"),
        );
    }
    for m in members
        .iter()
        .filter(|m| m.health == Health::Unhealthy && m.unhealthy_for.is_zero())
    {
        events.group(
            kind::UNHEALTHY,
            &settings.id,
            Some(&m.id),
            format!("instance {} is unhealthy", m.id),
        );
    }

    // Provisions recorded before a restart that have not shown up yet still count.
    let wall = rollout::now_ms();
    let (pending, pending_changed) = {
        let mut r = shared.rollout();
        let before = r.pending.len();
        let tokens: std::collections::HashSet<&str> = if before == 0 {
            Default::default()
        } else {
            observed
                .descriptions
                .iter()
                .filter_map(|d| d.tags.get(TOKEN_TAG))
                .collect()
        };
        r.pending.retain(|p| {
            !tokens.contains(p.token.as_str())
                && wall.saturating_sub(p.since_ms) < rollout::PENDING_GRACE.as_millis() as u64
        });
        (r.pending.clone(), r.pending.len() != before)
    };
    if pending_changed {
        shared.mark_unsaved();
    }
    if shared.unsaved.load(AtomicOrdering::SeqCst) {
        if let Err(e) = shared.persist(ctx).await {
            tracing::debug!(group = %settings.id, error = %e, "cannot save the pending provisions; will retry");
        }
    }
    for p in &pending {
        members.push(Member {
            id: format!("pending:{}", p.token),
            logical_id: p.logical_id.clone(),
            current: true,
            pending: true,
            ..Default::default()
        });
    }

    // Provisions that returned but do not show up yet (lagging listings) count too.
    for (id, logical_id) in history.in_flight() {
        members.push(Member {
            id: id.to_string(),
            logical_id: logical_id.map(str::to_string),
            current: true,
            pending: true,
            ..Default::default()
        });
    }

    let gate = shared.rollout().gate(settings);
    let target = target(settings, gate);
    let mut plan = planner::plan(&target, &members);

    // The rollout's own bookkeeping: completion, and the progress deadline.
    let n = target.desired.count();
    let current_count = members.iter().filter(|m| m.current && !m.pending).count();
    let updated = members
        .iter()
        .filter(|m| m.current && m.available(&target))
        .count();
    let old = members.iter().filter(|m| !m.current).count();
    let stalled = progress.observe(updated, old, now);
    let held = matches!(gate, Gate::Partition(p) if current_count >= p.min(n));
    let done = old == 0 && updated >= n && plan.actions.is_empty();
    // A pass that began before a commit decides nothing about the rollout: the next pass
    // judges the settings now in force.
    let transition = if shared.is_current(settings) {
        rollout::decide(&shared.rollout(), settings, done, held, stalled)
    } else {
        Transition::None
    };
    match transition {
        Transition::None => {}
        Transition::Complete => {
            {
                let mut r = shared.rollout();
                r.phase = if r.phase == Phase::RollingBack {
                    Phase::RolledBack
                } else {
                    Phase::Complete
                };
            }
            tracing::info!(group = %settings.id, "rollout complete");
            events.group(
                kind::ROLLOUT_COMPLETE,
                &settings.id,
                None,
                format!(
                    "rollout complete: {n} instance(s) on {}",
                    settings.config_hash
                ),
            );
            shared.persist(ctx).await?;
        }
        Transition::Pause(why) => {
            tracing::warn!(group = %settings.id, reason = %why, "rollout failed; pausing");
            events.group(
                kind::ROLLOUT_FAILED,
                &settings.id,
                None,
                format!("rollout failed, paused: {why}"),
            );
            shared.rollout().paused = Some(format!("rollout failed: {why}"));
            shared.persist(ctx).await?;
            let st = status(settings, &shared.rollout(), members, &plan);
            return Ok((Outcome::Acted, st));
        }
        Transition::Rollback(why) => {
            let previous = shared
                .rollout()
                .previous
                .clone()
                .expect("decide checks for a previous spec");
            let previous = Settings::parse(&previous)?;
            tracing::warn!(group = %settings.id, reason = %why, "rollout failed; rolling back");
            events.group(
                kind::ROLLED_BACK,
                &settings.id,
                None,
                format!("rollout failed, rolling back: {why}"),
            );
            shared
                .change(ctx, Some(previous.clone()), |r| {
                    r.on_commit(settings, &previous);
                    r.phase = Phase::RollingBack;
                    r.reason = format!("rolled back: {why}");
                })
                .await?;
            progress.reset(now);
            let st = status(settings, &shared.rollout(), members, &plan);
            return Ok((Outcome::Acted, st));
        }
    }

    // Crash-loop protection: hold back provisions while new instances keep dying young.
    let wanted = plan.provisions();
    let (allowed, why) = history.allow_provisions(wanted, n, now);
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

    // A controller that may not act now (its lease is not known valid) waits, and tries again
    // soon: this is not a failure to back off from.
    let fenced = if plan.actions.is_empty() {
        None
    } else {
        ctx.may_act().err()
    };
    let outcome = if let Some(why) = fenced {
        plan.actions.clear();
        plan.waiting = Some(why.to_string());
        Outcome::Waiting
    } else if !plan.actions.is_empty() {
        for action in &plan.actions {
            if let Action::Destroy { id, reason } = action {
                history.destroyed(id);
                if *reason == planner::Reason::Unhealthy {
                    history.replacing(now);
                }
            }
        }
        let report = execute(
            ctx,
            shared,
            settings,
            instance.as_ref(),
            flavor.as_ref(),
            &plan,
            &observed.descriptions,
        )
        .await?;
        let done = Instant::now();
        for (id, logical_id) in &report.provisioned {
            history.provisioned(id, logical_id.clone(), done);
            if let Some(took) = history.healed(done) {
                ctx.config.telemetry.metrics.healed(&settings.id, took);
            }
        }
        let phase = shared.rollout().phase;
        if matches!(phase, Phase::Progressing | Phase::RollingBack) && old > 0 {
            events.group(
                kind::ROLLOUT_STEP,
                &settings.id,
                None,
                format!(
                    "rollout: {updated} of {n} updated, {old} old; {}",
                    status_message(&plan)
                ),
            );
        }
        if let Some(why) = &report.drain_failure {
            events.group(
                kind::ROLLOUT_PAUSED,
                &settings.id,
                None,
                format!("rollout paused: {why}"),
            );
            shared.rollout().paused = Some(format!("rollout paused: {why}"));
            shared.persist(ctx).await?;
        }
        if !report.errors.is_empty() {
            return Err(Error::plugin(format!(
                "{} action(s) failed: {}",
                report.errors.len(),
                report.errors.join("; ")
            )));
        }
        if report.drain_failure.is_some() {
            Outcome::Waiting
        } else {
            Outcome::Acted
        }
    } else if plan.converged() {
        let unhealthy = members
            .iter()
            .filter(|m| m.health != Health::Healthy)
            .count();
        if unhealthy > 0 {
            plan.waiting = Some(format!("{unhealthy} instance(s) not healthy"));
            Outcome::Waiting
        } else {
            Outcome::Converged
        }
    } else {
        Outcome::Waiting
    };
    let st = status(settings, &shared.rollout(), members, &plan);
    Ok((outcome, st))
}

/// What a reconcile saw, kept for `DescribeGroup` until the next one. The status with its
/// per-instance entries is only built when someone asks for it.
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    desired: usize,
    config_hash: String,
    instances: Vec<Listed>,
    message: String,
    rollout: Option<RolloutStatus>,
}

/// One instance in a [`View`]: what the status reports of it and no more (a view of every
/// group is kept between passes, and overlaps the next pass's members while it runs).
#[derive(Debug, Clone)]
struct Listed {
    id: Box<str>,
    logical_id: Option<Box<str>>,
    age_seconds: u64,
    health: Health,
    current: bool,
}

/// An instance's age as reported: since its creation where the plugin knows it (so a restarted
/// controller does not make old instances look new), else since the controller first saw it.
fn displayed_age(m: &Member) -> Duration {
    m.created
        .and_then(|c| std::time::SystemTime::now().duration_since(c).ok())
        .map_or(m.age, |real| real.max(m.age))
}

impl From<Member> for Listed {
    fn from(m: Member) -> Listed {
        let age = displayed_age(&m);
        Listed {
            // The IDs were cloned to their exact length: no copy here.
            id: m.id.into_boxed_str(),
            logical_id: m.logical_id.map(String::into_boxed_str),
            age_seconds: age.as_secs(),
            health: m.health,
            current: m.current,
        }
    }
}

impl View {
    /// Sets the group's gauges.
    fn record(&self, group: &str, metrics: &crate::telemetry::Metrics) {
        metrics.group_seen(group, self.desired, self.instances.len(), self.healthy());
        match &self.rollout {
            Some(r) => metrics.rollout(group, r.updated, r.total),
            None => metrics.rollout(group, 0, 0),
        }
    }

    /// The extended status `DescribeGroup` reports.
    fn status(&self) -> GroupStatus {
        GroupStatus {
            desired: self.desired,
            actual: self.instances.len(),
            healthy: self.healthy(),
            config_hash: self.config_hash.clone(),
            message: self.message.clone(),
            instances: self
                .instances
                .iter()
                .map(|m| InstanceStatus {
                    id: m.id.to_string(),
                    logical_id: m.logical_id.as_deref().map(str::to_string),
                    config: if m.current {
                        ConfigState::Current
                    } else {
                        ConfigState::Old
                    },
                    health: m.health,
                    age_seconds: m.age_seconds,
                })
                .collect(),
            rollout: self.rollout.clone(),
        }
    }

    fn healthy(&self) -> usize {
        self.instances
            .iter()
            .filter(|m| m.health == Health::Healthy)
            .count()
    }
}

/// What a plan with actions is doing, in words.
fn status_message(plan: &Plan) -> String {
    format!(
        "provisioning {}, destroying {}",
        plan.provisions(),
        plan.destroyed().count()
    )
}

fn status(settings: &Settings, rollout: &RolloutState, members: Vec<Member>, plan: &Plan) -> View {
    let message = if !plan.actions.is_empty() {
        status_message(plan)
    } else {
        plan.waiting
            .clone()
            .or_else(|| rollout.paused.clone())
            .unwrap_or_default()
    };
    let updated = members.iter().filter(|m| !m.pending && m.current).count();
    View {
        desired: settings.desired(),
        config_hash: settings.config_hash.clone(),
        rollout: rollout.status(updated, settings.desired()),
        // Only real instances: provisions not seen yet are not reported.
        instances: members
            .into_iter()
            .filter(|m| !m.pending)
            .map(Listed::from)
            .collect(),
        message,
    }
}

/// Follows the instance plugin's events and wakes the supervisor on any about this group.
async fn watch_events(
    ctx: Arc<Context>,
    mut settings: watch::Receiver<Arc<Settings>>,
    shared: Arc<Shared>,
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
                shared.wake.notify_one();
                let mut stream = stream.map(Ok::<_, ()>);
                loop {
                    tokio::select! {
                        event = stream.try_next() => match event {
                            Ok(Some(e)) => {
                                let group = e.data.get("Tags").and_then(|t| t.get(GROUP_TAG)).and_then(|g| g.as_str());
                                if group.is_none() || group == Some(current.id.as_str()) {
                                    tracing::debug!(group = %current.id, event = %e.topic, instance = %e.id, "instance event");
                                    shared.wake.notify_one();
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
