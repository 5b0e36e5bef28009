//! What a commit would do, step by step: the planner run forward on a simulated group, assuming
//! every new instance becomes healthy before the next step. Pure.

use std::collections::HashSet;
use std::time::Duration;

use infrakit_spi::Health;

use crate::planner::{self, Action, Member, Target};

/// The steps of a simulated change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Simulation {
    /// One line per step (identical consecutive steps folded together).
    pub steps: Vec<String>,
    /// Lowest number of available instances at any point.
    pub min_available: usize,
    /// Highest number of instances at any point.
    pub max_instances: usize,
}

/// Simulates reaching `target` from `members`, at most `limit` steps.
pub fn simulate(target: &Target, members: &[Member], limit: usize) -> Simulation {
    let mut group: Vec<Member> = members.to_vec();
    let mut sim = Simulation {
        min_available: group.iter().filter(|m| m.available(target)).count(),
        max_instances: group.len(),
        steps: Vec::new(),
    };
    let mut lines: Vec<String> = Vec::new();
    let mut next_id = 0usize;
    for _ in 0..limit {
        let plan = planner::plan(target, &group);
        if plan.actions.is_empty() {
            if let Some(w) = plan.waiting {
                lines.push(format!("then wait: {w}"));
            }
            break;
        }
        let gone: HashSet<&str, foldhash::fast::RandomState> = plan.destroyed().collect();
        let described: Vec<String> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Destroy { id, reason } => Some(format!(
                    "destroy {id} ({})",
                    reason.as_str().replace('_', " ")
                )),
                Action::Provision { .. } => None,
            })
            .collect();
        group.retain(|m| !gone.contains(&m.id.as_str()));
        sim.min_available = sim
            .min_available
            .min(group.iter().filter(|m| m.available(target)).count());
        let creates: Vec<String> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Provision { logical_id } => Some(logical_id.clone()),
                Action::Destroy { .. } => None,
            })
            .map(|lid| {
                next_id += 1;
                group.push(Member {
                    id: format!("new-{next_id}"),
                    logical_id: lid.clone(),
                    current: true,
                    health: Health::Unknown,
                    ..Default::default()
                });
                lid.unwrap_or_default()
            })
            .collect();
        sim.max_instances = sim.max_instances.max(group.len());
        let mut parts = described;
        if !creates.is_empty() {
            let named: Vec<&String> = creates.iter().filter(|l| !l.is_empty()).collect();
            parts.push(if named.is_empty() {
                format!("create {} new instance(s)", creates.len())
            } else {
                format!(
                    "create {}",
                    named
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        }
        lines.push(parts.join(", "));
        // Time passes: every new instance becomes healthy and available.
        for m in group
            .iter_mut()
            .filter(|m| m.health == Health::Unknown && m.current)
        {
            m.health = Health::Healthy;
            m.ever_healthy = true;
            m.healthy_for = target.min_healthy_time.max(Duration::from_secs(1));
            m.healthy_streak = target.min_healthy_count.max(1);
        }
    }
    sim.steps = fold(lines);
    sim
}

/// Numbers the lines, folding runs of lines that differ only in instance IDs.
fn fold(lines: Vec<String>) -> Vec<String> {
    let shape = |l: &str| {
        l.split(' ')
            .map(|w| {
                if w.chars().any(|c| c.is_ascii_digit()) && w.contains('-') {
                    "#"
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let mut j = i + 1;
        while j < lines.len() && shape(&lines[j]) == shape(&lines[i]) {
            j += 1;
        }
        if j - i > 2 {
            out.push(format!(
                "steps {}-{}: {} (x{})",
                i + 1,
                j,
                shape(&lines[i]).replace(" #", " one old instance"),
                j - i
            ));
        } else {
            for (k, l) in lines[i..j].iter().enumerate() {
                out.push(format!("step {}: {l}", i + k + 1));
            }
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::Desired;

    fn healthy(id: &str, current: bool) -> Member {
        Member {
            id: id.into(),
            current,
            health: Health::Healthy,
            healthy_for: Duration::from_secs(100),
            healthy_streak: 5,
            ever_healthy: true,
            age: Duration::from_secs(100),
            ..Default::default()
        }
    }

    #[test]
    fn a_surge_rollout_never_drops_below_size() {
        let old: Vec<Member> = (0..5).map(|i| healthy(&format!("o-{i}"), false)).collect();
        let sim = simulate(&Target::new(Desired::Size(5), 1, 0), &old, 100);
        assert_eq!(sim.min_available, 5);
        assert_eq!(sim.max_instances, 6);
        assert_eq!(
            sim.steps.first().unwrap(),
            "step 1: create 1 new instance(s)"
        );
        assert!(
            sim.steps.iter().any(|s| s.contains("(x")),
            "{:?}",
            sim.steps
        );
    }

    #[test]
    fn an_unavailable_budget_rollout_dips() {
        let old: Vec<Member> = (0..4).map(|i| healthy(&format!("o-{i}"), false)).collect();
        let sim = simulate(&Target::new(Desired::Size(4), 0, 2), &old, 100);
        assert_eq!(sim.min_available, 2);
        assert_eq!(sim.max_instances, 4);
    }
}
