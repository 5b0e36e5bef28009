//! An instance plugin that lists every instance twice and adds an instance of another group to
//! every listing: the group counts each of its instances once, never scales in a healthy one,
//! and never touches the other group's, not even when it is destroyed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use infrakit_flavor_vanilla::VanillaFlavor;
use infrakit_group::{ControllerConfig, GroupPlugin};
use infrakit_instance_simulator::{Simulator, SimulatorConfig};
use infrakit_rpc::Plugins;
use infrakit_spi::instance::GROUP_TAG;
use infrakit_spi::{Description, DestroyContext, Group, Instance, Result, Spec, Tags};
use infrakit_testkit::group::{self, ids};
use infrakit_testkit::until;

const WITHIN: Duration = Duration::from_secs(30);

/// Lists what the simulator has twice, plus one instance of group `other`; records destroys.
struct Confused {
    inner: Arc<Simulator>,
    destroyed: Mutex<Vec<String>>,
}

#[async_trait]
impl Instance for Confused {
    async fn validate(&self, p: &Value) -> Result<()> {
        self.inner.validate(p).await
    }
    async fn provision(&self, spec: Spec) -> Result<String> {
        self.inner.provision(spec).await
    }
    async fn label(&self, id: &str, labels: &Tags) -> Result<()> {
        self.inner.label(id, labels).await
    }
    async fn destroy(&self, id: &str, context: &DestroyContext) -> Result<()> {
        self.destroyed.lock().unwrap().push(id.to_string());
        self.inner.destroy(id, context).await
    }
    async fn describe_instances(&self, tags: &Tags, properties: bool) -> Result<Vec<Description>> {
        let mine = self.inner.describe_instances(tags, properties).await?;
        let mut out = mine.clone();
        out.extend(mine);
        out.push(Description {
            id: "someone-elses".into(),
            logical_id: None,
            tags: Tags::from_iter([(GROUP_TAG, "other")]),
            properties: None,
            created: None,
        });
        Ok(out)
    }
}

#[tokio::test]
async fn twice_listed_and_foreign_instances_are_neither_counted_nor_destroyed() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = Arc::new(Plugins::new(tmp.path()));
    let confused = Arc::new(Confused {
        inner: Arc::new(Simulator::new(SimulatorConfig::default())),
        destroyed: Mutex::new(Vec::new()),
    });
    plugins.register_instance("confused", confused.clone());
    plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
    let config = ControllerConfig {
        poll_interval: Duration::from_millis(20),
        resync_interval: Duration::ZERO,
        ..ControllerConfig::default()
    };
    let group = GroupPlugin::new(plugins, config);
    group
        .commit_group(
            group::spec("web")
                .size(3)
                .instance("confused", Value::Null)
                .flavor("flavor-vanilla", Value::Null)
                .build(),
            false,
        )
        .await
        .unwrap();
    let members = ids(&group::converged(&group, "web", 3, WITHIN).await);
    assert!(!members.contains("someone-elses"));

    // Many passes later: the same three, nothing destroyed, the simulator holds three.
    let passes = |g: &GroupPlugin| {
        g.telemetry()
            .metrics
            .group_sample("infrakit_reconcile_duration_seconds_count", "web")
            .unwrap_or(0)
    };
    let from = passes(&group);
    until("20 more passes", WITHIN, || async {
        passes(&group) >= from + 20
    })
    .await;
    let d = group.describe_group("web").await.unwrap();
    assert_eq!(ids(&d), members);
    let said = d.status.unwrap().message;
    assert!(
        said.contains(
            "instance plugin 'confused' misbehaves: 1 listed without the group's tags, 3 listed twice (ignored)"
        ),
        "the status says what the plugin did wrong: {said}"
    );
    assert!(confused.destroyed.lock().unwrap().is_empty());
    let held = confused
        .inner
        .describe_instances(&Tags::default(), false)
        .await
        .unwrap();
    assert_eq!(held.len(), 3);

    // Destroying the group destroys its three, once each, and not the other group's.
    group.destroy_group("web").await.unwrap();
    let mut destroyed = confused.destroyed.lock().unwrap().clone();
    destroyed.sort();
    assert_eq!(destroyed, members.into_iter().collect::<Vec<_>>());
}
