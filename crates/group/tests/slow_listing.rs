//! An instance plugin that stops answering `DescribeInstances` in time (a throttled cloud API, a
//! slow backend): `DescribeGroup` still answers, with what the controller last observed and a
//! message saying so, and nothing is destroyed meanwhile.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use infrakit_flavor_vanilla::VanillaFlavor;
use infrakit_group::{ControllerConfig, GroupPlugin};
use infrakit_instance_simulator::{Simulator, SimulatorConfig};
use infrakit_rpc::Plugins;
use infrakit_spi::{Description, DestroyContext, Group, Instance, Result, Spec, Tags};
use infrakit_testkit::group::{self, ids};

const WITHIN: Duration = Duration::from_secs(30);

/// The simulator, listing after `delay_ms`; counts destroys.
struct Slow {
    inner: Arc<Simulator>,
    delay_ms: AtomicU64,
    destroyed: AtomicUsize,
}

#[async_trait]
impl Instance for Slow {
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
        self.destroyed.fetch_add(1, Ordering::SeqCst);
        self.inner.destroy(id, context).await
    }
    async fn describe_instances(&self, tags: &Tags, properties: bool) -> Result<Vec<Description>> {
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.inner.describe_instances(tags, properties).await
    }
}

#[tokio::test]
async fn a_slow_listing_is_described_from_the_last_observation() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = Arc::new(Plugins::new(tmp.path()));
    let slow = Arc::new(Slow {
        inner: Arc::new(Simulator::new(SimulatorConfig::default())),
        delay_ms: AtomicU64::new(0),
        destroyed: AtomicUsize::new(0),
    });
    plugins.register_instance("slow", slow.clone());
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
                .instance("slow", Value::Null)
                .flavor("flavor-vanilla", Value::Null)
                .build(),
            false,
        )
        .await
        .unwrap();
    let before = ids(&group::converged(&group, "web", 3, WITHIN).await);

    // From now on a listing takes ten minutes.
    slow.delay_ms.store(600_000, Ordering::SeqCst);
    let d = tokio::time::timeout(Duration::from_secs(15), group.describe_group("web"))
        .await
        .expect("DescribeGroup answers although the plugin does not list")
        .unwrap();
    assert_eq!(ids(&d), before, "the instances the last pass observed");
    let message = &d.status.as_ref().unwrap().message;
    assert!(
        message.contains("instance plugin 'slow' did not list within 5s")
            && message.contains("instances as observed"),
        "{message}"
    );
    assert_eq!(
        slow.destroyed.load(Ordering::SeqCst),
        0,
        "nothing destroyed"
    );
}
