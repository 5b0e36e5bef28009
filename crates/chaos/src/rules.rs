//! The invariants as pure functions: given what was seen, is it a violation, and which?
//!
//! Nothing here does I/O; the [`crate::tap::Tap`] and the [`crate::sampler::Sampler`] gather
//! the facts and the [`crate::ledger::Ledger`] keeps the verdicts.

use infrakit_spi::Health;

/// `Destroy` reasons that may take a healthy instance: a rollout replacing it, a scale-in, or a
/// whole group destroyed on request.
pub const MAY_TAKE_HEALTHY: &[&str] = &["rolling_update", "scale_down", "terminate"];

/// How strict the destroy rule is at a given moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Policy {
    /// A healthy instance may be destroyed by a rollout or a scale-in only.
    #[default]
    RolloutOrScaleIn,
    /// No healthy instance may be destroyed at all (e.g. while health checks hang: the
    /// controller cannot know whom it is replacing).
    NothingHealthy,
}

/// What the tap knew about an instance when the controller asked to destroy it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    /// The instance was listed and the judging flavor answered.
    Listed(Health),
    /// The instance was not listed any more (already gone: destroying it changes nothing).
    Absent,
    /// The truth could not be established (the plugin or the judge did not answer).
    Unknown(String),
}

/// The verdict on one `Destroy`: `Some(why)` when it breaks the invariant under `policy`.
pub fn destroy_violation(
    id: &str,
    reason: &str,
    judged: &Judged,
    policy: Policy,
) -> Option<String> {
    let Judged::Listed(Health::Healthy) = judged else {
        return None;
    };
    match policy {
        Policy::RolloutOrScaleIn if MAY_TAKE_HEALTHY.contains(&reason) => None,
        Policy::RolloutOrScaleIn => Some(format!(
            "destroyed healthy instance {id} for '{reason}' (only a rollout or a scale-in may)"
        )),
        Policy::NothingHealthy => Some(format!(
            "destroyed healthy instance {id} for '{reason}' while no healthy instance may go"
        )),
    }
}

/// The verdict on one count of instances: `Some(why)` when `count` exceeds `limit`.
pub fn count_violation(count: usize, limit: usize, source: &str) -> Option<String> {
    (count > limit).then(|| format!("{source} saw {count} instances, above the limit of {limit}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_instances_go_only_in_rollouts_and_scale_in() {
        let healthy = Judged::Listed(Health::Healthy);
        for reason in MAY_TAKE_HEALTHY {
            assert_eq!(
                destroy_violation("i", reason, &healthy, Policy::RolloutOrScaleIn),
                None
            );
        }
        for reason in ["unhealthy", "duplicate", "not_in_allocation", ""] {
            let v = destroy_violation("i-1", reason, &healthy, Policy::RolloutOrScaleIn);
            assert!(v.unwrap().contains("i-1"), "{reason}");
        }
    }

    #[test]
    fn unhealthy_unknown_and_absent_instances_may_always_go() {
        for judged in [
            Judged::Listed(Health::Unhealthy),
            Judged::Listed(Health::Unknown),
            Judged::Absent,
            Judged::Unknown("plugin down".into()),
        ] {
            for policy in [Policy::RolloutOrScaleIn, Policy::NothingHealthy] {
                assert_eq!(destroy_violation("i", "unhealthy", &judged, policy), None);
            }
        }
    }

    #[test]
    fn the_strict_policy_spares_every_healthy_instance() {
        let healthy = Judged::Listed(Health::Healthy);
        let v = destroy_violation("i", "rolling_update", &healthy, Policy::NothingHealthy);
        assert!(v.unwrap().contains("no healthy instance may go"));
    }

    #[test]
    fn counts_above_the_limit_are_violations() {
        assert_eq!(count_violation(7, 7, "listing"), None);
        assert_eq!(count_violation(0, 0, "listing"), None);
        assert_eq!(
            count_violation(8, 7, "listing").as_deref(),
            Some("listing saw 8 instances, above the limit of 7")
        );
    }
}
