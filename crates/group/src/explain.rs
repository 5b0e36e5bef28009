//! InfraKit's words for what a commit will do (`Group.CommitGroup`'s `Details`), e.g.
//! `Performing a rolling update on 5 instances, then adding 5 instances to increase the group
//! size to 10`. Pure functions of the old and new settings and the current members.

use std::collections::BTreeSet;

use crate::settings::Settings;

/// Details for a group that is not managed yet.
pub fn new_group(settings: &Settings) -> String {
    format!("Managing {} instances", settings.desired())
}

/// Details for a commit over an existing group. `member_hashes` holds the configuration hash
/// (if any) of every member instance; `member_logical_ids` their logical IDs.
pub fn update(old: &Settings, new: &Settings, member_hashes: &[Option<String>]) -> String {
    let undesired = member_hashes
        .iter()
        .filter(|h| h.as_deref() != Some(new.config_hash.as_str()))
        .count();
    let desired = member_hashes.len() - undesired;
    if new.is_pets() || old.is_pets() {
        return update_pets(old, new, undesired);
    }
    let old_size = old.desired() as i64;
    let new_size = new.desired() as i64;
    let change = new_size - old_size;
    match change {
        0 if undesired == 0 => "Noop".to_string(),
        0 => format!("Performing a rolling update on {undesired} instances"),
        c if c < 0 => {
            let roll = (new_size - desired as i64).max(0);
            if roll == 0 {
                format!("Terminating {} instances to reduce the group size to {new_size}", -c)
            } else {
                format!(
                    "Terminating {} instances to reduce the group size to {new_size}, then performing a rolling update on {roll} instances",
                    -c
                )
            }
        }
        c if undesired == 0 => {
            format!("Adding {c} instances to increase the group size to {new_size}")
        }
        c => format!(
            "Performing a rolling update on {undesired} instances, then adding {c} instances to increase the group size to {new_size}"
        ),
    }
}

fn ids(s: &Settings) -> BTreeSet<String> {
    s.props
        .allocation
        .logical_ids
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

fn update_pets(old: &Settings, new: &Settings, undesired: usize) -> String {
    let (before, after) = (ids(old), ids(new));
    let added: Vec<_> = after.difference(&before).cloned().collect();
    let removed: Vec<_> = before.difference(&after).cloned().collect();
    let mut parts = Vec::new();
    if undesired > 0 {
        parts.push(format!(
            "Performing a rolling update on {undesired} instances"
        ));
    }
    if !added.is_empty() {
        parts.push(format!("adding members {}", added.join(", ")));
    }
    if !removed.is_empty() {
        parts.push(format!("removing members {}", removed.join(", ")));
    }
    if parts.is_empty() {
        return "Noop".to_string();
    }
    let mut text = parts.join(", then ");
    if let Some(first) = text.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use infrakit_spi::GroupSpec;
    use serde_json::{json, Value};

    fn settings(alloc: Value, note: &str) -> Settings {
        Settings::parse(&GroupSpec {
            id: "cattle".into(),
            properties: json!({
                "Allocation": alloc,
                "Instance": {"Plugin": "instance-file", "Properties": {"Note": note}},
                "Flavor": {"Plugin": "flavor-vanilla"},
            }),
        })
        .unwrap()
    }

    fn hashes(s: &Settings, n: usize) -> Vec<Option<String>> {
        vec![Some(s.config_hash.clone()); n]
    }

    #[test]
    fn infrakit_sentences() {
        let v1 = settings(json!({"Size": 5}), "version 1.0");
        let v2_10 = settings(json!({"Size": 10}), "version 2.0");
        assert_eq!(
            update(&v1, &v2_10, &hashes(&v1, 5)),
            "Performing a rolling update on 5 instances, then adding 5 instances to increase the group size to 10"
        );
        assert_eq!(update(&v1, &v1, &hashes(&v1, 5)), "Noop");
        let v2_5 = settings(json!({"Size": 5}), "version 2.0");
        assert_eq!(
            update(&v1, &v2_5, &hashes(&v1, 5)),
            "Performing a rolling update on 5 instances"
        );
        let v1_10 = settings(json!({"Size": 10}), "version 1.0");
        assert_eq!(
            update(&v1, &v1_10, &hashes(&v1, 5)),
            "Adding 5 instances to increase the group size to 10"
        );
        let v1_3 = settings(json!({"Size": 3}), "version 1.0");
        assert_eq!(
            update(&v1, &v1_3, &hashes(&v1, 5)),
            "Terminating 2 instances to reduce the group size to 3"
        );
        let v2_3 = settings(json!({"Size": 3}), "version 2.0");
        assert_eq!(
            update(&v1, &v2_3, &hashes(&v1, 5)),
            "Terminating 2 instances to reduce the group size to 3, then performing a rolling update on 3 instances"
        );
        assert_eq!(new_group(&v1), "Managing 5 instances");
    }

    #[test]
    fn pets_name_added_and_removed_members() {
        let a = settings(json!({"LogicalIDs": ["a", "b"]}), "v1");
        let b = settings(json!({"LogicalIDs": ["b", "c"]}), "v1");
        assert_eq!(
            update(&a, &b, &hashes(&a, 2)),
            "Adding members c, then removing members a"
        );
        assert_eq!(update(&a, &a, &hashes(&a, 2)), "Noop");
    }
}
