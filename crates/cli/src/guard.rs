//! Commits that would destroy much of a group need `--force`: scaling a group to 0, or
//! destroying more than half of its current instances. Replacing instances one by one in a
//! rolling update is not destruction (the configuration is not compared, only the allocation).

use std::collections::HashSet;

use anyhow::Result;

use infrakit_spi::{Allocation, Description, Group, GroupProperties, GroupSpec};

/// What a commit would destroy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destruction {
    /// The group.
    pub id: String,
    /// How many instances it has now.
    pub current: usize,
    /// How many the commit would destroy.
    pub destroyed: usize,
    /// How many instances the new allocation asks for.
    pub desired: usize,
    /// For pets: the logical IDs of members that are no longer allocated.
    pub released: Vec<String>,
}

impl Destruction {
    fn what(&self) -> String {
        if self.desired == 0 {
            format!(
                "it would scale {} to 0 and destroy all {} of its instances",
                self.id, self.current
            )
        } else if !self.released.is_empty() {
            format!(
                "it would destroy {} of the {} instances of {} (no longer allocated: {})",
                self.destroyed,
                self.current,
                self.id,
                self.released.join(", ")
            )
        } else {
            format!(
                "it would destroy {} of the {} instances of {} (size {} -> {})",
                self.destroyed, self.current, self.id, self.current, self.desired
            )
        }
    }

    /// The error of a refused commit (one line, naming `--force`).
    pub fn refusal(&self) -> String {
        format!(
            "refusing to commit {}: {}. Nothing was changed; use --force to commit it anyway",
            self.id,
            self.what()
        )
    }

    /// The warning of a pretend commit.
    pub fn warning(&self) -> String {
        format!("warning: {}; committing it needs --force", self.what())
    }
}

/// What committing `new` over a group whose members are `current` would destroy, if that is
/// too much (scale to 0, or more than half of the members).
pub fn assess(id: &str, current: &[Description], new: &Allocation) -> Option<Destruction> {
    let n = current.len();
    if n == 0 {
        return None;
    }
    let (destroyed, released) = if new.is_pets() {
        let wanted: HashSet<&str> = new
            .logical_ids
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let released: Vec<String> = current
            .iter()
            .filter(|d| d.logical_id().is_none_or(|l| !wanted.contains(l)))
            .map(|d| d.logical_id().unwrap_or(&d.id).to_string())
            .collect();
        (released.len(), released)
    } else {
        (n.saturating_sub(new.size as usize), Vec::new())
    };
    let desired = new.desired();
    (desired == 0 || destroyed * 2 > n).then(|| Destruction {
        id: id.to_string(),
        current: n,
        destroyed,
        desired,
        released,
    })
}

/// What committing `spec` through `group` would destroy, if too much. A group that is not
/// managed yet, or a spec that does not parse (the commit reports that), destroys nothing.
pub async fn assess_commit(group: &dyn Group, spec: &GroupSpec) -> Result<Option<Destruction>> {
    let Ok(props) = GroupProperties::parse(spec) else {
        return Ok(None);
    };
    let managed = group.inspect_groups().await?;
    if !managed.iter().any(|s| s.id == spec.id) {
        return Ok(None);
    }
    let d = group.describe_group(&spec.id).await?;
    Ok(assess(&spec.id, &d.instances, &props.allocation))
}

/// Fails with [`Destruction::refusal`] when committing `spec` would destroy too much and
/// `force` is not set. Call it before committing; it changes nothing.
pub async fn refuse_destructive(group: &dyn Group, spec: &GroupSpec, force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    match assess_commit(group, spec).await? {
        Some(d) => anyhow::bail!(d.refusal()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infrakit_spi::Tags;

    fn cattle(n: usize) -> Vec<Description> {
        (0..n)
            .map(|i| Description {
                id: format!("i-{i}"),
                logical_id: None,
                tags: Tags::new(),
                properties: None,
                created: None,
            })
            .collect()
    }

    fn pets(ids: &[&str]) -> Vec<Description> {
        ids.iter()
            .map(|l| Description {
                id: format!("i-{l}"),
                logical_id: Some(l.to_string()),
                tags: Tags::new(),
                properties: None,
                created: None,
            })
            .collect()
    }

    #[test]
    fn scaling_to_zero_is_destructive() {
        let d = assess("web", &cattle(3), &Allocation::size(0)).unwrap();
        assert_eq!((d.current, d.destroyed, d.desired), (3, 3, 0));
        assert!(d.refusal().contains("scale web to 0"), "{}", d.refusal());
        assert!(d.refusal().contains("--force"));
        assert!(assess("web", &cattle(1), &Allocation::size(0)).is_some());
    }

    #[test]
    fn destroying_more_than_half_is_destructive() {
        let d = assess("web", &cattle(5), &Allocation::size(2)).unwrap();
        assert_eq!(d.destroyed, 3);
        assert!(
            d.refusal()
                .contains("destroy 3 of the 5 instances of web (size 5 -> 2)"),
            "{}",
            d.refusal()
        );
        assert!(
            assess("web", &cattle(4), &Allocation::size(2)).is_none(),
            "half is fine"
        );
        assert!(assess("web", &cattle(3), &Allocation::size(2)).is_none());
    }

    #[test]
    fn growing_keeping_or_new_groups_are_fine() {
        assert!(assess("web", &cattle(3), &Allocation::size(3)).is_none());
        assert!(assess("web", &cattle(3), &Allocation::size(10)).is_none());
        assert!(assess("web", &[], &Allocation::size(0)).is_none());
    }

    #[test]
    fn pets_count_the_logical_ids_released() {
        let d = assess("db", &pets(&["a", "b", "c"]), &Allocation::pets(&["a"])).unwrap();
        assert_eq!(d.released, vec!["b".to_string(), "c".to_string()]);
        assert!(
            d.refusal().contains("no longer allocated: b, c"),
            "{}",
            d.refusal()
        );
        // The same logical IDs in another order, or one replaced: not destructive.
        assert!(assess(
            "db",
            &pets(&["a", "b", "c"]),
            &Allocation::pets(&["c", "b", "a"])
        )
        .is_none());
        assert!(assess(
            "db",
            &pets(&["a", "b", "c"]),
            &Allocation::pets(&["a", "b", "d"])
        )
        .is_none());
        // Cattle members are all released when the group turns into pets.
        assert!(assess("db", &cattle(2), &Allocation::pets(&["a", "b"])).is_some());
    }
}
