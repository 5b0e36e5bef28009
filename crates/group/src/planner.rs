//! The reconcile decision, as a pure function of what is wanted and what exists.
//!
//! [`plan`] never does I/O and never reads a clock: everything time-related arrives in the
//! [`Member`]s (ages and health durations measured by the caller). The executor runs a plan's
//! destroys first, then its provisions, so a plan that replaces an instance never exceeds the
//! surge it was allowed.
//!
//! The guarantees, property-tested below:
//! - an instance that counts as available is destroyed only while at least
//!   `desired - max_unavailable` available instances remain;
//! - provisions never take the group above `desired + max_surge`;
//! - applying a plan (its new instances not yet healthy) and planning again yields no actions.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

pub use infrakit_spi::group::Wait;
use infrakit_spi::Health;

use crate::settings::{DeletePolicy, Ordering};

/// What the group should look like, and the rules for getting there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A count (cattle) or one instance per logical ID (pets).
    pub desired: Desired,
    /// Instances allowed above the desired count during an update.
    pub max_surge: usize,
    /// Desired instances that may be down because of an update.
    pub max_unavailable: usize,
    /// While more instances than this are unhealthy, none is replaced for being unhealthy.
    pub max_unhealthy: usize,
    /// An instance Unhealthy this long is replaced.
    pub unhealthy_after: Duration,
    /// An instance never Healthy this long after appearing is replaced.
    pub startup_grace: Duration,
    /// An instance counts as available once Healthy this long ...
    pub min_healthy_time: Duration,
    /// ... and for this many consecutive observations.
    pub min_healthy_count: u32,
    /// Scale-in preference among equally healthy instances.
    pub delete_policy: DeletePolicy,
    /// How missing pets are created.
    pub ordering: Ordering,
    /// Whether the rollout of a new configuration may proceed.
    pub gate: Gate,
}

impl Target {
    /// A target with default rules (tests and simple callers).
    pub fn new(desired: Desired, max_surge: usize, max_unavailable: usize) -> Target {
        Target {
            max_unhealthy: desired.count(),
            desired,
            max_surge,
            max_unavailable,
            unhealthy_after: Duration::from_secs(10),
            startup_grace: Duration::from_secs(60),
            min_healthy_time: Duration::ZERO,
            min_healthy_count: 0,
            delete_policy: DeletePolicy::Newest,
            ordering: Ordering::Parallel,
            gate: Gate::Open,
        }
    }
}

/// The allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Desired {
    /// Keep this many identical instances.
    Size(usize),
    /// Keep one instance per logical ID.
    LogicalIds(Vec<String>),
}

impl Desired {
    /// The number of instances wanted.
    pub fn count(&self) -> usize {
        match self {
            Desired::Size(n) => *n,
            Desired::LogicalIds(ids) => ids.len(),
        }
    }
}

/// How far a configuration rollout may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// All the way.
    Open,
    /// No further: keep what is there (dead instances are still replaced).
    Paused,
    /// Until this many instances run the current configuration.
    Partition(usize),
}

/// One instance of the group, as observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    /// Instance ID.
    pub id: String,
    /// Logical ID (pets).
    pub logical_id: Option<String>,
    /// Created from the current configuration.
    pub current: bool,
    /// As judged by the flavor on this observation.
    pub health: Health,
    /// Time since the controller first saw it (what scale-in order and grace periods use: a
    /// monotonic clock of the controller's own).
    pub age: Duration,
    /// When the instance plugin says it was created, if it knows: shown as the instance's age.
    pub created: Option<std::time::SystemTime>,
    /// Tagged `infrakit.protect=true`: never chosen by scale-in.
    pub protected: bool,
    /// How long it has been Healthy without interruption (zero unless Healthy).
    pub healthy_for: Duration,
    /// Consecutive observations it was Healthy in.
    pub healthy_streak: u32,
    /// How long it has been Unhealthy without interruption (zero unless Unhealthy).
    pub unhealthy_for: Duration,
    /// Whether it was ever seen Healthy.
    pub ever_healthy: bool,
    /// A provision that has not shown up in an observation yet.
    pub pending: bool,
    /// Its health check gave no answer this time (the flavor failed or timed out): it is Unknown
    /// for want of an answer, not because the flavor said so.
    pub unanswered: bool,
}

impl Member {
    /// Healthy long enough to be counted on.
    pub fn available(&self, t: &Target) -> bool {
        self.health == Health::Healthy
            && self.healthy_for >= t.min_healthy_time
            && self.healthy_streak >= t.min_healthy_count
    }

    /// Counts towards the group's availability: an old instance while it serves, a new one once
    /// it is available (healthy for `MinHealthyTime`).
    pub fn counted(&self, t: &Target) -> bool {
        if self.current {
            self.available(t)
        } else {
            self.serving()
        }
    }

    /// Serving now, as far as anyone knows: destroying it costs capacity. An instance that was
    /// healthy and is Unknown now still counts: an outage of the health checks says nothing about
    /// the instances, and must not free a rollout to retire them all.
    fn serving(&self) -> bool {
        self.health == Health::Healthy || (self.health == Health::Unknown && self.ever_healthy)
    }

    /// Unhealthy too long, or never healthy within the startup grace: to be replaced. The grace
    /// does not run out on a check that gave no answer: a flavor that is down cannot tell a new
    /// instance that failed from one that works.
    pub fn failed(&self, t: &Target) -> bool {
        !self.pending
            && ((self.health == Health::Unhealthy && self.unhealthy_for >= t.unhealthy_after)
                || (!self.ever_healthy
                    && !self.unanswered
                    && self.health != Health::Healthy
                    && self.age >= t.startup_grace))
    }

    /// Counts against the remediation brake.
    fn unhealthy(&self, t: &Target) -> bool {
        self.health == Health::Unhealthy || self.failed(t)
    }
}

/// Why an instance is destroyed; also the `Context.Reason` sent to the instance plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The group is larger than desired.
    ScaleDown,
    /// Replaced by an instance of the current configuration.
    RollingUpdate,
    /// Unhealthy too long: replaced.
    Unhealthy,
    /// A second instance for the same logical ID.
    Duplicate,
    /// Its logical ID is no longer in the allocation.
    NotInAllocation,
}

impl Reason {
    /// The wire form of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ScaleDown => "scale_down",
            Reason::RollingUpdate => "rolling_update",
            Reason::Unhealthy => "unhealthy",
            Reason::Duplicate => "duplicate",
            Reason::NotInAllocation => "not_in_allocation",
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create an instance of the current configuration.
    Provision {
        /// For pets, the logical ID to give it.
        logical_id: Option<String>,
    },
    /// Drain and destroy an instance.
    Destroy {
        /// The instance.
        id: String,
        /// Why.
        reason: Reason,
    },
}

/// The outcome of planning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// What to do now: destroys, then provisions.
    pub actions: Vec<Action>,
    /// Why the group is not converged although nothing (more) can be done now.
    pub waiting: Option<Wait>,
    /// True when the remediation brake held back replacements.
    pub braked: bool,
}

impl Plan {
    /// True when there is nothing to do and nothing to wait for.
    pub fn converged(&self) -> bool {
        self.actions.is_empty() && self.waiting.is_none()
    }

    fn destroy(&mut self, id: &str, reason: Reason) {
        self.actions.push(Action::Destroy {
            id: id.to_string(),
            reason,
        });
    }

    fn provision(&mut self, logical_id: Option<String>) {
        self.actions.push(Action::Provision { logical_id });
    }

    fn wait(&mut self, why: Wait) {
        if self.waiting.is_none() {
            self.waiting = Some(why);
        }
    }

    /// Puts destroys before provisions (the order the executor runs them in).
    fn ordered(mut self) -> Plan {
        self.actions
            .sort_by_key(|a| matches!(a, Action::Provision { .. }));
        self
    }

    /// The IDs this plan destroys.
    pub fn destroyed(&self) -> impl Iterator<Item = &str> {
        self.actions.iter().filter_map(|a| match a {
            Action::Destroy { id, .. } => Some(id.as_str()),
            Action::Provision { .. } => None,
        })
    }

    /// How many instances this plan creates.
    pub fn provisions(&self) -> usize {
        self.actions
            .iter()
            .filter(|a| matches!(a, Action::Provision { .. }))
            .count()
    }
}

/// Decides what to do. Call it only after a successful observation: an empty `members` means
/// "there are none", not "we do not know".
pub fn plan(target: &Target, members: &[Member]) -> Plan {
    // Remediation replaces instances that failed their health, unless so many are unhealthy that
    // the checks themselves are suspect (the brake). The brake is judged on the members that
    // would remain after everything else the plan does, so our own scale-in or clean-up of
    // strangers never flips it between two plans.
    let mut held = target.clone();
    held.gate = Gate::Paused;
    let base = plan_without_remediation(&held, members.iter().collect());
    // A set: a scale-in of a large group destroys many of many.
    let gone: HashSet<&str, foldhash::fast::RandomState> = base.destroyed().collect();
    let remaining: Vec<&Member> = members
        .iter()
        .filter(|m| !gone.contains(&m.id.as_str()))
        .collect();
    let unhealthy = remaining.iter().filter(|m| m.unhealthy(target)).count();
    if unhealthy > target.max_unhealthy && remaining.iter().any(|m| m.failed(target)) {
        let mut plan = base;
        plan.braked = true;
        plan.waiting = Some(Wait::RemediationBraked {
            unhealthy,
            of: remaining.len(),
            limit: target.max_unhealthy,
        });
        return plan.ordered();
    }
    let mut plan = Plan::default();
    for m in members.iter().filter(|m| m.failed(target)) {
        plan.destroy(&m.id, Reason::Unhealthy);
    }
    let healthy_enough: Vec<&Member> = members.iter().filter(|m| !m.failed(target)).collect();
    let rest = plan_without_remediation(target, healthy_enough);
    plan.actions.extend(rest.actions);
    plan.waiting = rest.waiting;
    plan.ordered()
}

fn plan_without_remediation(target: &Target, members: Vec<&Member>) -> Plan {
    let mut plan = Plan::default();
    match &target.desired {
        Desired::Size(n) => plan_cattle(target, *n, &members, &mut plan),
        Desired::LogicalIds(ids) => plan_pets(target, ids, &members, &mut plan),
    }
    plan
}

/// Scale-in preference: unhealthy, unknown, healthy but not yet available, available; then by
/// the delete policy; then by ID for determinism.
fn scale_in_order(t: &Target) -> impl Fn(&&Member, &&Member) -> std::cmp::Ordering + '_ {
    move |a, b| {
        let rank = |m: &Member| match m.health {
            Health::Unhealthy => 0,
            Health::Unknown if !m.serving() => 1,
            Health::Unknown => 2,
            Health::Healthy if !m.available(t) => 3,
            Health::Healthy => 4,
        };
        let policy = match t.delete_policy {
            DeletePolicy::Newest => a.age.cmp(&b.age),
            DeletePolicy::Oldest => b.age.cmp(&a.age),
            DeletePolicy::Random => fnv(&a.id).cmp(&fnv(&b.id)),
        };
        rank(a).cmp(&rank(b)).then(policy).then(a.id.cmp(&b.id))
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn plan_cattle(t: &Target, n: usize, members: &[&Member], plan: &mut Plan) {
    let (current, old): (Vec<&Member>, Vec<&Member>) =
        members.iter().copied().partition(|m| m.current);
    let mut total = members.len();
    let want_current = match t.gate {
        Gate::Open => n,
        Gate::Partition(p) => p.min(n),
        Gate::Paused => current.len().min(n),
    };
    // Availability may not drop below n - max_unavailable by our hand (instances that are not
    // available cost nothing to remove).
    let min_available = n.saturating_sub(t.max_unavailable);
    let mut available = members.iter().filter(|m| m.counted(t)).count();

    // Too many of the current configuration: scale in, sparing protected instances.
    let mut current_count = current.len();
    if current_count > n {
        let mut victims: Vec<&Member> = current.iter().copied().filter(|m| !m.protected).collect();
        victims.sort_by(scale_in_order(t));
        let excess = current_count - n;
        let mut removed = 0;
        for m in victims.iter().take(excess) {
            if m.serving() {
                if available <= min_available {
                    break;
                }
                available -= m.counted(t) as usize;
            }
            plan.destroy(&m.id, Reason::ScaleDown);
            total -= 1;
            current_count -= 1;
            removed += 1;
        }
        if removed < excess {
            plan.wait(Wait::KeptAboveSize {
                kept: excess - removed,
                size: n,
            });
        }
    }

    let keep_old = match t.gate {
        // Paused: nothing moves, surge included, unless the group must shrink.
        Gate::Paused => old
            .len()
            .min((n + t.max_surge).saturating_sub(current_count)),
        _ => n - want_current.max(current_count).min(n),
    };

    // Retire old instances beyond those kept.
    let mut old_sorted = old.clone();
    old_sorted.sort_by(scale_in_order(t));
    let to_retire = old.len().saturating_sub(keep_old);
    let mut retired = 0;
    for m in old_sorted.iter().filter(|m| !m.protected) {
        if retired == to_retire {
            break;
        }
        if m.serving() {
            if available <= min_available {
                break;
            }
            available -= m.counted(t) as usize;
        }
        plan.destroy(&m.id, Reason::RollingUpdate);
        total -= 1;
        retired += 1;
    }

    // Create instances of the current configuration: to fill the group, and towards the
    // rollout target within the surge.
    let room = (n + t.max_surge).saturating_sub(total);
    let towards_target = want_current.saturating_sub(current_count).min(room);
    let deficit = n.saturating_sub(total);
    for _ in 0..towards_target.max(deficit) {
        plan.provision(None);
    }

    let old_left = old.len() - retired;
    if old_left > keep_old && plan.actions.is_empty() {
        let starting = current.iter().filter(|m| !m.available(t)).count();
        plan.wait(if starting > 0 {
            Wait::NewInstancesStarting { starting, old_left }
        } else {
            Wait::CannotReplace {
                old_left,
                max_surge: t.max_surge,
                max_unavailable: t.max_unavailable,
            }
        });
    }
    if old_left > 0 && old_left <= keep_old {
        match t.gate {
            Gate::Partition(partition) => plan.wait(Wait::AtPartition {
                updated: current_count,
                total: n,
                partition,
                pets: false,
            }),
            Gate::Paused => plan.wait(Wait::RolloutPaused {
                updated: current_count,
                total: n,
                pets: false,
            }),
            Gate::Open => {}
        }
    }
}

fn plan_pets(t: &Target, ids: &[String], members: &[&Member], plan: &mut Plan) {
    let mut by_id: BTreeMap<&str, Vec<&Member>> =
        ids.iter().map(|id| (id.as_str(), Vec::new())).collect();
    for m in members {
        match m.logical_id.as_deref().and_then(|l| by_id.get_mut(l)) {
            Some(list) => list.push(m),
            None => plan.destroy(&m.id, Reason::NotInAllocation),
        }
    }
    let available_ids =
        |by_id: &BTreeMap<&str, Vec<&Member>>, id: &str| by_id[id].iter().any(|m| m.counted(t));
    let unavailable = ids.iter().filter(|id| !available_ids(&by_id, id)).count();
    let mut budget = t.max_unavailable.saturating_sub(unavailable);
    // Logical IDs already surging: a current member alongside an old one (duplicates of one
    // configuration are removed by this plan and do not count).
    // (A surge whose new member is available ends in this plan: its old member goes.)
    let mut surging = by_id
        .values()
        .filter(|ms| {
            ms.iter().any(|m| !m.current)
                && ms.iter().any(|m| m.current)
                && !ms.iter().any(|m| m.current && m.available(t))
        })
        .count();
    let updatable = match t.gate {
        Gate::Open => ids.len(),
        Gate::Partition(p) => p.min(ids.len()),
        Gate::Paused => 0,
    };
    let mut waiting = 0;
    let mut held = 0;
    let mut creating = false;

    for (pos, id) in ids.iter().enumerate() {
        let ms = &by_id[id.as_str()];
        let mut current: Vec<&Member> = ms.iter().copied().filter(|m| m.current).collect();
        let mut old: Vec<&Member> = ms.iter().copied().filter(|m| !m.current).collect();
        current.sort_by(scale_in_order(t));
        old.sort_by(scale_in_order(t));
        match (current.last(), old.last()) {
            (None, None) => {
                // Missing: create it (in order, one at a time, if so configured).
                if t.ordering == Ordering::Ordered {
                    let earlier_ready = ids[..pos].iter().all(|e| available_ids(&by_id, e));
                    if creating || !earlier_ready {
                        waiting += 1;
                        continue;
                    }
                    creating = true;
                }
                plan.provision(Some(id.clone()));
            }
            (None, Some(keep)) => {
                for extra in &old[..old.len() - 1] {
                    plan.destroy(&extra.id, Reason::Duplicate);
                }
                if pos >= updatable {
                    held += 1;
                } else if surging < t.max_surge {
                    surging += 1;
                    plan.provision(Some(id.clone()));
                } else if !keep.serving() {
                    plan.destroy(&keep.id, Reason::RollingUpdate);
                    plan.provision(Some(id.clone()));
                } else if budget > 0 {
                    budget -= 1;
                    plan.destroy(&keep.id, Reason::RollingUpdate);
                    plan.provision(Some(id.clone()));
                } else {
                    waiting += 1;
                }
            }
            (Some(best), _) => {
                for extra in &current[..current.len() - 1] {
                    plan.destroy(&extra.id, Reason::Duplicate);
                }
                if best.available(t) {
                    for o in &old {
                        plan.destroy(&o.id, Reason::RollingUpdate);
                    }
                } else if let Some((keep, extras)) = old.split_last() {
                    // Keep the best old member until the new one is available.
                    for extra in extras {
                        plan.destroy(&extra.id, Reason::Duplicate);
                    }
                    let _ = keep;
                    waiting += 1;
                }
            }
        }
    }
    if waiting > 0 && plan.actions.is_empty() {
        plan.wait(Wait::MembersWaiting {
            waiting,
            max_unavailable: t.max_unavailable,
            ordered: t.ordering == Ordering::Ordered,
        });
    }
    if held > 0 {
        let (updated, total) = (ids.len() - held, ids.len());
        plan.wait(match t.gate {
            Gate::Partition(partition) => Wait::AtPartition {
                updated,
                total,
                partition,
                pets: true,
            },
            _ => Wait::RolloutPaused {
                updated,
                total,
                pets: true,
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Health::*;

    fn m(id: &str, current: bool, health: Health) -> Member {
        Member {
            id: id.into(),
            current,
            health,
            // Unknown members are young; others have been around and were healthy once.
            age: Duration::from_secs(if health == Unknown {
                1
            } else {
                100 + id.len() as u64
            }),
            healthy_for: if health == Healthy {
                Duration::from_secs(100)
            } else {
                Duration::ZERO
            },
            healthy_streak: if health == Healthy { 10 } else { 0 },
            ever_healthy: health != Unknown,
            ..Default::default()
        }
    }

    fn pet(id: &str, lid: &str, current: bool, health: Health) -> Member {
        Member {
            logical_id: Some(lid.into()),
            ..m(id, current, health)
        }
    }

    fn cattle(n: usize, surge: usize, unavailable: usize) -> Target {
        Target::new(Desired::Size(n), surge, unavailable)
    }

    fn pets(ids: &[&str], surge: usize, unavailable: usize) -> Target {
        Target::new(
            Desired::LogicalIds(ids.iter().map(|s| s.to_string()).collect()),
            surge,
            unavailable,
        )
    }

    fn destroyed(p: &Plan) -> Vec<&str> {
        p.destroyed().collect()
    }

    #[test]
    fn empty_group_is_filled() {
        assert_eq!(plan(&cattle(3, 1, 0), &[]).provisions(), 3);
    }

    #[test]
    fn steady_group_is_left_alone() {
        let ms = vec![m("a", true, Healthy), m("b", true, Unknown)];
        assert!(plan(&cattle(2, 1, 0), &ms).converged());
    }

    #[test]
    fn scale_in_prefers_unhealthy_then_the_delete_policy_and_spares_protected() {
        let mut ms = vec![
            m("aaaa", true, Healthy),
            m("bb", true, Healthy),
            m("ccc", true, Unhealthy),
            m("d", true, Healthy),
        ];
        assert_eq!(destroyed(&plan(&cattle(2, 1, 0), &ms)), vec!["ccc", "d"]);
        let mut oldest = cattle(2, 1, 0);
        oldest.delete_policy = DeletePolicy::Oldest;
        assert_eq!(destroyed(&plan(&oldest, &ms)), vec!["ccc", "aaaa"]);
        ms[3].protected = true;
        assert_eq!(destroyed(&plan(&cattle(2, 1, 0), &ms)), vec!["ccc", "bb"]);
    }

    #[test]
    fn rolling_update_surges_then_waits_for_availability() {
        let old: Vec<Member> = (0..3)
            .map(|i| m(&format!("o{i}"), false, Healthy))
            .collect();
        let mut t = cattle(3, 1, 0);
        t.min_healthy_time = Duration::from_secs(5);
        let p = plan(&t, &old);
        assert_eq!((p.provisions(), destroyed(&p).len()), (1, 0));
        let mut ms = old.clone();
        let mut new = m("n0", true, Healthy);
        new.healthy_for = Duration::from_secs(1);
        ms.push(new);
        let p = plan(&t, &ms);
        assert!(
            p.actions.is_empty(),
            "healthy for 1s < MinHealthyTime 5s: {p:?}"
        );
        assert!(
            matches!(
                p.waiting,
                Some(Wait::NewInstancesStarting { starting: 1, .. })
            ),
            "{p:?}"
        );
        ms[3].healthy_for = Duration::from_secs(5);
        let p = plan(&t, &ms);
        assert_eq!(destroyed(&p).len(), 1);
        assert_eq!(
            p.provisions(),
            1,
            "the freed slot is refilled in the same plan"
        );
        assert!(
            matches!(p.actions[0], Action::Destroy { .. }),
            "destroys come first"
        );
    }

    #[test]
    fn failed_instances_are_replaced_and_healthy_ones_never() {
        let mut t = cattle(3, 1, 0);
        t.max_unhealthy = 1;
        let mut sick = m("s", true, Unhealthy);
        sick.unhealthy_for = Duration::from_secs(9);
        let ms = vec![m("a", true, Healthy), m("b", true, Healthy), sick.clone()];
        assert!(plan(&t, &ms).actions.is_empty(), "not yet UnhealthyAfter");
        let mut ms = ms;
        ms[2].unhealthy_for = Duration::from_secs(10);
        let p = plan(&t, &ms);
        assert_eq!(destroyed(&p), vec!["s"]);
        assert_eq!(p.provisions(), 1);
        // Never healthy within the startup grace.
        let mut stuck = m("x", true, Unknown);
        stuck.age = Duration::from_secs(61);
        let p = plan(&t, &[m("a", true, Healthy), m("b", true, Healthy), stuck]);
        assert_eq!(destroyed(&p), vec!["x"]);
    }

    #[test]
    fn an_outage_of_health_checks_frees_no_old_instance_for_a_rollout() {
        // Six old instances that were healthy; now every check times out.
        let t = cattle(6, 1, 0);
        let ms: Vec<Member> = (0..6)
            .map(|i| Member {
                health: Unknown,
                ever_healthy: true,
                unanswered: true,
                age: Duration::from_secs(600),
                ..m(&format!("old{i}"), false, Healthy)
            })
            .collect();
        let p = plan(&t, &ms);
        assert!(destroyed(&p).is_empty(), "{p:?}");
        assert_eq!(p.provisions(), 1, "one new instance within the surge");
        // A new instance that cannot be judged either does not unlock them.
        let mut with_new = ms.clone();
        with_new.push(Member {
            unanswered: true,
            age: Duration::from_secs(600),
            ..m("new", true, Unknown)
        });
        let p = plan(&t, &with_new);
        assert!(p.actions.is_empty(), "{p:?}");
    }

    #[test]
    fn the_startup_grace_does_not_run_out_on_checks_that_gave_no_answer() {
        let t = cattle(3, 1, 0);
        let mut young = m("x", true, Unknown);
        young.age = Duration::from_secs(3600);
        young.unanswered = true;
        let p = plan(
            &t,
            &[m("a", true, Healthy), m("b", true, Healthy), young.clone()],
        );
        assert!(p.actions.is_empty(), "{p:?}");
        // Once the flavor answers (still not healthy), the grace is over.
        young.unanswered = false;
        let p = plan(&t, &[m("a", true, Healthy), m("b", true, Healthy), young]);
        assert_eq!(destroyed(&p), vec!["x"]);
    }

    #[test]
    fn the_brake_holds_replacements_while_too_many_are_unhealthy() {
        let mut t = cattle(10, 1, 0);
        t.max_unhealthy = 4;
        let mut ms: Vec<Member> = (0..10)
            .map(|i| m(&format!("i{i}"), true, Healthy))
            .collect();
        for m in ms.iter_mut().take(6) {
            m.health = Unhealthy;
            m.unhealthy_for = Duration::from_secs(60);
        }
        let p = plan(&t, &ms);
        assert!(p.actions.is_empty() && p.braked);
        assert_eq!(
            p.waiting.as_ref().map(ToString::to_string).as_deref(),
            Some("remediation paused: 6 of 10 unhealthy, above the limit of 4")
        );
        for m in ms.iter_mut().take(3) {
            m.health = Healthy;
        }
        let p = plan(&t, &ms);
        assert_eq!(destroyed(&p).len(), 3);
        assert_eq!(p.provisions(), 3);
    }

    #[test]
    fn partition_updates_that_many_and_holds() {
        let mut t = cattle(4, 1, 0);
        t.gate = Gate::Partition(2);
        let ms = vec![
            m("n1", true, Healthy),
            m("n2", true, Healthy),
            m("o1", false, Healthy),
            m("o2", false, Healthy),
        ];
        let p = plan(&t, &ms);
        assert!(p.actions.is_empty());
        assert_eq!(
            p.waiting,
            Some(Wait::AtPartition {
                updated: 2,
                total: 4,
                partition: 2,
                pets: false
            })
        );
        t.gate = Gate::Open;
        assert_eq!(plan(&t, &ms).provisions(), 1);
    }

    #[test]
    fn a_paused_rollout_still_heals() {
        let mut t = cattle(3, 1, 0);
        t.gate = Gate::Paused;
        let ms = vec![m("n1", true, Healthy), m("o1", false, Healthy)];
        let p = plan(&t, &ms);
        assert_eq!(p.provisions(), 1, "the missing instance is replaced");
        assert!(destroyed(&p).is_empty(), "no old instance is retired");
    }

    #[test]
    fn grow_and_roll_adds_new_instances_at_once() {
        let ms: Vec<Member> = (0..5)
            .map(|i| m(&format!("o{i}"), false, Healthy))
            .collect();
        let p = plan(&cattle(10, 1, 0), &ms);
        assert_eq!(p.provisions(), 6);
        assert!(destroyed(&p).is_empty());
    }

    #[test]
    fn pets_are_created_per_logical_id_and_strangers_removed() {
        let ms = vec![pet("i1", "a", true, Healthy), pet("i9", "z", true, Healthy)];
        let p = plan(&pets(&["a", "b"], 0, 1), &ms);
        assert_eq!(destroyed(&p), vec!["i9"]);
        assert_eq!(
            p.actions.last(),
            Some(&Action::Provision {
                logical_id: Some("b".into())
            })
        );
    }

    #[test]
    fn pets_roll_one_at_a_time() {
        let t = pets(&["a", "b", "c"], 0, 1);
        let ms = vec![
            pet("i1", "a", false, Healthy),
            pet("i2", "b", false, Healthy),
            pet("i3", "c", false, Healthy),
        ];
        let p = plan(&t, &ms);
        assert_eq!(destroyed(&p), vec!["i1"]);
        assert_eq!(p.provisions(), 1);
        let ms = vec![
            pet("n1", "a", true, Unknown),
            pet("i2", "b", false, Healthy),
            pet("i3", "c", false, Healthy),
        ];
        let p = plan(&t, &ms);
        assert!(p.actions.is_empty());
        assert!(p.waiting.is_some());
    }

    #[test]
    fn ordered_pets_are_created_one_after_another() {
        let mut t = pets(&["a", "b", "c"], 0, 1);
        t.ordering = Ordering::Ordered;
        let p = plan(&t, &[]);
        assert_eq!(
            p.actions,
            vec![Action::Provision {
                logical_id: Some("a".into())
            }]
        );
        let p = plan(&t, &[pet("i1", "a", true, Unknown)]);
        assert!(p.actions.is_empty());
        let p = plan(&t, &[pet("i1", "a", true, Healthy)]);
        assert_eq!(
            p.actions,
            vec![Action::Provision {
                logical_id: Some("b".into())
            }]
        );
    }

    // ---- properties ----

    fn arb_health() -> impl Strategy<Value = Health> {
        prop_oneof![Just(Healthy), Just(Healthy), Just(Unknown), Just(Unhealthy)]
    }

    fn arb_member(i: usize, lids: usize) -> impl Strategy<Value = Member> {
        (
            any::<bool>(),
            arb_health(),
            0u64..200,
            0u64..30,
            any::<bool>(),
            0..lids.max(1) + 1,
        )
            .prop_map(
                move |(current, health, age, unhealthy_for, protected, lid)| Member {
                    id: format!("i{i:03}"),
                    logical_id: (lids > 0 && lid < lids).then(|| format!("p{lid}")),
                    current,
                    health,
                    age: Duration::from_secs(age),
                    created: None,
                    protected: protected && i.is_multiple_of(5),
                    healthy_for: if health == Healthy {
                        Duration::from_secs(age)
                    } else {
                        Duration::ZERO
                    },
                    healthy_streak: if health == Healthy { 3 } else { 0 },
                    unhealthy_for: if health == Unhealthy {
                        Duration::from_secs(unhealthy_for)
                    } else {
                        Duration::ZERO
                    },
                    ever_healthy: health == Healthy || age % 2 == 0,
                    pending: false,
                    // Some Unknowns are a check that gave no answer.
                    unanswered: health == Unknown && age % 3 == 0,
                },
            )
    }

    fn arb_case() -> impl Strategy<Value = (Target, Vec<Member>)> {
        (
            0usize..12,
            0usize..4,
            0usize..4,
            any::<bool>(),
            0usize..14,
            0usize..6,
            0usize..3,
        )
            .prop_flat_map(
                |(n, surge, unavailable, is_pets, count, max_unhealthy, gate)| {
                    let surge = if surge == 0 && unavailable == 0 {
                        1
                    } else {
                        surge
                    };
                    let lids = if is_pets { n } else { 0 };
                    let mut t = if is_pets {
                        Target::new(
                            Desired::LogicalIds((0..n).map(|i| format!("p{i}")).collect()),
                            surge,
                            unavailable,
                        )
                    } else {
                        Target::new(Desired::Size(n), surge, unavailable)
                    };
                    t.max_unhealthy = max_unhealthy;
                    t.gate = match gate {
                        0 => Gate::Open,
                        1 => Gate::Paused,
                        _ => Gate::Partition(n / 2),
                    };
                    let members: Vec<_> = (0..count).map(|i| arb_member(i, lids)).collect();
                    (Just(t), members)
                },
            )
    }

    /// The group after a plan ran: destroyed instances gone, new ones present but not healthy yet.
    fn apply(t: &Target, members: &[Member], p: &Plan) -> Vec<Member> {
        let gone: Vec<&str> = p.destroyed().collect();
        let mut out: Vec<Member> = members
            .iter()
            .filter(|m| !gone.contains(&m.id.as_str()))
            .cloned()
            .collect();
        for (k, a) in p.actions.iter().enumerate() {
            if let Action::Provision { logical_id } = a {
                out.push(Member {
                    id: format!("new{k:03}"),
                    logical_id: logical_id.clone(),
                    current: true,
                    health: Unknown,
                    ..Default::default()
                });
            }
        }
        let _ = t;
        out
    }

    proptest! {
        #[test]
        fn availability_never_drops_below_the_budget_by_our_hand((t, members) in arb_case()) {
            let p = plan(&t, &members);
            let gone: Vec<&str> = p.destroyed().collect();
            // Cattle: available instances. Pets: logical IDs with an available member.
            let measure = |keep: &dyn Fn(&Member) -> bool| match &t.desired {
                Desired::Size(_) => members.iter().filter(|m| m.counted(&t) && keep(m)).count(),
                Desired::LogicalIds(ids) => ids
                    .iter()
                    .filter(|l| members.iter().any(|m| m.logical_id.as_ref() == Some(l) && m.counted(&t) && keep(m)))
                    .count(),
            };
            let before = measure(&|_| true);
            let after = measure(&|m| !gone.contains(&m.id.as_str()));
            let floor = before.min(t.desired.count().saturating_sub(t.max_unavailable));
            prop_assert!(after >= floor, "available {before} -> {after}, floor {floor}: {p:?}");
        }

        #[test]
        fn provisions_never_exceed_the_surge((t, members) in arb_case()) {
            let p = plan(&t, &members);
            let after = apply(&t, &members, &p).len();
            // Cattle: provisions stay within the surge (or replace what was destroyed). Pets:
            // members of the allocation stay within the surge unless they already exceeded it.
            let (after, limit) = match &t.desired {
                Desired::Size(_) => (after, (t.desired.count() + t.max_surge).max(members.len() - p.destroyed().count())),
                Desired::LogicalIds(ids) => {
                    // Logical IDs with more than one member: the pets' surge.
                    let surging = |list: &[Member]| ids.iter().filter(|l| list.iter().filter(|m| m.logical_id.as_ref() == Some(l)).count() > 1).count();
                    let next = apply(&t, &members, &p);
                    (surging(&next), t.max_surge.max(surging(&members)))
                }
            };
            prop_assert!(after <= limit, "{} -> {after} instances, limit {limit}: {p:?}", members.len());
        }

        #[test]
        fn planning_again_on_the_result_is_a_no_op((t, members) in arb_case()) {
            let p = plan(&t, &members);
            let next = apply(&t, &members, &p);
            let again = plan(&t, &next);
            prop_assert!(again.actions.is_empty(), "first {p:?}\nthen {again:?}");
        }

        #[test]
        fn healthy_available_instances_are_never_destroyed_without_cause((t, members) in arb_case()) {
            // With every instance current, available and in the allocation, and the group at its
            // size, nothing is destroyed.
            let n = t.desired.count();
            let healthy: Vec<Member> = members.into_iter().take(n).map(|mut m| {
                m.current = true; m.health = Healthy; m.healthy_for = Duration::from_secs(100);
                m.healthy_streak = 10; m.ever_healthy = true; m
            }).collect();
            let healthy: Vec<Member> = match &t.desired {
                Desired::LogicalIds(ids) => healthy.into_iter().zip(ids).map(|(mut m, l)| { m.logical_id = Some(l.clone()); m }).collect(),
                Desired::Size(_) => healthy.into_iter().map(|mut m| { m.logical_id = None; m }).collect(),
            };
            let p = plan(&t, &healthy);
            prop_assert_eq!(p.destroyed().count(), 0, "{:?}", p);
        }
    }
}
