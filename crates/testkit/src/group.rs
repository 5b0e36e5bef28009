//! Groups in tests: a spec for an instance and flavor plugin pair, and waits until
//! `DescribeGroup` says a group has converged, polled with a deadline.
//!
//! ```no_run
//! # use std::time::Duration;
//! # use serde_json::json;
//! # use infrakit_spi::Group;
//! use infrakit_testkit::group;
//! # async fn example(plugin: &dyn Group) {
//! let spec = group::spec("web")
//!     .size(3)
//!     .instance("instance-file", json!({"Note": "v1"}))
//!     .flavor("flavor-vanilla", json!({"Init": ["echo hello"]}))
//!     .build();
//! plugin.commit_group(spec, false).await.unwrap();
//! let d = group::converged(plugin, "web", 3, Duration::from_secs(30)).await;
//! # }
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use infrakit_spi::{Group, GroupDescription, GroupSpec};
use serde_json::{json, Map, Value};

use crate::wait::eventually;

/// A group spec under construction; see [`spec`].
#[derive(Debug, Clone)]
#[must_use = "build() makes the spec"]
pub struct SpecBuilder {
    id: String,
    properties: Map<String, Value>,
}

/// A spec for group `id`, with no properties yet.
pub fn spec(id: &str) -> SpecBuilder {
    SpecBuilder {
        id: id.to_string(),
        properties: Map::new(),
    }
}

/// `{"Plugin": plugin, "Properties": properties}`, without `Properties` when they are null.
fn plugin_ref(plugin: &str, properties: Value) -> Value {
    if properties.is_null() {
        json!({"Plugin": plugin})
    } else {
        json!({"Plugin": plugin, "Properties": properties})
    }
}

impl SpecBuilder {
    /// `Allocation`, as given: `{"Size": 3}` or `{"LogicalIDs": [...]}`.
    pub fn allocation(mut self, allocation: Value) -> Self {
        self.properties.insert("Allocation".into(), allocation);
        self
    }

    /// `Allocation` of `n` cattle.
    pub fn size(self, n: usize) -> Self {
        self.allocation(json!({"Size": n}))
    }

    /// `Allocation` of pets with these logical IDs.
    pub fn logical_ids<S: AsRef<str>>(self, ids: &[S]) -> Self {
        let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
        self.allocation(json!({"LogicalIDs": ids}))
    }

    /// `Instance`: the instance plugin and its properties (left out when null).
    pub fn instance(mut self, plugin: &str, properties: Value) -> Self {
        self.properties
            .insert("Instance".into(), plugin_ref(plugin, properties));
        self
    }

    /// `Flavor`: the flavor plugin and its properties (left out when null).
    pub fn flavor(mut self, plugin: &str, properties: Value) -> Self {
        self.properties
            .insert("Flavor".into(), plugin_ref(plugin, properties));
        self
    }

    /// Further group properties (`Updating`, `Health`, ...) from a JSON object, replacing any
    /// set before under the same key. Null adds nothing.
    pub fn with(mut self, extra: Value) -> Self {
        match extra {
            Value::Null => {}
            Value::Object(extra) => self.properties.extend(extra),
            other => panic!("group properties to add must be an object, not {other}"),
        }
        self
    }

    /// The spec.
    pub fn build(self) -> GroupSpec {
        GroupSpec {
            id: self.id,
            properties: Value::Object(self.properties),
        }
    }
}

impl From<SpecBuilder> for GroupSpec {
    fn from(b: SpecBuilder) -> GroupSpec {
        b.build()
    }
}

/// The IDs of a group's members.
pub fn ids(d: &GroupDescription) -> BTreeSet<String> {
    d.instances.iter().map(|i| i.id.clone()).collect()
}

/// The phase of the group's current or last rollout (`"complete"`, `"rolled back"`, ...), if it
/// had one.
pub fn rollout_phase(d: &GroupDescription) -> Option<&str> {
    d.status
        .as_ref()?
        .rollout
        .as_ref()
        .map(|r| r.phase.as_str())
}

/// Waits until `DescribeGroup` of `id` says converged with `n` members and returns that
/// description; fails the test after `within` (on tokio's clock, see
/// [`eventually`](crate::wait::eventually)). A failing describe counts as not yet.
pub async fn converged<G>(group: &G, id: &str, n: usize, within: Duration) -> GroupDescription
where
    G: Group + ?Sized,
{
    converged_where(group, id, n, within, "", |_| true).await
}

/// Like [`converged`], and `also` holds for the description (no member is one of those
/// replaced, every member's machine runs, ...); `what` says what `also` checks, for the
/// failure message.
pub async fn converged_where<G, F>(
    group: &G,
    id: &str,
    n: usize,
    within: Duration,
    what: &str,
    also: F,
) -> GroupDescription
where
    G: Group + ?Sized,
    F: Fn(&GroupDescription) -> bool,
{
    let message = if what.is_empty() {
        format!("{id} converged at {n}")
    } else {
        format!("{id} converged at {n}, {what}")
    };
    let also = &also;
    eventually(&message, within, || async move {
        let d = group.describe_group(id).await.ok()?;
        (d.converged && d.instances.len() == n && also(&d)).then_some(d)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Mutex;

    use async_trait::async_trait;
    use infrakit_spi::{Description, Error, Result};

    #[test]
    fn the_builder_writes_what_a_spec_by_hand_would() {
        let built = spec("web")
            .size(2)
            .instance("instance-file", json!({"Note": "v1"}))
            .flavor("flavor-vanilla", Value::Null)
            .with(json!({"Updating": {"MaxSurge": 1}}))
            .with(Value::Null)
            .build();
        assert_eq!(
            built,
            GroupSpec {
                id: "web".into(),
                properties: json!({
                    "Allocation": {"Size": 2},
                    "Instance": {"Plugin": "instance-file", "Properties": {"Note": "v1"}},
                    "Flavor": {"Plugin": "flavor-vanilla"},
                    "Updating": {"MaxSurge": 1},
                }),
            }
        );
        let pets: GroupSpec = spec("db").logical_ids(&["db1", "db2"]).into();
        assert_eq!(
            pets.properties,
            json!({"Allocation": {"LogicalIDs": ["db1", "db2"]}})
        );
        let replaced = spec("db")
            .size(1)
            .with(json!({"Allocation": {"Size": 2}}))
            .build();
        assert_eq!(replaced.properties, json!({"Allocation": {"Size": 2}}));
    }

    #[test]
    #[should_panic(expected = "must be an object")]
    fn extra_properties_are_an_object() {
        let _ = spec("web").with(json!(["Updating"]));
    }

    /// A group whose descriptions are scripted: each describe takes the next, and the last
    /// stays.
    struct Scripted(Mutex<Vec<Result<GroupDescription>>>);

    fn members(n: usize, converged: bool) -> Result<GroupDescription> {
        Ok(GroupDescription {
            instances: (0..n)
                .map(|i| Description {
                    id: format!("i-{i}"),
                    ..Description::default()
                })
                .collect(),
            converged,
            status: None,
        })
    }

    #[async_trait]
    impl Group for Scripted {
        async fn commit_group(&self, _: GroupSpec, _: bool) -> Result<String> {
            unimplemented!()
        }
        async fn free_group(&self, _: &str) -> Result<()> {
            unimplemented!()
        }
        async fn describe_group(&self, _: &str) -> Result<GroupDescription> {
            let mut script = self.0.lock().unwrap();
            if script.len() > 1 {
                script.remove(0)
            } else {
                script[0].clone()
            }
        }
        async fn destroy_group(&self, _: &str) -> Result<()> {
            unimplemented!()
        }
        async fn inspect_groups(&self) -> Result<Vec<GroupSpec>> {
            unimplemented!()
        }
        async fn destroy_instances(&self, _: &str, _: &[String]) -> Result<()> {
            unimplemented!()
        }
        async fn size(&self, _: &str) -> Result<usize> {
            unimplemented!()
        }
        async fn set_size(&self, _: &str, _: usize) -> Result<()> {
            unimplemented!()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn converged_waits_for_the_flag_the_count_and_the_extra_check() {
        let group = Scripted(Mutex::new(vec![
            Err(Error::plugin("not yet")),
            members(3, false),
            members(2, true),
            members(3, true),
        ]));
        let d = converged(&group, "web", 3, Duration::from_secs(1)).await;
        assert_eq!(
            ids(&d),
            BTreeSet::from(["i-0".into(), "i-1".into(), "i-2".into()])
        );

        let group = Scripted(Mutex::new(vec![members(1, true), members(2, true)]));
        let d = converged_where(&group, "web", 2, Duration::from_secs(1), "with i-1", |d| {
            ids(d).contains("i-1")
        })
        .await;
        assert_eq!(d.instances.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "not within 1s: web converged at 2, none of [\"i-0\"]")]
    async fn converged_fails_after_the_deadline_saying_what_it_waited_for() {
        let group = Scripted(Mutex::new(vec![members(2, true)]));
        converged_where(
            &group,
            "web",
            2,
            Duration::from_secs(1),
            "none of [\"i-0\"]",
            |d| !ids(d).contains("i-0"),
        )
        .await;
    }
}
