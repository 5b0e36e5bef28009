//! An instance plugin whose `Provision` creates the instance and then reports failure (a
//! backend that times out after doing the work): the group adopts what appears instead of
//! creating more, never holds more than desired + MaxSurge once an observation has listed what
//! the plugin made, destroys nothing healthy, and says in its status what the plugin did.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use infrakit_flavor_vanilla::VanillaFlavor;
use infrakit_group::{ControllerConfig, GroupPlugin};
use infrakit_instance_simulator::{Simulator, SimulatorConfig};
use infrakit_rpc::Plugins;
use infrakit_spi::{Description, DestroyContext, Error, Group, Instance, Result, Spec, Tags};
use infrakit_store::{MemoryStore, Store};
use infrakit_testkit::group::{self, ids};
use infrakit_testkit::until;

const WITHIN: Duration = Duration::from_secs(30);

/// The simulator, but every provision (while `lying`) reports a timeout after creating the
/// instance. Records the most instances it ever held and what was destroyed.
struct Lying {
    inner: Arc<Simulator>,
    lying: AtomicBool,
    provisions: AtomicUsize,
    peak: AtomicUsize,
    destroyed: Mutex<Vec<String>>,
}

impl Lying {
    async fn held(&self) -> usize {
        self.inner
            .describe_instances(&Tags::default(), false)
            .await
            .unwrap()
            .len()
    }
}

#[async_trait]
impl Instance for Lying {
    async fn validate(&self, p: &Value) -> Result<()> {
        self.inner.validate(p).await
    }
    async fn provision(&self, spec: Spec) -> Result<String> {
        self.provisions.fetch_add(1, Ordering::SeqCst);
        let id = self.inner.provision(spec).await?;
        self.peak.fetch_max(self.held().await, Ordering::SeqCst);
        if self.lying.load(Ordering::SeqCst) {
            return Err(Error::plugin(format!(
                "timed out waiting for the API (it went on to create {id})"
            )));
        }
        Ok(id)
    }
    async fn label(&self, id: &str, labels: &Tags) -> Result<()> {
        self.inner.label(id, labels).await
    }
    async fn destroy(&self, id: &str, context: &DestroyContext) -> Result<()> {
        self.destroyed.lock().unwrap().push(id.to_string());
        self.inner.destroy(id, context).await
    }
    async fn describe_instances(&self, tags: &Tags, properties: bool) -> Result<Vec<Description>> {
        self.inner.describe_instances(tags, properties).await
    }
}

/// A group plugin with a store, as a manager runs one: its provisions carry tokens, which is
/// how an instance is traced to a provision the plugin said failed.
async fn setup() -> (tempfile::TempDir, GroupPlugin, Arc<Lying>) {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = Arc::new(Plugins::new(tmp.path()));
    let lying = Arc::new(Lying {
        inner: Arc::new(Simulator::new(SimulatorConfig::default())),
        lying: AtomicBool::new(true),
        provisions: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        destroyed: Mutex::new(Vec::new()),
    });
    plugins.register_instance("lying", lying.clone());
    plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
    let config = ControllerConfig {
        poll_interval: Duration::from_millis(20),
        resync_interval: Duration::ZERO,
        ..ControllerConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let group = GroupPlugin::with_store(plugins, config, store)
        .await
        .unwrap();
    (tmp, group, lying)
}

fn passes(g: &GroupPlugin) -> u64 {
    g.telemetry()
        .metrics
        .group_sample("infrakit_reconcile_duration_seconds_count", "web")
        .unwrap_or(0)
}

fn spec(size: usize, version: &str) -> infrakit_spi::GroupSpec {
    group::spec("web")
        .size(size)
        .instance("lying", json!({"Version": version}))
        .flavor("flavor-vanilla", Value::Null)
        .with(json!({"Updating": {"MaxSurge": 1, "MaxUnavailable": 0}}))
        .build()
}

#[tokio::test]
async fn instances_created_by_failed_provisions_are_adopted_not_duplicated() {
    let (_tmp, group, lying) = setup().await;
    group.commit_group(spec(5, "v1"), false).await.unwrap();
    let members = ids(&group::converged(&group, "web", 5, WITHIN).await);

    // Many passes later: the five the failed provisions made, no more, nothing destroyed.
    let from = passes(&group);
    until("20 more passes", WITHIN, || async {
        passes(&group) >= from + 20
    })
    .await;
    let d = group.describe_group("web").await.unwrap();
    assert_eq!(ids(&d), members);
    let said = d.status.unwrap().message;
    assert!(
        said.contains("instance plugin 'lying' said 5 provision(s) failed that created their instance anyway (adopted)"),
        "the status says what the plugin did: {said}"
    );
    assert_eq!(lying.held().await, 5);
    assert_eq!(
        lying.provisions.load(Ordering::SeqCst),
        5,
        "a failed provision whose instance appeared is not retried"
    );
    assert_eq!(lying.peak.load(Ordering::SeqCst), 5);
    assert!(lying.destroyed.lock().unwrap().is_empty());
    let events = group.telemetry().events.recent();
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("timed out waiting for the API")),
        "the plugin's failure is reported"
    );
}

#[tokio::test]
async fn a_rollout_on_a_plugin_that_lies_stays_within_its_surge() {
    let (_tmp, group, lying) = setup().await;
    lying.lying.store(false, Ordering::SeqCst);
    group.commit_group(spec(5, "v1"), false).await.unwrap();
    let old = ids(&group::converged(&group, "web", 5, WITHIN).await);

    // From now on every provision creates and reports failure; the rollout must still finish
    // (adopting each replacement as it appears) without ever holding more than 5 + 1.
    lying.lying.store(true, Ordering::SeqCst);
    lying.peak.store(0, Ordering::SeqCst);
    let before = lying.provisions.load(Ordering::SeqCst);
    group.commit_group(spec(5, "v2"), false).await.unwrap();
    group::converged_where(&group, "web", 5, WITHIN, "all replaced", |d| {
        ids(d).is_disjoint(&old)
    })
    .await;
    assert!(
        lying.peak.load(Ordering::SeqCst) <= 6,
        "held {} instances with desired 5 and MaxSurge 1",
        lying.peak.load(Ordering::SeqCst)
    );
    assert_eq!(lying.held().await, 5);
    assert_eq!(
        lying.provisions.load(Ordering::SeqCst) - before,
        5,
        "one provision per replacement"
    );
    // Only the old instances were destroyed.
    let destroyed: std::collections::BTreeSet<String> =
        lying.destroyed.lock().unwrap().iter().cloned().collect();
    assert_eq!(destroyed, old);
}
