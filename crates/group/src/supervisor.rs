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

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use infrakit_spi::group::RolloutAction;
use infrakit_spi::{Error, Health, Result};

use crate::context::plugins_of;
pub use crate::context::{Context, ControllerConfig};
use crate::executor::execute;
use crate::follow::watch_events;
use crate::history::History;
use crate::observe::{members, observe};
pub use crate::observe::{membership, PROTECT_TAG};
use crate::planner::{self, Action, Desired, Gate, Member, Target};
use crate::rollout::{self, Phase, Progress, RolloutState, Transition, TOKEN_TAG};
use crate::settings::Settings;
pub use crate::state::decode_record;
use crate::state::GroupState;
use crate::telemetry::kind;
pub use crate::view::Snapshot;
use crate::view::{status, status_message, View};

/// How long to wait before looking again while a change is in progress.
const PROGRESS_RECHECK: Duration = Duration::from_millis(250);
/// Pause between reconciles that keep acting (after the first few, which run back to back).
const ACTED_RECHECK: Duration = Duration::from_millis(50);
/// Longest back-off after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A running control loop for one group.
pub struct Supervisor {
    ctx: Arc<Context>,
    state: Arc<GroupState>,
    tasks: Vec<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts managing a group from its settings and rollout state.
    pub fn start(ctx: Arc<Context>, settings: Settings, rollout: RolloutState) -> Supervisor {
        let (state, rx) = GroupState::new(settings, rollout);
        let control = tokio::spawn(run(ctx.clone(), state.clone(), rx.clone()));
        let events = tokio::spawn(watch_events(ctx.clone(), rx, state.clone()));
        Supervisor {
            ctx,
            state,
            tasks: vec![control, events],
        }
    }

    /// Persists and applies new settings; the loop reconciles against them at once.
    pub async fn commit(&self, settings: Settings) -> Result<()> {
        self.state.commit(&self.ctx, settings).await
    }

    /// Writes the current spec and rollout state (e.g. the first time a group is managed).
    pub async fn save(&self) -> Result<()> {
        self.state.persist(&self.ctx).await
    }

    /// Pauses, resumes or undoes the rollout.
    pub async fn rollout(&self, action: RolloutAction) -> Result<()> {
        self.state.operate(&self.ctx, action).await
    }

    /// The current settings.
    pub fn settings(&self) -> Arc<Settings> {
        self.state.settings()
    }

    /// The last reconcile's view. `converged` is false until a reconcile has run against the
    /// current settings.
    pub fn snapshot(&self) -> Snapshot {
        self.state.snapshot()
    }

    /// Asks for a reconcile now.
    pub fn wake(&self) {
        self.state.wake();
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

async fn run(
    ctx: Arc<Context>,
    state: Arc<GroupState>,
    mut settings: watch::Receiver<Arc<Settings>>,
) {
    let mut history = History::default();
    let mut progress = Progress::new(Instant::now());
    let mut delay = Duration::ZERO;
    let mut failures: u32 = 0;
    let mut acted_in_a_row: u32 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = state.woken() => {}
            changed = settings.changed() => if changed.is_err() { return },
        }
        let current = settings.borrow_and_update().clone();
        if state.take_restart_clock() {
            progress.reset(Instant::now());
        }
        let started = Instant::now();
        let result = reconcile(&ctx, &state, &current, &mut history, &mut progress).await;
        let metrics = &ctx.config.telemetry.metrics;
        metrics.reconciled(&current.id, started.elapsed(), result.is_ok());
        if let Ok((_, view)) = &result {
            view.record(&current.id, metrics);
        }
        match result {
            Ok((outcome, status)) => {
                failures = 0;
                state.record_pass(|snap| {
                    snap.passed(current.clone(), outcome == Outcome::Converged, status)
                });
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
                state.record_pass(|snap| {
                    snap.failed(
                        current.clone(),
                        format!("cannot reconcile: {e} (retrying in {backoff:?})"),
                    )
                });
                delay = backoff;
            }
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

async fn reconcile(
    ctx: &Context,
    state: &GroupState,
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
    let pending = state.retain_pending(
        || -> std::collections::HashSet<&str> {
            observed
                .descriptions
                .iter()
                .filter_map(|d| d.tags.get(TOKEN_TAG))
                .collect()
        },
        |tokens, p| {
            !tokens.contains(p.token.as_str())
                && wall.saturating_sub(p.since_ms) < rollout::PENDING_GRACE.as_millis() as u64
        },
    );
    state.flush(ctx).await;
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

    let gate = state.rollout().gate(settings);
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
    let transition = if state.is_current(settings) {
        rollout::decide(&state.rollout(), settings, done, held, stalled)
    } else {
        Transition::None
    };
    match transition {
        Transition::None => {}
        Transition::Complete => {
            {
                let mut r = state.rollout();
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
            state.persist(ctx).await?;
        }
        Transition::Pause(why) => {
            tracing::warn!(group = %settings.id, reason = %why, "rollout failed; pausing");
            events.group(
                kind::ROLLOUT_FAILED,
                &settings.id,
                None,
                format!("rollout failed, paused: {why}"),
            );
            state.rollout().paused = Some(format!("rollout failed: {why}"));
            state.persist(ctx).await?;
            let st = status(settings, &state.rollout(), members, &plan);
            return Ok((Outcome::Acted, st));
        }
        Transition::Rollback(why) => {
            let previous = state
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
            state
                .change(ctx, Some(previous.clone()), |r| {
                    r.on_commit(settings, &previous);
                    r.phase = Phase::RollingBack;
                    r.reason = format!("rolled back: {why}");
                })
                .await?;
            progress.reset(now);
            let st = status(settings, &state.rollout(), members, &plan);
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
            state,
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
        let phase = state.rollout().phase;
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
            state.rollout().paused = Some(format!("rollout paused: {why}"));
            state.persist(ctx).await?;
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
    let st = status(settings, &state.rollout(), members, &plan);
    Ok((outcome, st))
}
