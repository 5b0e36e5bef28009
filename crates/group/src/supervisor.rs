//! One group's control loop: observe, decide, apply.
//!
//! Each pass observes the group ([`crate::observe`]), hands what it saw to the pure
//! [`crate::decide`], applies the decision (persists the rollout's transition, runs the actions
//! through [`crate::executor`]) and reports. This module only orchestrates: every rule about what
//! to do, and when to look again, is in `decide`.
//!
//! A supervisor reconciles when its timer fires (the poll interval, shorter while a change is in
//! progress), when its settings change, and at once when the instance plugin publishes an event
//! about one of the group's instances. Reconciles of one group never overlap. Nothing is planned
//! until an observation succeeds, so a plugin that is down never makes the controller act on a
//! guess. The spec and rollout progress are persisted before anything acts on them, and
//! provisions are recorded before they start, so a restarted controller resumes without
//! overshooting. Instances that die as soon as they start put the group in crash-loop back-off
//! (see [`crate::history`]).

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use infrakit_spi::group::RolloutAction;
use infrakit_spi::{Error, Flavor, Instance, Result};

use crate::context::plugins_of;
pub use crate::context::{Context, ControllerConfig};
pub(crate) use crate::decide::target;
use crate::decide::{self, decide, settle, Decision, Event, Executed, Input, Outcome, Pace};
use crate::executor::execute;
use crate::follow::{follow_health, watch_events};
use crate::health::HealthClock;
use crate::history::History;
use crate::listing::Listing;
use crate::observe::{members, observe, Observation};
pub use crate::observe::{membership, PROTECT_TAG};
use crate::planner::{Action, Member, Reason};
use crate::pushed::Watcher;
use crate::rollout::{self, Progress, RolloutState, Transition, TOKEN_TAG};
use crate::settings::Settings;
pub use crate::state::decode_record;
use crate::state::GroupState;
pub use crate::view::Snapshot;
use crate::view::{status, View};

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
        let events = tokio::spawn(watch_events(ctx.clone(), rx.clone(), state.clone()));
        let health = tokio::spawn(follow_health(ctx.clone(), rx, state.clone()));
        Supervisor {
            ctx,
            state,
            tasks: vec![control, events, health],
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

    /// How many of `listed` were created by provisions the instance plugin said failed.
    pub fn created_despite_failure(&self, listed: &[infrakit_spi::Description]) -> usize {
        self.state.created_despite_failure(listed)
    }

    /// The instances the last pass observed, and when.
    pub(crate) fn last_observed(&self) -> Option<crate::state::Observed> {
        self.state.last_observed()
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

async fn run(
    ctx: Arc<Context>,
    state: Arc<GroupState>,
    mut settings: watch::Receiver<Arc<Settings>>,
) {
    let mut history = History::default();
    let mut progress = Progress::new(Instant::now());
    let mut pace = Pace::default();
    let mut health = HealthClock::default();
    let mut watcher = Watcher::default();
    let mut listing = Listing::default();
    let mut quiet = None;
    let mut delay = std::time::Duration::ZERO;
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
        let mut memory = Memory {
            history: &mut history,
            progress: &mut progress,
            health: &mut health,
            watcher: &mut watcher,
            listing: &mut listing,
            quiet: &mut quiet,
        };
        let result = reconcile(&ctx, &state, &current, &mut memory).await;
        let metrics = &ctx.config.telemetry.metrics;
        metrics.reconciled(&current.id, started.elapsed(), result.is_ok());
        let poll = ctx.config.poll_interval;
        match result {
            Ok(Passed {
                outcome,
                view,
                seen,
                next_check,
            }) => {
                // A quiet pass leaves the last view as it was.
                if let Some(view) = view {
                    view.record(&current.id, metrics);
                    state.record_pass(|snap| {
                        snap.passed(current.clone(), outcome == Outcome::Converged, view)
                    });
                }
                delay = pace.next(Some((outcome, seen)), poll);
                // A remembered verdict expiring is a reason to look again.
                if let Some(at) = next_check {
                    delay = delay.min(at.saturating_duration_since(Instant::now()));
                }
            }
            Err(e) => {
                delay = pace.next(None, poll);
                tracing::warn!(group = %current.id, error = %e, retry_in = ?delay, "reconcile failed");
                state.record_pass(|snap| {
                    snap.failed(
                        current.clone(),
                        format!("cannot reconcile: {e} (retrying in {delay:?})"),
                    )
                });
            }
        }
    }
}

/// What a supervisor remembers from one pass to the next.
struct Memory<'a> {
    history: &'a mut History,
    progress: &'a mut Progress,
    health: &'a mut HealthClock,
    watcher: &'a mut Watcher,
    listing: &'a mut Listing,
    /// Set by a pass that converged with nothing to do: what it saw.
    quiet: &'a mut Option<Quiet>,
}

/// What a converged pass with nothing to do saw. A later pass that sees exactly the same (the
/// same listing, reused from the observed cache, no verdict asked again, the same settings in
/// force and the same rollout state) would decide the same: it stops there (see
/// [`Quiet::holds`]).
struct Quiet {
    settings: Arc<Settings>,
    listing: std::sync::Weak<Vec<infrakit_spi::Description>>,
    rollout: RolloutState,
    seen: u64,
}

impl Quiet {
    /// Whether a pass against `settings` that observed `observed` sees what this one saw.
    fn holds(&self, state: &GroupState, settings: &Arc<Settings>, observed: &Observation) -> bool {
        observed.judged == 0
            && observed.pushed == 0
            && Arc::ptr_eq(&self.settings, settings)
            && state.is_current(settings)
            && self.listing.ptr_eq(&Arc::downgrade(&observed.descriptions))
            && *state.rollout() == self.rollout
    }
}

/// What a pass that ran reports.
struct Passed {
    outcome: Outcome,
    /// What `DescribeGroup` shows from now on (none: the last view stands).
    view: Option<View>,
    /// A digest of the observation (see [`Observation::digest`]).
    seen: u64,
    /// When a health verdict expires, if one does.
    next_check: Option<Instant>,
}

/// One pass: observe, decide, apply. Every choice is [`decide`]'s; this only gathers its input
/// and carries its decision out.
async fn reconcile(
    ctx: &Context,
    state: &GroupState,
    settings: &Arc<Settings>,
    memory: &mut Memory<'_>,
) -> Result<Passed> {
    let Memory {
        history,
        progress,
        health,
        watcher,
        listing,
        quiet,
    } = memory;
    // Observe.
    let (instance, flavor) = plugins_of(ctx, settings)?;
    let plugins = (instance.as_ref(), flavor.as_ref());
    let observed = observe(
        ctx,
        (settings, &state.watch, &state.health),
        plugins,
        (listing, health, watcher),
    )
    .await?;
    state.observed(observed.descriptions.clone());
    if let Some(q) = quiet
        .as_ref()
        .filter(|q| q.holds(state, settings, &observed))
    {
        state.flush(ctx).await;
        return Ok(Passed {
            outcome: Outcome::Converged,
            view: None,
            seen: q.seen,
            next_check: observed.next_check,
        });
    }
    **quiet = None;
    let now = Instant::now();
    let members = gather(ctx, state, settings, &observed, history, now).await;
    let lost = history.take_lost();
    let rollout = state.rollout().clone();

    // Decide.
    let input = Input {
        settings,
        in_force: state.is_current(settings),
        rollout: &rollout,
        members: &members,
        lost: &lost,
        throttle: history.throttle(settings.desired(), now),
        now,
    };
    let decision = decide(&input, progress, || ctx.fence.check());
    publish(ctx, settings, &decision.events);

    // Apply: the rollout's transition first, persisted before anything acts on it.
    apply_transition(ctx, state, settings, &decision, progress).await?;
    let outcome = if decision.plan.actions.is_empty() {
        decision.outcome
    } else {
        listing.acted();
        act(
            ctx, state, settings, plugins, &decision, &observed, history, now,
        )
        .await?
    };
    let view = status(settings, &state.rollout(), members, &decision.plan);
    let seen = observed.digest();
    let nothing_to_do =
        decision.plan.actions.is_empty() && matches!(decision.transition, Transition::None);
    if outcome == Outcome::Converged && nothing_to_do {
        **quiet = Some(Quiet {
            settings: settings.clone(),
            listing: Arc::downgrade(&observed.descriptions),
            rollout,
            seen,
        });
    }
    Ok(Passed {
        outcome,
        view: Some(view),
        seen,
        next_check: observed.next_check,
    })
}

/// The group's members for this pass: those observed, and the provisions that count although no
/// observation listed them yet. Provisions recorded before a restart that showed up or expired
/// are forgotten (and the record saved).
async fn gather(
    ctx: &Context,
    state: &GroupState,
    settings: &Settings,
    observed: &Observation,
    history: &mut History,
    now: Instant,
) -> Vec<Member> {
    let mut members = members(settings, observed, history, now);
    let pending = state.retain_pending(
        || -> HashSet<&str> {
            observed
                .descriptions
                .iter()
                .filter_map(|d| d.tags.get(TOKEN_TAG))
                .collect()
        },
        rollout::now_ms(),
    );
    state.flush(ctx).await;
    decide::with_in_flight(&mut members, &pending, history.in_flight());
    members
}

/// Persists the rollout transition a decision made against `settings`, and announces it: a
/// rollback also puts the settings it goes back to in force and restarts the progress clock.
/// Nothing happens if the settings were replaced meanwhile.
async fn apply_transition(
    ctx: &Context,
    state: &GroupState,
    settings: &Arc<Settings>,
    decision: &Decision,
    progress: &mut Progress,
) -> Result<()> {
    let transition = &decision.transition;
    match transition {
        Transition::None => return Ok(()),
        Transition::Complete => tracing::info!(group = %settings.id, "rollout complete"),
        Transition::Pause(why) => {
            tracing::warn!(group = %settings.id, reason = %why, "rollout failed; pausing")
        }
        Transition::Rollback { why, .. } => {
            tracing::warn!(group = %settings.id, reason = %why, "rollout failed; rolling back")
        }
    }
    let next = match transition {
        Transition::Rollback { to, .. } => Some((**to).clone()),
        _ => None,
    };
    let rollback = next.is_some();
    let applied = state
        .transition(ctx, settings, next, |r| r.apply(transition, settings))
        .await;
    // A completion or a pause is in force even when it could not be stored: announce it.
    if matches!(applied, Ok(true)) || (applied.is_err() && !rollback) {
        publish(ctx, settings, decision.announce.as_slice());
    }
    if matches!(applied, Ok(true)) && rollback {
        progress.reset(Instant::now());
    }
    applied.map(drop)
}

/// Runs a decision's actions and settles the pass: the outcome, or why it failed.
#[allow(clippy::too_many_arguments)]
async fn act(
    ctx: &Context,
    state: &GroupState,
    settings: &Arc<Settings>,
    (instance, flavor): (&dyn Instance, &dyn Flavor),
    decision: &Decision,
    observed: &Observation,
    history: &mut History,
    now: Instant,
) -> Result<Outcome> {
    let plan = &decision.plan;
    if decision.spends_backoff {
        history.spend_backoff(now);
    }
    for action in &plan.actions {
        if let Action::Destroy { id, reason } = action {
            history.destroyed(id);
            if *reason == Reason::Unhealthy {
                history.replacing(now);
            }
        }
    }
    let report = execute(
        ctx,
        state,
        settings,
        instance,
        flavor,
        plan,
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
    publish(ctx, settings, decision.after.as_slice());
    let settled = settle(&Executed {
        drain_failure: report.drain_failure.as_deref(),
        errors: &report.errors,
    });
    publish(ctx, settings, &settled.events);
    if let Some(pause) = settled.pause {
        state.pause(ctx, pause).await?;
    }
    settled.outcome.map_err(Error::plugin)
}

/// Publishes a pass's events for `settings`' group.
fn publish(ctx: &Context, settings: &Settings, events: &[Event]) {
    for e in events {
        ctx.config.telemetry.events.group(
            e.kind,
            &settings.id,
            e.instance.as_deref(),
            e.message.clone(),
        );
    }
}
