//! The reconcile decision, as a pure function of what is wanted and what exists.
//!
//! [`plan`] never does I/O and never looks at a clock: everything time-related arrives in the
//! [`Member`]s. The executor runs a plan's destroys first, then its provisions, so a plan that
//! replaces an instance never exceeds the surge it was allowed.

use std::collections::BTreeMap;
use std::time::Duration;

use infrakit_spi::Health;

/// What the group should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A count (cattle) or one instance per logical ID (pets).
    pub desired: Desired,
    /// Instances allowed above the desired count during an update.
    pub max_surge: usize,
    /// Desired instances that may be down because of an update.
    pub max_unavailable: usize,
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

/// One observed instance of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Instance ID.
    pub id: String,
    /// Logical ID (pets).
    pub logical_id: Option<String>,
    /// Created from the current configuration.
    pub current: bool,
    /// As judged by the flavor on this observation.
    pub health: Health,
    /// Time since the controller first saw it.
    pub age: Duration,
    /// Tagged `infrakit.protect=true`: never chosen by scale-in.
    pub protected: bool,
}

impl Member {
    fn healthy(&self) -> bool {
        self.health == Health::Healthy
    }
}

/// Why an instance is destroyed; also the `Context.Reason` sent to the instance plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The group is larger than desired.
    ScaleDown,
    /// Replaced by an instance of the current configuration.
    RollingUpdate,
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
    /// Why the group is not converged although nothing can be done now (e.g. waiting for health).
    pub waiting: Option<String>,
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

    /// Puts destroys before provisions (the order the executor runs them in).
    fn ordered(mut self) -> Plan {
        self.actions
            .sort_by_key(|a| matches!(a, Action::Provision { .. }));
        self
    }
}

/// Decides what to do. Call it only after a successful observation: an empty `members` means
/// "there are none", not "we do not know".
pub fn plan(target: &Target, members: &[Member]) -> Plan {
    match &target.desired {
        Desired::Size(n) => plan_cattle(target, *n, members),
        Desired::LogicalIds(ids) => plan_pets(target, ids, members),
    }
    .ordered()
}

/// Scale-in preference: unhealthy first, then unknown, then the newest.
fn scale_in_order(a: &&Member, b: &&Member) -> std::cmp::Ordering {
    let rank = |m: &Member| match m.health {
        Health::Unhealthy => 0,
        Health::Unknown => 1,
        Health::Healthy => 2,
    };
    rank(a)
        .cmp(&rank(b))
        .then(a.age.cmp(&b.age))
        .then(a.id.cmp(&b.id))
}

fn plan_cattle(target: &Target, n: usize, members: &[Member]) -> Plan {
    let mut plan = Plan::default();
    let (current, old): (Vec<&Member>, Vec<&Member>) = members.iter().partition(|m| m.current);
    let mut total = members.len();

    // Too many of the current configuration: scale in (never touching protected instances).
    if current.len() > n {
        let mut victims: Vec<&Member> = current.iter().copied().filter(|m| !m.protected).collect();
        victims.sort_by(scale_in_order);
        let excess = current.len() - n;
        for m in victims.iter().take(excess) {
            plan.destroy(&m.id, Reason::ScaleDown);
            total -= 1;
        }
        if victims.len() < excess {
            plan.waiting = Some(format!(
                "{} protected instances keep the group above its size of {n}",
                excess - victims.len()
            ));
        }
    }
    let current_count = current.len().min(n);

    if old.is_empty() {
        if total < n {
            for _ in total..n {
                plan.provision(None);
            }
        }
        return plan;
    }

    // Rolling update: retire old instances without letting availability drop below
    // n - max_unavailable, and create new ones without exceeding n + max_surge.
    let min_available = n.saturating_sub(target.max_unavailable);
    let mut available = members.iter().filter(|m| m.healthy()).count();
    let mut old_sorted = old.clone();
    old_sorted.sort_by(scale_in_order);
    // Old instances beyond what is still needed to reach n can go whatever their health,
    // as long as availability allows.
    let mut retired = 0;
    for m in &old_sorted {
        if m.healthy() {
            if available <= min_available {
                break;
            }
            available -= 1;
        }
        plan.destroy(&m.id, Reason::RollingUpdate);
        total -= 1;
        retired += 1;
    }
    let room = (n + target.max_surge).saturating_sub(total);
    let want = n.saturating_sub(current_count);
    for _ in 0..want.min(room) {
        plan.provision(None);
    }
    if retired < old.len() && plan.actions.is_empty() {
        let starting = current.iter().filter(|m| !m.healthy()).count();
        plan.waiting = Some(if starting > 0 {
            format!(
                "rolling update: waiting for {starting} new instance(s) to become healthy ({} old left)",
                old.len() - retired
            )
        } else {
            format!(
                "rolling update: cannot replace {} old instance(s) without exceeding MaxSurge {} or MaxUnavailable {}",
                old.len() - retired,
                target.max_surge,
                target.max_unavailable
            )
        });
    }
    plan
}

fn plan_pets(target: &Target, ids: &[String], members: &[Member]) -> Plan {
    let mut plan = Plan::default();
    let mut by_id: BTreeMap<&str, Vec<&Member>> =
        ids.iter().map(|id| (id.as_str(), Vec::new())).collect();
    for m in members {
        match m.logical_id.as_deref().and_then(|l| by_id.get_mut(l)) {
            Some(list) => list.push(m),
            None => plan.destroy(&m.id, Reason::NotInAllocation),
        }
    }
    let unavailable = ids
        .iter()
        .filter(|id| !by_id[id.as_str()].iter().any(|m| m.healthy()))
        .count();
    let mut unavailable_budget = target.max_unavailable.saturating_sub(unavailable);
    let mut surging = by_id.values().filter(|ms| ms.len() > 1).count();
    let mut waiting = 0;

    for id in ids {
        let ms = &by_id[id.as_str()];
        let current: Vec<&&Member> = ms.iter().filter(|m| m.current).collect();
        let old: Vec<&&Member> = ms.iter().filter(|m| !m.current).collect();
        match (current.len(), old.len()) {
            (0, 0) => plan.provision(Some(id.clone())),
            (0, _) => {
                // Only old instances: replace one, by surge if allowed, else within the
                // unavailable budget (an old instance that is not healthy costs nothing).
                let mut old = old.clone();
                old.sort_by(|a, b| scale_in_order(a, b));
                let keep = old.last().expect("non-empty");
                for extra in &old[..old.len() - 1] {
                    plan.destroy(&extra.id, Reason::Duplicate);
                }
                if surging < target.max_surge {
                    surging += 1;
                    plan.provision(Some(id.clone()));
                } else if !keep.healthy() {
                    plan.destroy(&keep.id, Reason::RollingUpdate);
                    plan.provision(Some(id.clone()));
                } else if unavailable_budget > 0 {
                    unavailable_budget -= 1;
                    plan.destroy(&keep.id, Reason::RollingUpdate);
                    plan.provision(Some(id.clone()));
                } else {
                    waiting += 1;
                }
            }
            (_, _) => {
                // A current instance exists: keep the best one; old ones go once it is healthy.
                let mut current = current.clone();
                current.sort_by(|a, b| scale_in_order(a, b));
                let best = current.last().expect("non-empty");
                for extra in &current[..current.len() - 1] {
                    plan.destroy(&extra.id, Reason::Duplicate);
                }
                if best.healthy() {
                    for o in &old {
                        plan.destroy(&o.id, Reason::RollingUpdate);
                    }
                } else if !old.is_empty() {
                    waiting += 1;
                }
            }
        }
    }
    if waiting > 0 && plan.actions.is_empty() {
        plan.waiting = Some(format!(
            "rolling update: {waiting} member(s) wait for others to become healthy (MaxUnavailable {})",
            target.max_unavailable
        ));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, current: bool, health: Health) -> Member {
        Member {
            id: id.into(),
            logical_id: None,
            current,
            health,
            age: Duration::from_secs(id.len() as u64),
            protected: false,
        }
    }

    fn pet(id: &str, lid: &str, current: bool, health: Health) -> Member {
        Member {
            logical_id: Some(lid.into()),
            ..m(id, current, health)
        }
    }

    fn cattle(n: usize, surge: usize, unavailable: usize) -> Target {
        Target {
            desired: Desired::Size(n),
            max_surge: surge,
            max_unavailable: unavailable,
        }
    }

    use Health::*;

    fn provisions(p: &Plan) -> usize {
        p.actions
            .iter()
            .filter(|a| matches!(a, Action::Provision { .. }))
            .count()
    }

    fn destroyed(p: &Plan) -> Vec<&str> {
        p.actions
            .iter()
            .filter_map(|a| match a {
                Action::Destroy { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn empty_group_is_filled() {
        let p = plan(&cattle(3, 1, 0), &[]);
        assert_eq!(provisions(&p), 3);
    }

    #[test]
    fn steady_group_is_left_alone() {
        let ms = vec![m("a", true, Healthy), m("b", true, Unknown)];
        let p = plan(&cattle(2, 1, 0), &ms);
        assert!(p.converged(), "{p:?}");
    }

    #[test]
    fn scale_in_prefers_unhealthy_then_newest_and_spares_protected() {
        let mut ms = vec![
            m("aaaa", true, Healthy),
            m("bb", true, Healthy),
            m("ccc", true, Unhealthy),
            m("d", true, Healthy),
        ];
        let p = plan(&cattle(2, 1, 0), &ms);
        assert_eq!(destroyed(&p), vec!["ccc", "d"]);
        ms[3].protected = true;
        let p = plan(&cattle(2, 1, 0), &ms);
        assert_eq!(destroyed(&p), vec!["ccc", "bb"]);
    }

    #[test]
    fn rolling_update_surges_then_waits_for_health() {
        let old: Vec<Member> = (0..3)
            .map(|i| m(&format!("o{i}"), false, Healthy))
            .collect();
        let t = cattle(3, 1, 0);
        let p = plan(&t, &old);
        assert_eq!((provisions(&p), destroyed(&p).len()), (1, 0));
        let mut ms = old.clone();
        ms.push(m("n0", true, Unknown));
        let p = plan(&t, &ms);
        assert!(p.actions.is_empty());
        assert!(
            p.waiting.as_deref().unwrap().contains("waiting for 1 new"),
            "{p:?}"
        );
        ms[3].health = Healthy;
        let p = plan(&t, &ms);
        assert_eq!(destroyed(&p).len(), 1);
        assert_eq!(
            provisions(&p),
            1,
            "the freed slot is refilled in the same plan"
        );
        assert!(
            matches!(p.actions[0], Action::Destroy { .. }),
            "destroys come first"
        );
    }

    #[test]
    fn unhealthy_old_instances_are_replaced_without_budget() {
        let ms = vec![m("o1", false, Unhealthy), m("o2", false, Healthy)];
        let p = plan(&cattle(2, 0, 1), &ms);
        assert_eq!(destroyed(&p), vec!["o1"]);
        assert_eq!(provisions(&p), 1);
    }

    #[test]
    fn grow_and_roll_adds_new_instances_at_once() {
        let ms: Vec<Member> = (0..5)
            .map(|i| m(&format!("o{i}"), false, Healthy))
            .collect();
        let p = plan(&cattle(10, 1, 0), &ms);
        assert_eq!(provisions(&p), 6);
        assert!(destroyed(&p).is_empty());
    }

    #[test]
    fn pets_are_created_per_logical_id_and_strangers_removed() {
        let t = Target {
            desired: Desired::LogicalIds(vec!["a".into(), "b".into()]),
            max_surge: 0,
            max_unavailable: 1,
        };
        let ms = vec![pet("i1", "a", true, Healthy), pet("i9", "z", true, Healthy)];
        let p = plan(&t, &ms);
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
        let t = Target {
            desired: Desired::LogicalIds(vec!["a".into(), "b".into(), "c".into()]),
            max_surge: 0,
            max_unavailable: 1,
        };
        let ms = vec![
            pet("i1", "a", false, Healthy),
            pet("i2", "b", false, Healthy),
            pet("i3", "c", false, Healthy),
        ];
        let p = plan(&t, &ms);
        assert_eq!(destroyed(&p), vec!["i1"]);
        assert_eq!(provisions(&p), 1);
        // While a's replacement starts, nothing else goes down.
        let ms = vec![
            pet("n1", "a", true, Unknown),
            pet("i2", "b", false, Healthy),
            pet("i3", "c", false, Healthy),
        ];
        let p = plan(&t, &ms);
        assert!(p.actions.is_empty());
        assert!(p.waiting.is_some());
    }
}
