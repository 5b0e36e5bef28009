//! The controller's decisions: what one pass does with what it observed, as pure functions.
//!
//! A pass (see [`crate::supervisor`]) observes, calls [`decide`], applies the [`Decision`]
//! (persists the rollout's transition, runs the actions), then calls [`settle`] with what the
//! executor reported; [`Pace`] chooses when the next pass runs. Nothing here does I/O or reads
//! a clock: the time, the group's history and the fence come in as arguments, so every rule is
//! tested on its own.
//!
//! The rules, in the order they apply:
//! 1. provisions recorded before a restart ([`Pending`]) and provisions that returned but are not
//!    listed yet count as members, so a lagging listing never causes duplicates
//!    ([`with_in_flight`]);
//! 2. the planner decides the actions for the rollout's gate;
//! 3. the rollout moves on ([`rollout::decide`]): it completes, or past its deadline it pauses or
//!    rolls back to the spec it carries; a pass that began before a commit decides nothing about
//!    the rollout, and a pause or rollback acts on nothing else in that pass;
//! 4. crash-loop back-off trims the plan's provisions ([`Throttle`]);
//! 5. the fence is asked only when actions remain; a controller that may not act waits;
//! 6. a plan with nothing to do whose members are not all healthy is waiting, not converged.

use std::time::Duration;

use tokio::time::Instant;

use infrakit_spi::group::Pause;
use infrakit_spi::Health;

use crate::history::Throttle;
use crate::planner::{self, Action, Desired, Gate, Member, Plan, Target, Wait};
use crate::rollout::{self, Pending, Phase, Progress, RolloutState, Transition};
use crate::settings::Settings;
use crate::telemetry::kind;

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Actions ran (or the spec changed); look again soon.
    Acted,
    /// Nothing to do now, but not converged (e.g. waiting for health).
    Waiting,
    /// Nothing to do.
    Converged,
}

/// A lifecycle event to publish under `/group/<kind>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    /// One of [`crate::telemetry::kind`].
    pub kind: &'static str,
    /// The instance it is about, if one.
    pub instance: Option<String>,
    /// What happened, in words.
    pub message: String,
}

impl Event {
    fn group(kind: &'static str, message: String) -> Event {
        Event {
            kind,
            instance: None,
            message,
        }
    }

    fn instance(kind: &'static str, id: &str, message: String) -> Event {
        Event {
            kind,
            instance: Some(id.to_string()),
            message,
        }
    }
}

/// What a pass saw and remembers, as [`decide`] needs it.
pub(crate) struct Input<'a> {
    /// The settings the pass runs against.
    pub settings: &'a Settings,
    /// False when a commit replaced `settings` after the pass began.
    pub in_force: bool,
    /// The rollout's state (a copy: [`decide`] changes nothing, it says what to change).
    pub rollout: &'a RolloutState,
    /// The group's members: observed, plus provisions in flight ([`with_in_flight`]).
    pub members: &'a [Member],
    /// Instances that disappeared without the controller destroying them.
    pub lost: &'a [String],
    /// What crash-loop back-off allows now.
    pub throttle: Throttle,
    /// Now, on the controller's monotonic clock.
    pub now: Instant,
}

/// What a pass must do.
#[derive(Debug)]
pub(crate) struct Decision {
    /// Events to publish now.
    pub events: Vec<Event>,
    /// The rollout's transition, to persist before anything acts.
    pub transition: Transition,
    /// The event announcing the transition, to publish once it is stored.
    pub announce: Option<Event>,
    /// The actions to run (none when the pass only changes the rollout) and what the group
    /// waits for.
    pub plan: Plan,
    /// The outcome, should the actions succeed.
    pub outcome: Outcome,
    /// A provision goes ahead in crash-loop back-off: the back-off must be spent.
    pub spends_backoff: bool,
    /// An event to publish once the actions ran (a rolling-update step).
    pub after: Option<Event>,
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

/// Adds to `members` the provisions that count although no observation listed them yet: those
/// recorded before a restart (`pending`) and those that returned but are not listed yet
/// (`in_flight`, with their logical IDs).
pub(crate) fn with_in_flight<'a>(
    members: &mut Vec<Member>,
    pending: &[Pending],
    in_flight: impl Iterator<Item = (&'a str, Option<&'a str>)>,
) {
    let counted = |id: String, logical_id: Option<String>| Member {
        id,
        logical_id,
        current: true,
        pending: true,
        ..Default::default()
    };
    for p in pending {
        members.push(counted(
            format!("pending:{}", p.token),
            p.logical_id.clone(),
        ));
    }
    for (id, logical_id) in in_flight {
        members.push(counted(id.to_string(), logical_id.map(str::to_string)));
    }
}

/// Decides a pass. `progress` tracks the rollout's deadline (the caller resets it once a
/// rollback is stored); `may_act` is the fence, asked only when there are actions to run.
pub(crate) fn decide(
    input: &Input<'_>,
    progress: &mut Progress,
    may_act: impl FnOnce() -> Result<(), String>,
) -> Decision {
    let Input {
        settings,
        rollout,
        members,
        lost,
        throttle,
        ..
    } = *input;
    let events = observed_events(lost, members);

    let gate = rollout.gate(settings);
    let target = target(settings, gate);
    let mut plan = planner::plan(&target, members);
    let judged = judge_rollout(input, &target, &plan, progress);
    let transition = judged.transition;
    let announce = match &transition {
        Transition::None => None,
        Transition::Complete => Some(Event::group(
            kind::ROLLOUT_COMPLETE,
            format!(
                "rollout complete: {} instance(s) on {}",
                judged.n, settings.config_hash
            ),
        )),
        Transition::Pause(why) => Some(Event::group(
            kind::ROLLOUT_FAILED,
            format!("rollout failed, paused: {why}"),
        )),
        Transition::Rollback { why, .. } => Some(Event::group(
            kind::ROLLED_BACK,
            format!("rollout failed, rolling back: {why}"),
        )),
    };
    if matches!(
        transition,
        Transition::Pause(_) | Transition::Rollback { .. }
    ) {
        // The rollout changed course: nothing else acts in this pass.
        plan.actions.clear();
        return Decision {
            events,
            transition,
            announce,
            plan,
            outcome: Outcome::Acted,
            spends_backoff: false,
            after: None,
        };
    }
    let RolloutCounts {
        n, updated, old, ..
    } = judged;

    // Crash-loop protection: hold back provisions while new instances keep dying young.
    let wanted = plan.provisions();
    let (allowed, why) = throttle.allow(wanted);
    trim_provisions(&mut plan, wanted - allowed);
    if let Some(why) = why {
        plan.waiting = Some(why);
    }
    let spends_backoff = allowed > 0 && matches!(throttle, Throttle::One { .. });

    if !plan.actions.is_empty() {
        // A controller that may not act now (its lease is not known valid) waits, and tries
        // again soon: this is not a failure to back off from.
        if let Err(why) = may_act() {
            plan.actions.clear();
            plan.waiting = Some(Wait::NotActing { why });
            return Decision {
                events,
                transition,
                announce,
                plan,
                outcome: Outcome::Waiting,
                spends_backoff: false,
                after: None,
            };
        }
        let after = (matches!(rollout.phase, Phase::Progressing | Phase::RollingBack) && old > 0)
            .then(|| {
                Event::group(
                    kind::ROLLOUT_STEP,
                    format!(
                        "rollout: {updated} of {n} updated, {old} old; {}",
                        crate::view::status_message(&plan)
                    ),
                )
            });
        return Decision {
            events,
            transition,
            announce,
            plan,
            outcome: Outcome::Acted,
            spends_backoff,
            after,
        };
    }
    let outcome = if plan.converged() {
        let unhealthy = members
            .iter()
            .filter(|m| m.health != Health::Healthy)
            .count();
        if unhealthy > 0 {
            plan.waiting = Some(Wait::NotHealthy { count: unhealthy });
            Outcome::Waiting
        } else {
            Outcome::Converged
        }
    } else {
        Outcome::Waiting
    };
    Decision {
        events,
        transition,
        announce,
        plan,
        outcome,
        spends_backoff: false,
        after: None,
    }
}

/// Where the rollout stands after an observation, and its transition.
struct RolloutCounts {
    transition: Transition,
    /// Members wanted.
    n: usize,
    /// Members on the current configuration and available.
    updated: usize,
    /// Members on an old configuration.
    old: usize,
}

/// The rollout's own bookkeeping: completion, and the progress deadline. A pass that began
/// before a commit decides nothing about the rollout: the next pass judges the settings now in
/// force.
fn judge_rollout(
    input: &Input<'_>,
    target: &Target,
    plan: &Plan,
    progress: &mut Progress,
) -> RolloutCounts {
    let members = input.members;
    let n = target.desired.count();
    let current = members.iter().filter(|m| m.current && !m.pending).count();
    let updated = members
        .iter()
        .filter(|m| m.current && m.available(target))
        .count();
    let old = members.iter().filter(|m| !m.current).count();
    let stalled = progress.observe(updated, old, input.now);
    let held = matches!(target.gate, Gate::Partition(p) if current >= p.min(n));
    let done = old == 0 && updated >= n && plan.actions.is_empty();
    let transition = if input.in_force {
        rollout::decide(input.rollout, input.settings, done, held, stalled)
    } else {
        Transition::None
    };
    RolloutCounts {
        transition,
        n,
        updated,
        old,
    }
}

/// Events about what an observation found: instances lost, instances that just turned unhealthy.
fn observed_events(lost: &[String], members: &[Member]) -> Vec<Event> {
    let lost = lost
        .iter()
        .map(|id| Event::instance(kind::LOST, id, format!("instance {id} disappeared")));
    let unhealthy = members
        .iter()
        .filter(|m| m.health == Health::Unhealthy && m.unhealthy_for.is_zero())
        .map(|m| {
            Event::instance(
                kind::UNHEALTHY,
                &m.id,
                format!("instance {} is unhealthy", m.id),
            )
        });
    lost.chain(unhealthy).collect()
}

/// Drops the last `skip` provisions from `plan`.
fn trim_provisions(plan: &mut Plan, mut skip: usize) {
    plan.actions.retain(|a| match a {
        Action::Provision { .. } if skip > 0 => {
            skip -= 1;
            false
        }
        _ => true,
    });
}

/// What the executor reported, as [`settle`] needs it.
#[derive(Debug, Default)]
pub(crate) struct Executed<'a> {
    /// Why a rolling-update drain failed, if one did.
    pub drain_failure: Option<&'a str>,
    /// One line per failed action.
    pub errors: &'a [String],
}

/// How a pass that ran actions ends.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Settled {
    /// Events to publish.
    pub events: Vec<Event>,
    /// Pause the rollout (a drain failed: the rollout must not go on).
    pub pause: Option<Pause>,
    /// The pass's outcome, or why it failed (the loop backs off).
    pub outcome: Result<Outcome, String>,
}

/// Ends a pass after its actions ran.
pub(crate) fn settle(executed: &Executed<'_>) -> Settled {
    let mut events = Vec::new();
    let pause = executed.drain_failure.map(|why| {
        let pause = Pause::Drain(why.to_string());
        events.push(Event::group(kind::ROLLOUT_PAUSED, pause.to_string()));
        pause
    });
    let outcome = if !executed.errors.is_empty() {
        Err(format!(
            "{} action(s) failed: {}",
            executed.errors.len(),
            executed.errors.join("; ")
        ))
    } else if pause.is_some() {
        Ok(Outcome::Waiting)
    } else {
        Ok(Outcome::Acted)
    };
    Settled {
        events,
        pause,
        outcome,
    }
}

/// How long to wait before looking again while a change is in progress.
pub(crate) const PROGRESS_RECHECK: Duration = Duration::from_millis(250);
/// The first pause after acting passes that show no progress (it doubles with each more).
pub(crate) const ACTED_RECHECK: Duration = Duration::from_millis(50);
/// Acting passes in a row that may show no progress before passes slow down (a listing may lag
/// behind what a plugin just did).
pub(crate) const BACK_TO_BACK: u32 = 3;
/// Longest back-off after repeated failures.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// When the next pass runs (the requeue rule, in the spirit of kube-runtime's
/// `Action::requeue`): at once after acting, as long as observations show progress; a plugin
/// that keeps accepting work that never shows up slows the passes down, in proportion to the
/// evidence (acting passes in a row whose observation did not change), up to
/// [`PROGRESS_RECHECK`]; soon while waiting; at the poll interval once converged; with
/// exponential back-off after failures.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    /// Acting passes in a row whose observation showed nothing new.
    stale_acts: u32,
    failures: u32,
    /// The digest of the last observation (see `Observation::digest`).
    last_seen: Option<u64>,
}

impl Pace {
    /// The delay before the next pass, after a pass that ended in `outcome` having observed
    /// `seen` (a digest of the observation), or that failed (`None`).
    pub(crate) fn next(&mut self, pass: Option<(Outcome, u64)>, poll: Duration) -> Duration {
        let Some((outcome, seen)) = pass else {
            self.stale_acts = 0;
            self.failures = self.failures.saturating_add(1);
            return Duration::from_millis(250u64.saturating_mul(1 << self.failures.min(10)))
                .min(MAX_BACKOFF)
                .max(poll.min(MAX_BACKOFF));
        };
        self.failures = 0;
        let progressed = self.last_seen != Some(seen);
        self.last_seen = Some(seen);
        match outcome {
            Outcome::Acted => {
                self.stale_acts = if progressed { 0 } else { self.stale_acts + 1 };
                match self.stale_acts.checked_sub(BACK_TO_BACK) {
                    None => Duration::ZERO,
                    Some(more) => ACTED_RECHECK
                        .saturating_mul(1 << more.min(8))
                        .min(PROGRESS_RECHECK.max(ACTED_RECHECK)),
                }
            }
            Outcome::Waiting => {
                self.stale_acts = 0;
                PROGRESS_RECHECK.min(poll)
            }
            Outcome::Converged => {
                self.stale_acts = 0;
                poll
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infrakit_spi::GroupSpec;
    use serde_json::json;

    fn settings(note: &str, size: usize, updating: serde_json::Value) -> Settings {
        Settings::parse(&GroupSpec {
            id: "g".into(),
            properties: json!({
                "Allocation": {"Size": size},
                "Instance": {"Plugin": "i", "Properties": {"Note": note}},
                "Flavor": {"Plugin": "f"},
                "Updating": updating,
            }),
        })
        .unwrap()
    }

    fn member(id: &str, current: bool, health: Health) -> Member {
        Member {
            id: id.into(),
            current,
            health,
            age: Duration::from_secs(600),
            healthy_for: if health == Health::Healthy {
                Duration::from_secs(600)
            } else {
                Duration::ZERO
            },
            healthy_streak: if health == Health::Healthy { 10 } else { 0 },
            ever_healthy: health == Health::Healthy,
            ..Default::default()
        }
    }

    fn healthy(n: usize, current: bool) -> Vec<Member> {
        (0..n)
            .map(|i| member(&format!("i{i}"), current, Health::Healthy))
            .collect()
    }

    /// A pass over `members` with `rollout`, no crash loop, not stalled.
    fn pass(s: &Settings, rollout: &RolloutState, members: &[Member]) -> Decision {
        let input = Input {
            settings: s,
            in_force: true,
            rollout,
            members,
            lost: &[],
            throttle: Throttle::Free,
            now: Instant::now(),
        };
        decide(&input, &mut Progress::new(input.now), || Ok(()))
    }

    fn never_asked() -> Result<(), String> {
        panic!("the fence must not be asked when there is nothing to do")
    }

    #[test]
    fn a_converged_group_is_left_alone_without_asking_the_fence() {
        let s = settings("v1", 3, json!(null));
        let members = healthy(3, true);
        let input = Input {
            settings: &s,
            in_force: true,
            rollout: &RolloutState::default(),
            members: &members,
            lost: &[],
            throttle: Throttle::Free,
            now: Instant::now(),
        };
        let d = decide(&input, &mut Progress::new(input.now), never_asked);
        assert_eq!(d.outcome, Outcome::Converged);
        assert!(d.plan.actions.is_empty() && d.plan.waiting.is_none());
        assert_eq!(d.transition, Transition::None);
        assert!(d.events.is_empty());
    }

    #[test]
    fn converged_but_unhealthy_is_waiting() {
        let s = settings("v1", 2, json!(null));
        let mut members = healthy(1, true);
        // Just started: within its startup grace.
        members.push(Member {
            age: Duration::from_secs(1),
            ..member("new", true, Health::Unknown)
        });
        let d = pass(&s, &RolloutState::default(), &members);
        assert_eq!(d.outcome, Outcome::Waiting);
        assert_eq!(d.plan.waiting, Some(Wait::NotHealthy { count: 1 }));
        assert_eq!(
            d.plan.waiting.unwrap().to_string(),
            "1 instance(s) not healthy"
        );
        assert!(d.plan.actions.is_empty());
    }

    #[test]
    fn a_missing_instance_is_provisioned() {
        let s = settings("v1", 3, json!(null));
        let d = pass(&s, &RolloutState::default(), &healthy(2, true));
        assert_eq!(d.outcome, Outcome::Acted);
        assert_eq!(d.plan.provisions(), 1);
        assert!(!d.spends_backoff);
        assert!(d.after.is_none(), "no rollout, no rollout step");
    }

    #[test]
    fn provisions_in_flight_count_as_members() {
        let s = settings("v1", 3, json!(null));
        let mut members = healthy(1, true);
        let pending = [Pending {
            token: "t1".into(),
            logical_id: None,
            since_ms: 0,
        }];
        with_in_flight(&mut members, &pending, [("i9", None)].into_iter());
        assert_eq!(members.len(), 3);
        assert!(members[1..].iter().all(|m| m.pending && m.current));
        assert_eq!(members[1].id, "pending:t1");
        let d = pass(&s, &RolloutState::default(), &members);
        assert_eq!(d.plan.provisions(), 0, "no duplicates of what is in flight");
    }

    #[test]
    fn lost_and_newly_unhealthy_instances_are_reported() {
        let s = settings("v1", 2, json!(null));
        let mut members = healthy(1, true);
        members.push(member("sick", true, Health::Unhealthy));
        let lost = ["gone".to_string()];
        let input = Input {
            settings: &s,
            in_force: true,
            rollout: &RolloutState::default(),
            members: &members,
            lost: &lost,
            throttle: Throttle::Free,
            now: Instant::now(),
        };
        let d = decide(&input, &mut Progress::new(input.now), || Ok(()));
        let kinds: Vec<_> = d
            .events
            .iter()
            .map(|e| (e.kind, e.instance.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            vec![(kind::LOST, Some("gone")), (kind::UNHEALTHY, Some("sick"))]
        );
        // Unhealthy for a while already: no second event.
        let mut later = members.clone();
        later[1].unhealthy_for = Duration::from_secs(5);
        let input = Input {
            members: &later,
            lost: &[],
            ..input
        };
        assert!(decide(&input, &mut Progress::new(input.now), || Ok(()))
            .events
            .is_empty());
    }

    #[test]
    fn crash_loop_back_off_trims_provisions() {
        let s = settings("v1", 3, json!(null));
        let members: Vec<Member> = Vec::new();
        let mut input = Input {
            settings: &s,
            in_force: true,
            rollout: &RolloutState::default(),
            members: &members,
            lost: &[],
            throttle: Throttle::Hold {
                deaths: 6,
                wait: Duration::from_secs(4),
            },
            now: Instant::now(),
        };
        let d = decide(&input, &mut Progress::new(input.now), never_asked);
        assert!(d.plan.actions.is_empty(), "held: nothing provisioned");
        assert_eq!(d.outcome, Outcome::Waiting);
        let why = d.plan.waiting.unwrap().to_string();
        assert!(why.starts_with("crash loop: 6 instances"), "{why}");
        assert!(why.ends_with("next provision in 4s"), "{why}");
        assert!(!d.spends_backoff);

        input.throttle = Throttle::One {
            deaths: 6,
            wait: Duration::from_secs(2),
        };
        let d = decide(&input, &mut Progress::new(input.now), || Ok(()));
        assert_eq!(d.plan.provisions(), 1, "one of three goes ahead");
        assert!(d.spends_backoff);
        assert_eq!(d.outcome, Outcome::Acted);
    }

    #[test]
    fn a_fenced_controller_waits_and_spends_nothing() {
        let s = settings("v1", 3, json!(null));
        let input = Input {
            settings: &s,
            in_force: true,
            rollout: &RolloutState::default(),
            members: &[],
            lost: &[],
            throttle: Throttle::One {
                deaths: 6,
                wait: Duration::from_secs(2),
            },
            now: Instant::now(),
        };
        let d = decide(&input, &mut Progress::new(input.now), || {
            Err("lease expired".into())
        });
        assert!(d.plan.actions.is_empty());
        assert_eq!(
            d.plan.waiting.unwrap().to_string(),
            "not acting: lease expired"
        );
        assert_eq!(d.outcome, Outcome::Waiting);
        assert!(
            !d.spends_backoff,
            "the back-off is spent only by a provision"
        );
    }

    fn rolling(from: &Settings, to: &Settings) -> RolloutState {
        let mut r = RolloutState::default();
        r.on_commit(from, to);
        r
    }

    #[test]
    fn a_rollout_step_is_reported_after_acting() {
        let v1 = settings("v1", 3, json!(null));
        let v2 = settings("v2", 3, json!(null));
        let d = pass(&v2, &rolling(&v1, &v2), &healthy(3, false));
        assert_eq!(d.outcome, Outcome::Acted);
        let after = d.after.expect("a rollout step");
        assert_eq!(after.kind, kind::ROLLOUT_STEP);
        assert!(after.message.starts_with("rollout: 0 of 3 updated, 3 old;"));
    }

    #[test]
    fn a_finished_rollout_completes() {
        let v1 = settings("v1", 3, json!(null));
        let v2 = settings("v2", 3, json!(null));
        let d = pass(&v2, &rolling(&v1, &v2), &healthy(3, true));
        assert_eq!(d.transition, Transition::Complete);
        assert_eq!(d.announce.unwrap().kind, kind::ROLLOUT_COMPLETE);
        assert_eq!(d.outcome, Outcome::Converged);
    }

    /// A rollout stalled past its deadline.
    fn stalled(on_failure: &str, in_force: bool) -> Decision {
        let v1 = settings("v1", 2, json!(null));
        let v2 = settings(
            "v2",
            2,
            json!({"ProgressDeadline": "30s", "OnFailure": on_failure}),
        );
        let rollout = rolling(&v1, &v2);
        // One new instance never becomes healthy: the rollout cannot go on.
        let mut members = healthy(2, false);
        members.push(member("new", true, Health::Unknown));
        let t0 = Instant::now();
        let mut progress = Progress::new(t0);
        let input = Input {
            settings: &v2,
            in_force,
            rollout: &rollout,
            members: &members,
            lost: &[],
            throttle: Throttle::Free,
            now: t0,
        };
        let first = decide(&input, &mut progress, || Ok(()));
        assert_eq!(first.transition, Transition::None);
        let later = Input {
            now: t0 + Duration::from_secs(31),
            ..input
        };
        decide(&later, &mut progress, || Ok(()))
    }

    #[test]
    fn a_stalled_rollout_pauses_and_acts_on_nothing() {
        let d = stalled("pause", true);
        match &d.transition {
            Transition::Pause(why) => assert!(why.starts_with("no progress for 31s"), "{why}"),
            other => panic!("expected a pause, got {other:?}"),
        }
        assert_eq!(d.announce.as_ref().unwrap().kind, kind::ROLLOUT_FAILED);
        assert!(d.plan.actions.is_empty());
        assert_eq!(d.outcome, Outcome::Acted);
    }

    #[test]
    fn a_stalled_rollout_rolls_back_to_the_spec_it_carries() {
        let d = stalled("rollback", true);
        match &d.transition {
            Transition::Rollback { to, .. } => {
                assert_eq!(to.spec.properties["Instance"]["Properties"]["Note"], "v1")
            }
            other => panic!("expected a rollback, got {other:?}"),
        }
        assert_eq!(d.announce.as_ref().unwrap().kind, kind::ROLLED_BACK);
        assert!(d.plan.actions.is_empty());
    }

    #[test]
    fn a_pass_that_began_before_a_commit_decides_no_transition() {
        let d = stalled("rollback", false);
        assert_eq!(d.transition, Transition::None);
    }

    #[test]
    fn settling_pauses_on_a_drain_failure_and_fails_on_errors() {
        let ok = settle(&Executed::default());
        assert_eq!(ok.outcome, Ok(Outcome::Acted));
        assert!(ok.pause.is_none() && ok.events.is_empty());

        let drained = settle(&Executed {
            drain_failure: Some("node busy"),
            errors: &[],
        });
        assert_eq!(drained.outcome, Ok(Outcome::Waiting));
        assert_eq!(drained.pause, Some(Pause::Drain("node busy".into())));
        assert_eq!(drained.events[0].message, "rollout paused: node busy");
        assert_eq!(drained.events[0].kind, kind::ROLLOUT_PAUSED);

        let errors = ["a: refused".to_string(), "b: timed out".to_string()];
        let failed = settle(&Executed {
            drain_failure: None,
            errors: &errors,
        });
        assert_eq!(
            failed.outcome,
            Err("2 action(s) failed: a: refused; b: timed out".into())
        );
    }

    #[test]
    fn acting_passes_run_back_to_back_while_they_show_progress() {
        let poll = Duration::from_secs(1);
        let mut pace = Pace::default();
        // A rollout: every pass acts and the next observation shows its effect.
        for seen in 0..100 {
            assert_eq!(
                pace.next(Some((Outcome::Acted, seen)), poll),
                Duration::ZERO
            );
        }
    }

    #[test]
    fn acting_passes_without_progress_slow_down_in_proportion() {
        let poll = Duration::from_secs(1);
        let mut pace = Pace::default();
        // A plugin that accepts work that never shows up: the observation never changes.
        let delays: Vec<_> = (0..8)
            .map(|_| pace.next(Some((Outcome::Acted, 7)), poll).as_millis())
            .collect();
        assert_eq!(delays, vec![0, 0, 0, 50, 100, 200, 250, 250]);
        assert_eq!(
            pace.next(Some((Outcome::Acted, 8)), poll),
            Duration::ZERO,
            "progress ends the slow-down"
        );
        assert_eq!(
            pace.next(Some((Outcome::Waiting, 8)), poll),
            PROGRESS_RECHECK
        );
    }

    #[test]
    fn waiting_and_converged_follow_the_poll_interval() {
        let mut pace = Pace::default();
        let fast = Duration::from_millis(100);
        assert_eq!(pace.next(Some((Outcome::Waiting, 1)), fast), fast);
        assert_eq!(
            pace.next(Some((Outcome::Waiting, 1)), Duration::from_secs(5)),
            PROGRESS_RECHECK
        );
        assert_eq!(
            pace.next(Some((Outcome::Converged, 1)), Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn failures_back_off_exponentially_up_to_a_limit() {
        let poll = Duration::from_millis(100);
        let mut pace = Pace::default();
        let delays: Vec<_> = (0..9).map(|_| pace.next(None, poll).as_millis()).collect();
        assert_eq!(
            delays,
            vec![500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
        );
        assert_eq!(
            pace.next(Some((Outcome::Converged, 1)), poll),
            poll,
            "a success ends the back-off"
        );
        assert_eq!(pace.next(None, poll).as_millis(), 500);
        assert_eq!(
            Pace::default().next(None, Duration::from_secs(10)),
            Duration::from_secs(10),
            "never sooner than the poll interval"
        );
    }
}
