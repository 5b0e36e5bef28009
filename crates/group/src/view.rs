//! What a pass saw, as `DescribeGroup` reports it: the [`View`] each reconcile leaves behind, the
//! [`Snapshot`] built from it on demand, and the words for what a plan is doing or waiting for.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use infrakit_spi::group::{ConfigState, GroupStatus, InstanceStatus, RolloutStatus, Wait};
use infrakit_spi::Health;

use crate::planner::{Member, Plan};
use crate::rollout::RolloutState;
use crate::settings::Settings;

/// The last reconcile's view of a group, as stored between reconciles.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stored {
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

impl Stored {
    /// Keeps the view of a pass against `settings` that succeeded.
    pub(crate) fn passed(&mut self, settings: Arc<Settings>, converged: bool, view: View) {
        self.settings = Some(settings);
        self.converged = converged;
        self.observed = true;
        self.view = Arc::new(view);
        self.message = None;
    }

    /// Notes that a pass against `settings` failed: the last view stays, with `message` instead
    /// of its own.
    pub(crate) fn failed(&mut self, settings: Arc<Settings>, message: String) {
        self.settings = Some(settings);
        self.converged = false;
        self.message = Some(message);
    }

    /// The snapshot reported while `current` are the settings in force: not converged unless
    /// the last pass ran against them.
    pub(crate) fn snapshot(self, current: &Arc<Settings>) -> Snapshot {
        let mut status = self.view.status();
        if let Some(message) = self.message {
            // The last pass failed: what the view waited for is out of date.
            status.message = message;
            status.waiting = None;
        }
        let mut snap = Snapshot {
            status,
            converged: self.converged,
            observed: self.observed,
            settings: self.settings,
        };
        if !snap
            .settings
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, current))
        {
            snap.converged = false;
        }
        snap
    }
}

/// What a reconcile saw, kept for `DescribeGroup` until the next one. The status with its
/// per-instance entries is only built when someone asks for it.
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    desired: usize,
    config_hash: String,
    instances: Vec<Listed>,
    message: String,
    waiting: Option<Wait>,
    rollout: Option<RolloutStatus>,
    /// When the pass saw it: ages are reported as of the moment they are asked for.
    taken: Option<Instant>,
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
    pub(crate) fn record(&self, group: &str, metrics: &crate::telemetry::Metrics) {
        metrics.group_seen(group, self.desired, self.instances.len(), self.healthy());
        match &self.rollout {
            Some(r) => metrics.rollout(group, r.updated, r.total),
            None => metrics.rollout(group, 0, 0),
        }
    }

    /// The extended status `DescribeGroup` reports.
    fn status(&self) -> GroupStatus {
        let since = self.taken.map_or(0, |t| t.elapsed().as_secs());
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
                    age_seconds: m.age_seconds + since,
                })
                .collect(),
            rollout: self.rollout.clone(),
            waiting: self.waiting.clone(),
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
pub(crate) fn status_message(plan: &Plan) -> String {
    format!(
        "provisioning {}, destroying {}",
        plan.provisions(),
        plan.destroyed().count()
    )
}

pub(crate) fn status(
    settings: &Settings,
    rollout: &RolloutState,
    members: Vec<Member>,
    plan: &Plan,
) -> View {
    let waiting = plan.waiting.clone().filter(|_| plan.actions.is_empty());
    let message = if !plan.actions.is_empty() {
        status_message(plan)
    } else {
        waiting
            .as_ref()
            .map(ToString::to_string)
            .or_else(|| rollout.paused.as_ref().map(ToString::to_string))
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
        waiting,
        taken: Some(Instant::now()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::Wait;
    use infrakit_spi::GroupSpec;

    #[test]
    fn a_failed_pass_reports_its_error_not_what_the_last_one_waited_for() {
        let settings = Arc::new(
            Settings::parse(&GroupSpec {
                id: "g".into(),
                properties: serde_json::json!({
                    "Allocation": {"Size": 1},
                    "Instance": {"Plugin": "i"},
                    "Flavor": {"Plugin": "f"},
                }),
            })
            .unwrap(),
        );
        let plan = Plan {
            waiting: Some(Wait::NotHealthy { count: 1 }),
            ..Default::default()
        };
        let view = status(&settings, &RolloutState::default(), Vec::new(), &plan);
        let mut stored = Stored::default();
        stored.passed(settings.clone(), false, view);
        let snap = stored.clone().snapshot(&settings);
        assert_eq!(snap.status.waiting, Some(Wait::NotHealthy { count: 1 }));
        assert_eq!(snap.status.message, "1 instance(s) not healthy");

        stored.failed(settings.clone(), "cannot reconcile: down".into());
        let snap = stored.snapshot(&settings);
        assert_eq!(snap.status.waiting, None);
        assert_eq!(snap.status.message, "cannot reconcile: down");
    }
}
