//! The controller with its plugins behind sockets, as deployed: what crosses the sockets once a
//! group is quiet (the observed cache and the health clock), the health extension on the wire,
//! and provisions in batches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use infrakit_flavor_vanilla::VanillaFlavor;
use infrakit_group::{ControllerConfig, GroupPlugin};
use infrakit_instance_simulator::{Simulator, SimulatorConfig};
use infrakit_rpc::{Client, FlavorClient, Handlers, PluginServer, Plugins};
use infrakit_spi::{
    Allocation, Description, DestroyContext, Flavor, Group, Health, HealthCadence, HealthChecks,
    Index, Instance, Publisher, Result, Spec, Tags,
};
use infrakit_testkit::group::{self, ids};
use infrakit_testkit::{eventually, until};

const WITHIN: Duration = Duration::from_secs(30);

/// A flavor that counts the instances it is asked about.
struct CountingFlavor {
    inner: VanillaFlavor,
    judged: AtomicUsize,
    /// `Flavor.Prepare` calls (one spec each) and `FlavorBatch.Prepare` calls.
    prepares: AtomicUsize,
    prepare_batches: AtomicUsize,
}

impl CountingFlavor {
    fn new() -> Self {
        CountingFlavor {
            inner: VanillaFlavor::new(),
            judged: AtomicUsize::new(0),
            prepares: AtomicUsize::new(0),
            prepare_batches: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl Flavor for CountingFlavor {
    async fn validate(&self, p: &Value, a: &Allocation) -> Result<()> {
        self.inner.validate(p, a).await
    }
    async fn prepare(&self, p: &Value, s: Spec, a: &Allocation, i: &Index) -> Result<Spec> {
        self.prepares.fetch_add(1, Ordering::SeqCst);
        self.inner.prepare(p, s, a, i).await
    }
    async fn prepare_many(
        &self,
        p: &Value,
        specs: Vec<(Spec, Index)>,
        a: &Allocation,
    ) -> Vec<Result<Spec>> {
        self.prepare_batches.fetch_add(1, Ordering::SeqCst);
        self.inner.prepare_many(p, specs, a).await
    }
    async fn healthy(&self, p: &Value, d: &Description) -> Result<Health> {
        self.judged.fetch_add(1, Ordering::SeqCst);
        self.inner.healthy(p, d).await
    }
    async fn drain(&self, p: &Value, d: &Description) -> Result<()> {
        self.inner.drain(p, d).await
    }
    async fn health_cadence(&self, p: &Value) -> Result<HealthCadence> {
        self.inner.health_cadence(p).await
    }
    async fn watch_health(
        &self,
        p: &Value,
        watch: &str,
        instances: &[&Description],
        lease: Duration,
    ) -> Result<bool> {
        self.inner.watch_health(p, watch, instances, lease).await
    }
}

impl Publisher for CountingFlavor {
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<infrakit_spi::Event> {
        self.inner.subscribe()
    }
}

/// An instance plugin that counts its listings.
struct CountingInstance {
    inner: Arc<Simulator>,
    listings: AtomicUsize,
    /// `Instance.Provision` calls (one spec each) and `InstanceBatch.Provision` calls.
    provisions: AtomicUsize,
    provision_batches: AtomicUsize,
}

impl CountingInstance {
    fn new(inner: Arc<Simulator>) -> Self {
        CountingInstance {
            inner,
            listings: AtomicUsize::new(0),
            provisions: AtomicUsize::new(0),
            provision_batches: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl Instance for CountingInstance {
    async fn validate(&self, p: &Value) -> Result<()> {
        self.inner.validate(p).await
    }
    async fn provision(&self, spec: Spec) -> Result<String> {
        self.provisions.fetch_add(1, Ordering::SeqCst);
        self.inner.provision(spec).await
    }
    async fn provision_many(&self, specs: Vec<Spec>, parallel: usize) -> Vec<Result<String>> {
        self.provision_batches.fetch_add(1, Ordering::SeqCst);
        self.inner.provision_many(specs, parallel).await
    }
    async fn label(&self, id: &str, labels: &Tags) -> Result<()> {
        self.inner.label(id, labels).await
    }
    async fn destroy(&self, id: &str, context: &DestroyContext) -> Result<()> {
        self.inner.destroy(id, context).await
    }
    async fn describe_instances(&self, tags: &Tags, properties: bool) -> Result<Vec<Description>> {
        self.listings.fetch_add(1, Ordering::SeqCst);
        self.inner.describe_instances(tags, properties).await
    }
}

/// Passes the controller ran for group `id`, from its metrics.
fn passes(group: &GroupPlugin, id: &str) -> u64 {
    group
        .telemetry()
        .metrics
        .group_sample("infrakit_reconcile_duration_seconds_count", id)
        .unwrap_or(0)
}

/// Waits for `n` more passes of group `id`.
async fn more_passes(group: &GroupPlugin, id: &str, n: u64) {
    let from = passes(group, id);
    until(&format!("{n} more passes"), WITHIN, || async {
        passes(group, id) >= from + n
    })
    .await;
}

#[tokio::test]
async fn a_quiet_group_is_neither_listed_nor_judged_again_and_a_change_is_seen_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    let sim = Arc::new(Simulator::new(SimulatorConfig::default()));
    let instances = Arc::new(CountingInstance::new(sim.clone()));
    let flavor = Arc::new(CountingFlavor::new());
    let _i = PluginServer::start(
        &dir,
        "instance-simulator",
        Handlers::new()
            .instance("", instances.clone())
            .publisher(sim.clone()),
    )
    .await
    .unwrap();
    let _f = PluginServer::start(
        &dir,
        "flavor-vanilla",
        Handlers::new().flavor("", flavor.clone()),
    )
    .await
    .unwrap();
    let config = ControllerConfig {
        poll_interval: Duration::from_millis(20),
        ..ControllerConfig::default()
    };
    let group = GroupPlugin::new(Arc::new(Plugins::new(&dir)), config);
    group
        .commit_group(
            group::spec("quiet")
                .size(20)
                .instance("instance-simulator", Value::Null)
                .flavor("flavor-vanilla", Value::Null)
                .with(json!({"Health": {"UnhealthyAfter": "100ms"}}))
                .build(),
            false,
        )
        .await
        .unwrap();
    let before = ids(&group::converged(&group, "quiet", 20, WITHIN).await);
    more_passes(&group, "quiet", 2).await;

    let listings = instances.listings.load(Ordering::SeqCst);
    let judged = flavor.judged.load(Ordering::SeqCst);
    more_passes(&group, "quiet", 25).await;
    assert_eq!(
        instances.listings.load(Ordering::SeqCst),
        listings,
        "no new listing while no event says something changed"
    );
    assert_eq!(
        flavor.judged.load(Ordering::SeqCst),
        judged,
        "no instance judged again: a flavor without a probe reads health off the description"
    );

    let victim = before.iter().next().unwrap().clone();
    sim.set_state(&victim, "stopped");
    let after = eventually("the stopped instance replaced", WITHIN, || async {
        let d = group.describe_group("quiet").await.ok()?;
        (d.converged && d.instances.len() == 20 && !ids(&d).contains(&victim)).then(|| ids(&d))
    })
    .await;
    assert_eq!(before.intersection(&after).count(), 19);
    let judged_again = flavor.judged.load(Ordering::SeqCst) - judged;
    assert!(
        (2..=4).contains(&judged_again),
        "only the changed instance and its replacement are judged, not all 20 (judged {judged_again})"
    );
    assert!(instances.listings.load(Ordering::SeqCst) > listings);
}

#[tokio::test]
async fn a_probing_flavor_pushes_changes_instead_of_being_asked_every_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    let sick = tmp.path().join("sick");
    std::fs::create_dir(&sick).unwrap();
    let sim = Arc::new(Simulator::new(SimulatorConfig::default()));
    let flavor = Arc::new(CountingFlavor::new());
    let _i = PluginServer::start(
        &dir,
        "instance-simulator",
        Handlers::new()
            .instance("", sim.clone())
            .publisher(sim.clone()),
    )
    .await
    .unwrap();
    let _f = PluginServer::start(
        &dir,
        "flavor-vanilla",
        Handlers::new()
            .flavor("", flavor.clone())
            .publisher(flavor.clone()),
    )
    .await
    .unwrap();
    let hello = Client::new("flavor-vanilla", _f.socket())
        .hello()
        .await
        .unwrap();
    assert!(hello.contains_key("FlavorHealth/0.2.0"), "{hello:?}");
    let config = ControllerConfig {
        poll_interval: Duration::from_millis(20),
        ..ControllerConfig::default()
    };
    let group = GroupPlugin::new(Arc::new(Plugins::new(&dir)), config);
    // Healthy unless a file named after the instance exists, probed every 100 ms.
    let probe = format!("test ! -e {}/{{{{ ID }}}}", sick.display());
    group
        .commit_group(
            group::spec("probed")
                .size(5)
                .instance("instance-simulator", Value::Null)
                .flavor(
                    "flavor-vanilla",
                    json!({"Health": {"Exec": ["sh", "-c", probe], "Interval": "100ms"}}),
                )
                .with(json!({"Health": {"UnhealthyAfter": "100ms"}}))
                .build(),
            false,
        )
        .await
        .unwrap();
    let before = ids(&group::converged(&group, "probed", 5, WITHIN).await);

    // Asked on the probe's clock, 10 passes (200 ms) would judge every instance at least once
    // more; with the flavor watching, nobody is judged while nothing changes.
    until("the flavor is no longer asked", WITHIN, || async {
        let judged = flavor.judged.load(Ordering::SeqCst);
        more_passes(&group, "probed", 10).await;
        flavor.judged.load(Ordering::SeqCst) == judged
    })
    .await;
    assert!(flavor.inner.watches() >= 1, "the flavor watches the group");

    let judged = flavor.judged.load(Ordering::SeqCst);
    let victim = before.iter().next().unwrap().clone();
    std::fs::write(sick.join(&victim), "").unwrap();
    let after = eventually("the sick instance replaced", WITHIN, || async {
        let d = group.describe_group("probed").await.ok()?;
        let healthy = d.status.as_ref()?.healthy;
        (d.instances.len() == 5 && healthy == 5 && !ids(&d).contains(&victim)).then(|| ids(&d))
    })
    .await;
    assert_eq!(before.intersection(&after).count(), 4);
    let judged_again = flavor.judged.load(Ordering::SeqCst) - judged;
    assert!(
        judged_again <= 3,
        "the flavor said the victim turned unhealthy; only its replacement was asked about \
         (judged {judged_again})"
    );
}

#[tokio::test]
async fn the_health_extension_is_advertised_and_judges_in_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let server = PluginServer::start(
        tmp.path(),
        "flavor-vanilla",
        Handlers::new().flavor("", Arc::new(VanillaFlavor::new())),
    )
    .await
    .unwrap();
    let client = Client::new("flavor-vanilla", server.socket());
    let hello = client.hello().await.unwrap();
    assert!(hello.contains_key("FlavorHealth/0.1.0"), "{hello:?}");
    assert!(
        hello.contains_key("Flavor/0.1.1"),
        "the original's versions stay"
    );

    let flavor = FlavorClient::new(client, "");
    let no_probe = flavor.health_checks(&Value::Null).await.unwrap();
    assert_eq!(
        no_probe,
        HealthChecks {
            cadence: HealthCadence::OnChange,
            batched: true
        }
    );
    let probe = json!({"Health": {"TCP": "127.0.0.1:1", "Interval": "7s"}});
    assert_eq!(
        flavor.health_cadence(&probe).await.unwrap(),
        HealthCadence::Every(Duration::from_secs(7))
    );

    let described = |id: &str, state: &str| Description {
        id: id.into(),
        properties: Some(json!({"State": state}).into()),
        ..Description::default()
    };
    let (a, b, c) = (
        described("a", "running"),
        described("b", "exited"),
        described("c", "running"),
    );
    let verdicts = flavor
        .healthy_many(&Value::Null, &[&a, &b, &c])
        .await
        .unwrap();
    assert_eq!(
        verdicts,
        vec![Health::Healthy, Health::Unhealthy, Health::Healthy],
        "one verdict per instance, in order"
    );
    for d in [&a, &b, &c] {
        let one = flavor.healthy(&Value::Null, d).await.unwrap();
        let many = flavor.healthy_many(&Value::Null, &[d]).await.unwrap();
        assert_eq!(vec![one], many, "the batch agrees with Flavor.Healthy");
    }
}

#[tokio::test]
async fn a_plugin_without_the_extension_is_asked_the_original_way() {
    let tmp = tempfile::tempdir().unwrap();
    // A server with no flavor at all answers every FlavorHealth call "can't find", as the
    // original's plugins do.
    let server = PluginServer::start(
        tmp.path(),
        "old",
        Handlers::new().instance("", Arc::new(Simulator::new(SimulatorConfig::default()))),
    )
    .await
    .unwrap();
    let flavor = FlavorClient::new(Client::new("old", server.socket()), "");
    assert_eq!(
        flavor.health_checks(&Value::Null).await.unwrap(),
        HealthChecks::default(),
        "every pass, one call per instance"
    );
}

#[tokio::test]
async fn provisions_cross_the_sockets_in_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    let sim = Arc::new(Simulator::new(SimulatorConfig::default()));
    let instances = Arc::new(CountingInstance::new(sim.clone()));
    let flavor = Arc::new(CountingFlavor::new());
    let _i = PluginServer::start(
        &dir,
        "instance-simulator",
        Handlers::new().instance("", instances.clone()),
    )
    .await
    .unwrap();
    let _f = PluginServer::start(
        &dir,
        "flavor-vanilla",
        Handlers::new().flavor("", flavor.clone()),
    )
    .await
    .unwrap();
    let hello = Client::new("instance-simulator", _i.socket())
        .hello()
        .await
        .unwrap();
    assert!(hello.contains_key("InstanceBatch/0.1.0"), "{hello:?}");
    let group = GroupPlugin::new(Arc::new(Plugins::new(&dir)), ControllerConfig::default());
    group
        .commit_group(
            group::spec("many")
                .size(2_500)
                .instance("instance-simulator", Value::Null)
                .flavor("flavor-vanilla", Value::Null)
                .build(),
            false,
        )
        .await
        .unwrap();
    let d = group::converged(&group, "many", 2_500, WITHIN).await;
    assert_eq!(ids(&d).len(), 2_500);
    // 2,500 = 1,000 + 1,000 + 500: three calls to each plugin, none per instance.
    assert_eq!(instances.provision_batches.load(Ordering::SeqCst), 3);
    assert_eq!(flavor.prepare_batches.load(Ordering::SeqCst), 3);
    assert_eq!(instances.provisions.load(Ordering::SeqCst), 0);
    assert_eq!(flavor.prepares.load(Ordering::SeqCst), 0);
    // Each instance carries what the flavor prepared and the group's tags.
    let held = sim
        .describe_instances(&Tags::default(), false)
        .await
        .unwrap();
    assert_eq!(held.len(), 2_500);
    assert!(held
        .iter()
        .all(|h| h.tags.get("infrakit.group") == Some("many")));
}
