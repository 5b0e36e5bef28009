//! Health and clean-up decisions, pure functions of the swarm's view of the nodes.
//!
//! [`judge`] gives an instance's health from the nodes carrying its link label:
//! - a **ready** node (for a manager: one that is a manager and **reachable**): **Healthy**;
//! - no node yet, or a node whose state the swarm does not know yet (`unknown`, or a manager
//!   whose reachability is `unknown`): **Unknown** within `JoinGrace` of Prepare, then
//!   **Unhealthy**;
//! - a node that is `down` or `disconnected`, a manager that is `unreachable`, or a manager
//!   instance whose node is not a manager (demoted by hand): **Unhealthy**.
//!
//! When several nodes carry the link (an engine that left and joined again), the best one
//! counts. [`stale`] picks the nodes of a group that have been down long enough to be removed.

use std::time::{Duration, SystemTime};

use infrakit_spi::Health;

use crate::role::Role;

/// A node's state as the managers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeState {
    /// Ready for work.
    Ready,
    /// Not known yet.
    Unknown,
    /// Its session dropped.
    Disconnected,
    /// Missed its heartbeats.
    Down,
}

/// A manager's reachability in the raft cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    /// Takes part.
    Reachable,
    /// Not known yet.
    Unknown,
    /// Does not answer.
    Unreachable,
}

/// What the flavor needs to know of one swarm node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The node ID.
    pub id: String,
    /// Its state.
    pub state: NodeState,
    /// Its manager status, `None` for a worker.
    pub manager: Option<Reachability>,
    /// The role it is meant to have (a demotion changes this first).
    pub spec_manager: bool,
    /// True when its availability is `drain`.
    pub drained: bool,
    /// When the swarm last changed it (its state, among others).
    pub updated_at: Option<SystemTime>,
    /// Its address.
    pub addr: Option<String>,
}

/// The health of an instance of `role` whose link label `nodes` carry, `age` after Prepare
/// (`None`: not known, counted as past the grace), with a short reason.
pub fn judge(
    role: Role,
    nodes: &[NodeView],
    age: Option<Duration>,
    join_grace: Duration,
) -> (Health, String) {
    let within_grace = age.is_some_and(|a| a < join_grace);
    let waiting = |what: &str| {
        if within_grace {
            (Health::Unknown, format!("{what}, within JoinGrace"))
        } else {
            (Health::Unhealthy, format!("{what}, past JoinGrace"))
        }
    };
    let Some(best) = nodes.iter().min_by_key(|n| rank(role, n)) else {
        return waiting("not in the swarm yet");
    };
    match best.state {
        NodeState::Down => return (Health::Unhealthy, format!("node {} is down", best.id)),
        NodeState::Disconnected => {
            return (
                Health::Unhealthy,
                format!("node {} is disconnected", best.id),
            )
        }
        NodeState::Unknown => return waiting(&format!("node {} is in an unknown state", best.id)),
        NodeState::Ready => {}
    }
    match (role, best.manager) {
        (Role::Worker, _) => (Health::Healthy, format!("node {} is ready", best.id)),
        (Role::Manager, Some(Reachability::Reachable)) => (
            Health::Healthy,
            format!("manager {} is ready and reachable", best.id),
        ),
        (Role::Manager, Some(Reachability::Unknown)) => {
            waiting(&format!("manager {} has an unknown reachability", best.id))
        }
        (Role::Manager, Some(Reachability::Unreachable)) => (
            Health::Unhealthy,
            format!("manager {} is unreachable", best.id),
        ),
        (Role::Manager, None) => (
            Health::Unhealthy,
            format!("node {} is ready but not a manager", best.id),
        ),
    }
}

/// Lower is better: ready before unknown before disconnected before down; for managers, a
/// reachable manager first.
fn rank(role: Role, n: &NodeView) -> (NodeState, u8) {
    let manager = match (role, n.manager) {
        (Role::Worker, _) => 0,
        (Role::Manager, Some(Reachability::Reachable)) => 0,
        (Role::Manager, Some(Reachability::Unknown)) => 1,
        (Role::Manager, Some(Reachability::Unreachable)) => 2,
        (Role::Manager, None) => 3,
    };
    (n.state, manager)
}

/// The nodes that have been down for at least `after` at `now` (never, when `after` is zero).
/// A node whose last change is not known, or in the future, is not stale.
pub fn stale(nodes: &[NodeView], now: SystemTime, after: Duration) -> Vec<&NodeView> {
    if after.is_zero() {
        return Vec::new();
    }
    nodes
        .iter()
        .filter(|n| n.state == NodeState::Down)
        .filter(|n| {
            n.updated_at
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|d| d >= after)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, state: NodeState, manager: Option<Reachability>) -> NodeView {
        NodeView {
            id: id.into(),
            state,
            manager,
            spec_manager: manager.is_some(),
            drained: false,
            updated_at: None,
            addr: None,
        }
    }

    const GRACE: Duration = Duration::from_secs(60);

    fn h(role: Role, nodes: &[NodeView], age: Option<u64>) -> Health {
        judge(role, nodes, age.map(Duration::from_secs), GRACE).0
    }

    #[test]
    fn the_decision_table() {
        use NodeState::*;
        use Reachability as R;
        let w = Role::Worker;
        let m = Role::Manager;
        // Not joined yet.
        assert_eq!(h(w, &[], Some(5)), Health::Unknown);
        assert_eq!(h(w, &[], Some(60)), Health::Unhealthy);
        assert_eq!(h(m, &[], None), Health::Unhealthy, "no age: past the grace");
        // Workers.
        assert_eq!(h(w, &[node("a", Ready, None)], Some(999)), Health::Healthy);
        assert_eq!(h(w, &[node("a", Unknown, None)], Some(1)), Health::Unknown);
        assert_eq!(
            h(w, &[node("a", Unknown, None)], Some(61)),
            Health::Unhealthy
        );
        assert_eq!(h(w, &[node("a", Down, None)], Some(1)), Health::Unhealthy);
        assert_eq!(
            h(w, &[node("a", Disconnected, None)], Some(1)),
            Health::Unhealthy
        );
        // A worker that rejoined: the ready node counts.
        assert_eq!(
            h(
                w,
                &[node("old", Down, None), node("new", Ready, None)],
                Some(999)
            ),
            Health::Healthy
        );
        // Managers.
        assert_eq!(
            h(m, &[node("a", Ready, Some(R::Reachable))], Some(999)),
            Health::Healthy
        );
        assert_eq!(
            h(m, &[node("a", Ready, Some(R::Unknown))], Some(5)),
            Health::Unknown
        );
        assert_eq!(
            h(m, &[node("a", Ready, Some(R::Unknown))], Some(500)),
            Health::Unhealthy
        );
        assert_eq!(
            h(m, &[node("a", Ready, Some(R::Unreachable))], Some(5)),
            Health::Unhealthy
        );
        assert_eq!(h(m, &[node("a", Ready, None)], Some(5)), Health::Unhealthy);
        assert_eq!(
            h(
                m,
                &[
                    node("demoted", Ready, None),
                    node("b", Ready, Some(R::Reachable))
                ],
                Some(5)
            ),
            Health::Healthy
        );
        assert_eq!(
            h(m, &[node("a", Down, Some(R::Unreachable))], Some(5)),
            Health::Unhealthy
        );
        let (_, why) = judge(m, &[node("x1", Ready, None)], None, GRACE);
        assert!(why.contains("x1") && why.contains("not a manager"), "{why}");
    }

    #[test]
    fn stale_nodes_are_down_long_enough() {
        let now = SystemTime::now();
        let at = |id: &str, state, ago: Option<u64>| NodeView {
            updated_at: ago.map(|s| now - Duration::from_secs(s)),
            ..node(id, state, None)
        };
        let nodes = [
            at("down-long", NodeState::Down, Some(120)),
            at("down-short", NodeState::Down, Some(5)),
            at("down-unknown", NodeState::Down, None),
            at("ready", NodeState::Ready, Some(999)),
            at("gone-away", NodeState::Disconnected, Some(999)),
        ];
        let ids = |v: Vec<&NodeView>| v.into_iter().map(|n| n.id.clone()).collect::<Vec<_>>();
        assert_eq!(
            ids(stale(&nodes, now, Duration::from_secs(60))),
            ["down-long"]
        );
        assert_eq!(
            ids(stale(&nodes, now, Duration::from_secs(5))),
            ["down-long", "down-short"]
        );
        assert!(stale(&nodes, now, Duration::ZERO).is_empty());
        let future = [at("future", NodeState::Down, None)];
        let mut f = future.clone();
        f[0].updated_at = Some(now + Duration::from_secs(30));
        assert!(stale(&f, now, Duration::from_secs(1)).is_empty());
    }
}
