//! The rollout of a configuration change: its persisted state and the rules that move it along.
//!
//! A rollout starts when a commit changes the configuration hash. It is *progressing* until every
//! member runs the new configuration and is available, then *complete*. An operator can pause it,
//! resume it (also past a `Partition`) or undo it (go back to the previous spec). If it makes no
//! progress within `ProgressDeadline` it fails: it pauses, or, with `OnFailure: rollback`, the
//! previous spec becomes current again (*rolling back*, then *rolled back*).
//!
//! [`RolloutState`] is what is persisted with the spec, so a restarted controller resumes where it
//! stopped. Provisions in flight are recorded in it before they start ([`Pending`]), so a crash
//! between `Provision` and the next observation cannot make the group overshoot its surge.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use infrakit_spi::group::{Pause, RolloutPhase, RolloutStatus};
use infrakit_spi::GroupSpec;

use crate::planner::Gate;
use crate::settings::Settings;

pub use infrakit_spi::instance::TOKEN_TAG;
/// How long an unobserved provision recorded before a restart still counts as in flight.
pub const PENDING_GRACE: Duration = Duration::from_secs(60);

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// No configuration change since the group was first committed.
    #[default]
    #[serde(rename = "none")]
    None,
    /// Replacing instances.
    #[serde(rename = "progressing")]
    Progressing,
    /// Every member runs the current configuration.
    #[serde(rename = "complete")]
    Complete,
    /// Going back to the previous configuration after a failure.
    #[serde(rename = "rolling back")]
    RollingBack,
    /// Back on the previous configuration.
    #[serde(rename = "rolled back")]
    RolledBack,
}

impl Phase {
    /// As `DescribeGroup` reports it (`None` is never reported).
    fn reported(self) -> RolloutPhase {
        match self {
            Phase::None | Phase::Progressing => RolloutPhase::Progressing,
            Phase::Complete => RolloutPhase::Complete,
            Phase::RollingBack => RolloutPhase::RollingBack,
            Phase::RolledBack => RolloutPhase::RolledBack,
        }
    }

    fn active(self) -> bool {
        matches!(self, Phase::Progressing | Phase::RollingBack)
    }
}

/// A provision that was started and not yet seen in an observation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The token tag value the instance will carry.
    #[serde(rename = "Token")]
    pub token: String,
    /// Its logical ID, for pets.
    #[serde(rename = "LogicalID", default)]
    pub logical_id: Option<String>,
    /// When it was recorded (milliseconds since the Unix epoch).
    #[serde(rename = "Since")]
    pub since_ms: u64,
}

/// The persisted state of a group's rollout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    /// Where it stands.
    #[serde(rename = "Phase", default)]
    pub phase: Phase,
    /// The spec before the current one (for undo and rollback).
    #[serde(rename = "Previous", default)]
    pub previous: Option<GroupSpec>,
    /// Why it is paused, if it is (stored as its text).
    #[serde(rename = "Paused", default)]
    pub paused: Option<Pause>,
    /// True once an operator resumed past the spec's `Partition`.
    #[serde(rename = "PartitionReleased", default)]
    pub partition_released: bool,
    /// Why it last failed or rolled back.
    #[serde(rename = "Reason", default)]
    pub reason: String,
    /// Provisions in flight.
    #[serde(rename = "Pending", default)]
    pub pending: Vec<Pending>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl RolloutState {
    /// Updates the state for a commit of `new` over `old`.
    pub fn on_commit(&mut self, old: &Settings, new: &Settings) {
        if old.config_hash != new.config_hash {
            self.phase = Phase::Progressing;
            self.previous = Some(old.spec.clone());
            self.paused = None;
            self.partition_released = false;
            self.reason.clear();
        }
    }

    /// How far the rollout may go under `settings`.
    pub fn gate(&self, settings: &Settings) -> Gate {
        if self.paused.is_some() {
            return Gate::Paused;
        }
        match settings.updating.partition {
            Some(p) if !self.partition_released && self.phase != Phase::RollingBack => {
                Gate::Partition(p)
            }
            _ => Gate::Open,
        }
    }

    /// The status shown by `describe`.
    pub fn status(&self, updated: usize, total: usize) -> Option<RolloutStatus> {
        if self.phase == Phase::None && self.paused.is_none() {
            return None;
        }
        let phase = if self.paused.is_some() {
            RolloutPhase::Paused
        } else {
            self.phase.reported()
        };
        Some(RolloutStatus {
            phase,
            updated,
            total,
            reason: match &self.paused {
                Some(pause) => pause.to_string(),
                None => self.reason.clone(),
            },
        })
    }

    /// Keeps the pending provisions still worth waiting for at `now_ms`: not yet `seen` (an
    /// observation listed an instance with its token) and recorded less than [`PENDING_GRACE`]
    /// ago. True when any was dropped (the stored record is then out of date).
    pub fn retain_pending(&mut self, seen: impl Fn(&str) -> bool, now_ms: u64) -> bool {
        let before = self.pending.len();
        self.pending
            .retain(|p| !seen(&p.token) && p.is_live(now_ms));
        self.pending.len() != before
    }

    /// Applies a rollout transition decided against `settings` (the settings in force).
    pub fn apply(&mut self, transition: &Transition, settings: &Settings) {
        match transition {
            Transition::None => {}
            Transition::Complete => {
                self.phase = if self.phase == Phase::RollingBack {
                    Phase::RolledBack
                } else {
                    Phase::Complete
                };
            }
            Transition::Pause(why) => self.paused = Some(Pause::Failed(why.clone())),
            Transition::Rollback { why, to } => {
                self.on_commit(settings, to);
                self.phase = Phase::RollingBack;
                self.reason = format!("rolled back: {why}");
            }
        }
    }
}

impl Pending {
    /// Whether it is still worth waiting for at `now_ms`.
    pub fn is_live(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.since_ms) < PENDING_GRACE.as_millis() as u64
    }
}

/// In-memory progress tracking for the deadline (restarts give a rollout a fresh window).
#[derive(Debug, Clone)]
pub struct Progress {
    best: (usize, usize),
    since: Instant,
}

impl Progress {
    /// Starts tracking at `now`.
    pub fn new(now: Instant) -> Progress {
        Progress {
            best: (0, usize::MAX),
            since: now,
        }
    }

    /// Restarts the clock (a new rollout, a resume).
    pub fn reset(&mut self, now: Instant) {
        *self = Progress::new(now);
    }

    /// Records `updated` available new instances and `old` remaining old ones; returns how long
    /// the rollout has gone without progress.
    pub fn observe(&mut self, updated: usize, old: usize, now: Instant) -> Duration {
        if updated > self.best.0 || old < self.best.1 {
            self.best = (self.best.0.max(updated), self.best.1.min(old));
            self.since = now;
        }
        now.duration_since(self.since)
    }
}

/// What the supervisor must do after an observation, decided from the rollout's point of view.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Nothing changes.
    None,
    /// The rollout finished.
    Complete,
    /// The deadline passed: pause with this reason.
    Pause(String),
    /// The deadline passed: go back to the previous spec, `to`.
    Rollback {
        /// Why.
        why: String,
        /// The settings rolled back to.
        to: Box<Settings>,
    },
}

/// Decides the rollout transition after an observation (pure).
///
/// `done` means every member runs the current configuration and the group is converged;
/// `held` means the rollout is waiting at its partition (not a failure); `stalled_for` is how long
/// it has gone without progress.
pub fn decide(
    state: &RolloutState,
    settings: &Settings,
    done: bool,
    held: bool,
    stalled_for: Duration,
) -> Transition {
    if !state.phase.active() {
        return Transition::None;
    }
    if done {
        return Transition::Complete;
    }
    if state.paused.is_some() || held || stalled_for < settings.progress_deadline() {
        return Transition::None;
    }
    let why = format!(
        "no progress for {} (ProgressDeadline {})",
        humantime::format_duration(Duration::from_secs(stalled_for.as_secs())),
        humantime::format_duration(settings.progress_deadline())
    );
    match (settings.on_failure(), &state.previous) {
        (crate::settings::OnFailure::Rollback, Some(previous))
            if state.phase == Phase::Progressing =>
        {
            match Settings::parse(previous) {
                Ok(to) => Transition::Rollback {
                    why,
                    to: Box::new(to),
                },
                // A previous spec this version cannot parse cannot be rolled back to.
                Err(e) => Transition::Pause(format!("{why}; cannot roll back: {e}")),
            }
        }
        _ => Transition::Pause(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(note: &str, updating: serde_json::Value) -> Settings {
        Settings::parse(&GroupSpec {
            id: "g".into(),
            properties: json!({
                "Allocation": {"Size": 3},
                "Instance": {"Plugin": "i", "Properties": {"Note": note}},
                "Flavor": {"Plugin": "f"},
                "Updating": updating,
            }),
        })
        .unwrap()
    }

    #[test]
    fn a_config_change_starts_a_rollout_and_a_resize_does_not() {
        let v1 = settings("v1", json!(null));
        let v2 = settings("v2", json!({"Partition": 1}));
        let mut s = RolloutState::default();
        s.on_commit(&v1, &v1);
        assert_eq!(s.phase, Phase::None);
        s.on_commit(&v1, &v2);
        assert_eq!(s.phase, Phase::Progressing);
        assert_eq!(s.previous.as_ref().unwrap(), &v1.spec);
        assert_eq!(s.gate(&v2), Gate::Partition(1));
        s.partition_released = true;
        assert_eq!(s.gate(&v2), Gate::Open);
        s.paused = Some(Pause::Operator);
        assert_eq!(s.gate(&v2), Gate::Paused);
        let status = s.status(1, 3).unwrap();
        assert_eq!(
            (status.phase, status.reason.as_str()),
            (RolloutPhase::Paused, "paused by an operator")
        );
    }

    #[test]
    fn the_deadline_pauses_or_rolls_back() {
        let v1 = settings("v1", json!(null));
        let v2 = settings(
            "v2",
            json!({"ProgressDeadline": "30s", "OnFailure": "rollback"}),
        );
        let mut s = RolloutState::default();
        s.on_commit(&v1, &v2);
        assert_eq!(
            decide(&s, &v2, false, false, Duration::from_secs(29)),
            Transition::None
        );
        match decide(&s, &v2, false, false, Duration::from_secs(30)) {
            Transition::Rollback { why, to } => {
                assert!(why.starts_with("no progress for 30s"), "{why}");
                assert_eq!(to.spec, v1.spec, "rolls back to the spec before");
            }
            other => panic!("expected a rollback, got {other:?}"),
        }
        assert_eq!(
            decide(&s, &v2, false, true, Duration::from_secs(99)),
            Transition::None,
            "held at a partition"
        );
        assert_eq!(
            decide(&s, &v2, true, false, Duration::from_secs(99)),
            Transition::Complete
        );
        s.phase = Phase::RollingBack;
        assert!(
            matches!(
                decide(&s, &v2, false, false, Duration::from_secs(30)),
                Transition::Pause(_)
            ),
            "a rollback never rolls back"
        );
        let v3 = settings("v3", json!({"ProgressDeadline": "30s"}));
        s.phase = Phase::Progressing;
        assert!(matches!(
            decide(&s, &v3, false, false, Duration::from_secs(31)),
            Transition::Pause(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn progress_resets_the_clock() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0);
        assert_eq!(p.observe(0, 3, t0), Duration::ZERO);
        assert_eq!(
            p.observe(0, 3, t0 + Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        assert_eq!(p.observe(1, 3, t0 + Duration::from_secs(6)), Duration::ZERO);
        assert_eq!(p.observe(1, 2, t0 + Duration::from_secs(8)), Duration::ZERO);
        assert_eq!(
            p.observe(1, 2, t0 + Duration::from_secs(9)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn pending_provisions_expire_or_show_up() {
        let pending = |token: &str, since_ms| Pending {
            token: token.into(),
            logical_id: None,
            since_ms,
        };
        let mut s = RolloutState {
            pending: vec![
                pending("a", 1_000),
                pending("b", 100_000),
                pending("c", 100_000),
            ],
            ..Default::default()
        };
        assert!(!s.retain_pending(|_| false, 60_999), "none expired yet");
        assert!(s.retain_pending(|t| t == "c", 120_000));
        let live: Vec<_> = s.pending.iter().map(|p| p.token.as_str()).collect();
        assert_eq!(live, vec!["b"], "a expired, c showed up");
    }

    #[test]
    fn a_rollback_that_cannot_parse_its_spec_pauses() {
        let v2 = settings(
            "v2",
            json!({"ProgressDeadline": "30s", "OnFailure": "rollback"}),
        );
        let s = RolloutState {
            phase: Phase::Progressing,
            previous: Some(GroupSpec {
                id: "g".into(),
                properties: json!({"Allocation": {"Size": "three"}}),
            }),
            ..Default::default()
        };
        match decide(&s, &v2, false, false, Duration::from_secs(30)) {
            Transition::Pause(why) => assert!(why.contains("cannot roll back"), "{why}"),
            other => panic!("expected a pause, got {other:?}"),
        }
    }

    #[test]
    fn transitions_apply_to_the_state() {
        let v1 = settings("v1", json!(null));
        let v2 = settings("v2", json!(null));
        let mut s = RolloutState::default();
        s.on_commit(&v1, &v2);
        s.apply(&Transition::Pause("stuck".into()), &v2);
        assert_eq!(s.paused, Some(Pause::Failed("stuck".into())));
        let stored = serde_json::to_value(&s).unwrap();
        assert_eq!(
            stored["Paused"], "rollout failed: stuck",
            "stored as before"
        );
        assert_eq!(serde_json::from_value::<RolloutState>(stored).unwrap(), s);
        s.paused = None;
        s.apply(
            &Transition::Rollback {
                why: "stuck".into(),
                to: Box::new(v1.clone()),
            },
            &v2,
        );
        assert_eq!(
            (s.phase, s.reason.as_str()),
            (Phase::RollingBack, "rolled back: stuck")
        );
        assert_eq!(
            s.previous.as_ref(),
            Some(&v2.spec),
            "undo goes forward again"
        );
        s.apply(&Transition::Complete, &v1);
        assert_eq!(s.phase, Phase::RolledBack);
        s.phase = Phase::Progressing;
        s.apply(&Transition::Complete, &v1);
        assert_eq!(s.phase, Phase::Complete);
    }
}
