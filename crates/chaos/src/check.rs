//! The checks made once the faults stop: the group converges within a bound, and no spec or
//! rollout state was lost.

use std::time::Duration;

use serde_json::Value;

use infrakit_spi::{Group, GroupDescription, GroupSpec};
use infrakit_testkit::eventually;

/// Waits until group `id` has converged at `size` instances, all on the current configuration,
/// failing the test after `within`. Returns the last description.
pub async fn converged(
    group: &dyn Group,
    id: &str,
    size: usize,
    within: Duration,
) -> GroupDescription {
    eventually(
        &format!("group {id} converged at {size} instances on its current configuration"),
        within,
        || async {
            let d = group.describe_group(id).await.ok()?;
            let hash = d.status.as_ref()?.config_hash.clone();
            let current = d
                .instances
                .iter()
                .all(|i| i.config_hash() == Some(hash.as_str()));
            (d.converged && d.instances.len() == size && current).then_some(d)
        },
    )
    .await
}

/// The differences between what `InspectGroups` answers and the specs last committed (as
/// violations: a spec lost, changed or resurrected).
pub async fn specs_kept(group: &dyn Group, committed: &[GroupSpec]) -> Vec<String> {
    let inspected = match group.inspect_groups().await {
        Ok(s) => s,
        Err(e) => return vec![format!("InspectGroups failed: {e}")],
    };
    let mut out = Vec::new();
    for want in committed {
        match inspected.iter().find(|s| s.id == want.id) {
            None => out.push(format!("group {} was lost", want.id)),
            Some(have) if have != want => out.push(format!(
                "group {} changed: committed {}, inspected {}",
                want.id,
                serde_json::to_string(&want.properties).unwrap_or_default(),
                serde_json::to_string(&have.properties).unwrap_or_default()
            )),
            Some(_) => {}
        }
    }
    for have in &inspected {
        if !committed.iter().any(|s| s.id == have.id) {
            out.push(format!(
                "group {} is managed but was never committed",
                have.id
            ));
        }
    }
    out
}

/// The differences between a stored group record (`{"Spec": ..., "Rollout": ...}`) and what it
/// should hold once the group has converged: the spec last committed, the rollout in one of
/// `phases`, and no provision still recorded as in flight.
pub fn record_kept(record: &Value, committed: &GroupSpec, phases: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let want = serde_json::to_value(committed).unwrap_or_default();
    if record.get("Spec") != Some(&want) {
        out.push(format!(
            "the stored spec of {} is {}, not the committed {}",
            committed.id,
            record.get("Spec").cloned().unwrap_or_default(),
            want
        ));
    }
    let rollout = record.get("Rollout").cloned().unwrap_or_default();
    let phase = rollout
        .get("Phase")
        .and_then(Value::as_str)
        .unwrap_or("none");
    if !phases.contains(&phase) {
        out.push(format!(
            "the stored rollout of {} is '{phase}', expected one of {phases:?}",
            committed.id
        ));
    }
    if rollout.get("Paused").is_some_and(|p| !p.is_null()) {
        out.push(format!(
            "the stored rollout of {} is paused: {}",
            committed.id, rollout["Paused"]
        ));
    }
    if let Some(p) = rollout
        .get("Pending")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
    {
        out.push(format!(
            "the stored record of {} still lists {} provision(s) in flight",
            committed.id,
            p.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(size: u64) -> GroupSpec {
        GroupSpec {
            id: "g".into(),
            properties: json!({"Allocation": {"Size": size}}),
        }
    }

    #[test]
    fn a_record_must_hold_the_committed_spec_and_a_settled_rollout() {
        let ok = json!({"Spec": spec(3), "Rollout": {"Phase": "complete", "Pending": []}});
        assert!(record_kept(&ok, &spec(3), &["complete"]).is_empty());
        assert_eq!(record_kept(&ok, &spec(4), &["complete"]).len(), 1);
        assert_eq!(record_kept(&ok, &spec(3), &["none"]).len(), 1);
        let pending = json!({"Spec": spec(3), "Rollout": {"Phase": "none", "Pending": [{"Token": "t"}], "Paused": "x"}});
        assert_eq!(record_kept(&pending, &spec(3), &["none"]).len(), 2);
        let bare = json!({"Spec": spec(3)});
        assert!(record_kept(&bare, &spec(3), &["none"]).is_empty());
    }
}
