//! Health-driven healing and rollouts, on simulated instances under paused time: timers are
//! exercised exactly, without waiting for them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::time::Instant;

use infrakit_flavor_vanilla::VanillaFlavor;
use infrakit_group::{ControllerConfig, GroupPlugin};
use infrakit_instance_simulator::{Simulator, SimulatorConfig};
use infrakit_rpc::Plugins;
use infrakit_spi::event::Publisher;
use infrakit_spi::group::RolloutAction;
use infrakit_spi::{
    Description, DestroyContext, Group, GroupDescription, GroupSpec, Instance, Result, Spec, Tags,
};
use infrakit_store::{MemoryStore, Store};
use infrakit_testkit::eventually as wait_for;
use infrakit_testkit::group::{self, ids};
use infrakit_testkit::tags;

/// The simulator behind knobs the tests turn. It records the group's size and healthy count at
/// every `DescribeInstances` (that is, at every reconcile), can refuse to list anything (`down`),
/// can hide instances for `lag` after creating them (like clouds whose listings lag), and keeps
/// the instances it created.
struct Observed {
    sim: Arc<Simulator>,
    samples: Mutex<Vec<(usize, usize)>>,
    down: AtomicBool,
    lag: Duration,
    created: Mutex<Vec<(String, Instant)>>,
}

impl Observed {
    fn new(sim: Arc<Simulator>, lag: Duration) -> Arc<Observed> {
        Arc::new(Observed {
            sim,
            samples: Mutex::new(Vec::new()),
            down: AtomicBool::new(false),
            lag,
            created: Mutex::new(Vec::new()),
        })
    }

    /// How many instances were provisioned through this plugin.
    fn provisions(&self) -> usize {
        self.created.lock().unwrap().len()
    }
}

#[async_trait]
impl Instance for Observed {
    async fn validate(&self, p: &Value) -> Result<()> {
        self.sim.validate(p).await
    }
    async fn provision(&self, spec: Spec) -> Result<String> {
        let id = self.sim.provision(spec).await?;
        self.created
            .lock()
            .unwrap()
            .push((id.clone(), Instant::now()));
        Ok(id)
    }
    async fn label(&self, id: &str, labels: &Tags) -> Result<()> {
        self.sim.label(id, labels).await
    }
    async fn destroy(&self, id: &str, ctx: &DestroyContext) -> Result<()> {
        self.sim.destroy(id, ctx).await
    }
    async fn describe_instances(&self, tags: &Tags, properties: bool) -> Result<Vec<Description>> {
        if self.down.load(Ordering::SeqCst) {
            return Err(infrakit_spi::Error::plugin("connection refused"));
        }
        let hidden: Vec<String> = self
            .created
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, at)| at.elapsed() < self.lag)
            .map(|(id, _)| id.clone())
            .collect();
        let list: Vec<Description> = self
            .sim
            .describe_instances(tags, true)
            .await?
            .into_iter()
            .filter(|d| !hidden.contains(&d.id))
            .collect();
        let healthy = list
            .iter()
            .filter(|d| {
                d.properties
                    .as_ref()
                    .is_some_and(|p| p.field::<String>("State").as_deref() == Some("running"))
            })
            .count();
        self.samples.lock().unwrap().push((list.len(), healthy));
        Ok(list
            .into_iter()
            .map(|mut d| {
                if !properties {
                    d.properties = None;
                }
                d
            })
            .collect())
    }
}

struct Fixture {
    sim: Arc<Simulator>,
    sampled: Arc<Observed>,
    group: GroupPlugin,
}

async fn fixture(store: Option<Arc<dyn Store>>) -> Fixture {
    let sim = Arc::new(Simulator::new(SimulatorConfig::default()));
    let sampled = Observed::new(sim.clone(), Duration::ZERO);
    let plugins = Arc::new(Plugins::new("/nonexistent/plugins"));
    plugins.register_instance("instance-simulator", sampled.clone());
    plugins.register_publisher("instance-simulator", sim.clone() as Arc<dyn Publisher>);
    plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
    let config = ControllerConfig {
        poll_interval: Duration::from_secs(1),
        ..ControllerConfig::default()
    };
    let group = match store {
        Some(s) => GroupPlugin::with_store(plugins, config, s).await.unwrap(),
        None => GroupPlugin::new(plugins, config),
    };
    Fixture {
        sim,
        sampled,
        group,
    }
}

/// Group `web` of `size` simulated instances at `version`, with `extra` group properties.
fn spec(size: usize, version: &str, extra: Value) -> GroupSpec {
    group::spec("web")
        .size(size)
        .instance("instance-simulator", json!({"Version": version}))
        .flavor("flavor-vanilla", Value::Null)
        .with(extra)
        .build()
}

async fn converged(group: &GroupPlugin, n: usize) -> GroupDescription {
    group::converged(group, "web", n, Duration::from_secs(120)).await
}

#[tokio::test(start_paused = true)]
async fn an_instance_unhealthy_for_unhealthy_after_is_replaced_and_healthy_ones_never() {
    let f = fixture(None).await;
    f.group
        .commit_group(
            spec(3, "v1", json!({"Health": {"UnhealthyAfter": "10s"}})),
            false,
        )
        .await
        .unwrap();
    let before = ids(&converged(&f.group, 3).await);
    let victim = before.iter().next().unwrap().clone();
    f.sim.set_state(&victim, "stopped");
    let t0 = Instant::now();
    let after = wait_for(
        "the victim is replaced",
        Duration::from_secs(60),
        || async {
            let d = f.group.describe_group("web").await.ok()?;
            (!ids(&d).contains(&victim) && d.converged).then(|| ids(&d))
        },
    )
    .await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(10),
        "replaced after {took:?}, before UnhealthyAfter"
    );
    assert!(
        took <= Duration::from_secs(13),
        "replaced after {took:?}: more than UnhealthyAfter plus a poll or two"
    );
    assert_eq!(after.len(), 3);
    assert_eq!(
        before.intersection(&after).count(),
        2,
        "healthy instances are never replaced"
    );
    // A long steady state replaces nothing.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(ids(&f.group.describe_group("web").await.unwrap()), after);
}

#[tokio::test(start_paused = true)]
async fn the_brake_holds_while_too_many_are_unhealthy_then_replaces_the_rest() {
    let f = fixture(None).await;
    let extra = json!({"Health": {"UnhealthyAfter": "10s", "MaxUnhealthy": "40%"}});
    f.group
        .commit_group(spec(10, "v1", extra), false)
        .await
        .unwrap();
    let before: Vec<String> = ids(&converged(&f.group, 10).await).into_iter().collect();
    for id in &before[..6] {
        f.sim.set_state(id, "stopped");
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    let d = f.group.describe_group("web").await.unwrap();
    assert_eq!(
        ids(&d),
        before.iter().cloned().collect(),
        "nothing replaced while 6 of 10 are unhealthy"
    );
    let message = d.status.unwrap().message;
    assert!(
        message.contains("remediation paused: 6 of 10 unhealthy"),
        "{message}"
    );

    for id in &before[..3] {
        f.sim.set_state(id, "running");
    }
    let after = wait_for(
        "the 3 still unhealthy are replaced",
        Duration::from_secs(30),
        || async {
            let d = f.group.describe_group("web").await.ok()?;
            let now = ids(&d);
            (d.converged && before[3..6].iter().all(|id| !now.contains(id))).then_some(now)
        },
    )
    .await;
    assert!(
        before[..3]
            .iter()
            .chain(&before[6..])
            .all(|id| after.contains(id)),
        "recovered and healthy ones stay"
    );
}

#[tokio::test(start_paused = true)]
async fn a_surge_rollout_never_drops_below_size_nor_exceeds_the_surge() {
    let f = fixture(None).await;
    let updating = json!({"Updating": {"MaxSurge": 2, "MaxUnavailable": 0}});
    f.group
        .commit_group(spec(10, "v1", updating.clone()), false)
        .await
        .unwrap();
    let v1 = ids(&converged(&f.group, 10).await);
    f.sampled.samples.lock().unwrap().clear();
    f.group
        .commit_group(spec(10, "v2", updating), false)
        .await
        .unwrap();
    let d = group::converged_where(
        &f.group,
        "web",
        10,
        Duration::from_secs(120),
        "all on v2",
        |d| ids(d).is_disjoint(&v1),
    )
    .await;
    assert_eq!(d.status.unwrap().rollout.unwrap().phase, "complete");
    let samples = f.sampled.samples.lock().unwrap().clone();
    assert!(
        samples.len() > 5,
        "sampled on every reconcile: {}",
        samples.len()
    );
    let min_healthy = samples.iter().map(|s| s.1).min().unwrap();
    let max_total = samples.iter().map(|s| s.0).max().unwrap();
    assert!(min_healthy >= 10, "healthy dropped to {min_healthy}");
    assert!(max_total <= 12, "{max_total} instances at once");
    assert_eq!(max_total, 12, "the surge of 2 was used");
}

#[tokio::test(start_paused = true)]
async fn a_rollout_that_never_becomes_healthy_is_rolled_back_within_the_deadline() {
    let f = fixture(None).await;
    f.group
        .commit_group(spec(10, "v1", json!({})), false)
        .await
        .unwrap();
    let v1 = ids(&converged(&f.group, 10).await);
    let v1_hash = f
        .group
        .describe_group("web")
        .await
        .unwrap()
        .status
        .unwrap()
        .config_hash;
    let mut bad = spec(
        10,
        "v2",
        json!({"Updating": {"ProgressDeadline": "30s", "OnFailure": "rollback"}}),
    );
    bad.properties["Instance"]["Properties"]["State"] = json!("dead");
    let t0 = Instant::now();
    f.group.commit_group(bad, false).await.unwrap();
    let d = wait_for(
        "back on v1, all healthy",
        Duration::from_secs(120),
        || async {
            let d = f.group.describe_group("web").await.ok()?;
            let st = d.status.clone()?;
            let all_v1 = d
                .instances
                .iter()
                .all(|i| i.config_hash() == Some(v1_hash.as_str()));
            (d.converged && all_v1 && st.healthy == 10 && st.config_hash == v1_hash).then_some(d)
        },
    )
    .await;
    let took = t0.elapsed();
    assert!(
        took <= Duration::from_secs(32),
        "rolled back after {took:?}; deadline 30s + one reconcile"
    );
    let rollout = d.status.clone().unwrap().rollout.unwrap();
    assert_eq!(rollout.phase, "rolled back");
    assert!(
        rollout.reason.contains("ProgressDeadline"),
        "{}",
        rollout.reason
    );
    assert_eq!(ids(&d), v1, "the healthy v1 instances were never touched");
}

#[tokio::test(start_paused = true)]
async fn a_partition_updates_that_many_and_holds_until_resumed() {
    let f = fixture(None).await;
    f.group
        .commit_group(spec(6, "v1", json!({})), false)
        .await
        .unwrap();
    converged(&f.group, 6).await;
    f.group
        .commit_group(spec(6, "v2", json!({"Updating": {"Partition": 2}})), false)
        .await
        .unwrap();
    let hash = |d: &GroupDescription| d.status.as_ref().unwrap().config_hash.clone();
    let held = wait_for("2 updated", Duration::from_secs(60), || async {
        let d = f.group.describe_group("web").await.ok()?;
        let h = hash(&d);
        let updated = d
            .instances
            .iter()
            .filter(|i| i.config_hash() == Some(h.as_str()))
            .count();
        (updated == 2 && d.instances.len() == 6).then_some(d)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(300)).await;
    let d = f.group.describe_group("web").await.unwrap();
    let h = hash(&d);
    assert_eq!(
        d.instances
            .iter()
            .filter(|i| i.config_hash() == Some(h.as_str()))
            .count(),
        2,
        "holds at the partition"
    );
    assert_eq!(ids(&d), ids(&held));
    let st = d.status.unwrap();
    assert!(st.message.contains("partition"), "{}", st.message);

    f.group.rollout("web", RolloutAction::Resume).await.unwrap();
    let d = wait_for("all updated", Duration::from_secs(60), || async {
        let d = f.group.describe_group("web").await.ok()?;
        let h = hash(&d);
        (d.converged
            && d.instances
                .iter()
                .all(|i| i.config_hash() == Some(h.as_str())))
        .then_some(d)
    })
    .await;
    assert_eq!(d.instances.len(), 6);
    assert_eq!(d.status.unwrap().rollout.unwrap().phase, "complete");
}

#[tokio::test(start_paused = true)]
async fn pause_stops_a_rollout_and_undo_goes_back() {
    let f = fixture(None).await;
    let slow = json!({"Updating": {"MinHealthyTime": "10s"}});
    f.group
        .commit_group(spec(4, "v1", slow.clone()), false)
        .await
        .unwrap();
    let v1 = ids(&converged(&f.group, 4).await);
    f.group
        .commit_group(spec(4, "v2", slow), false)
        .await
        .unwrap();
    wait_for("one replaced", Duration::from_secs(60), || async {
        let d = f.group.describe_group("web").await.ok()?;
        (v1.difference(&ids(&d)).count() >= 1).then_some(())
    })
    .await;
    f.group.rollout("web", RolloutAction::Pause).await.unwrap();
    let paused = ids(&f.group.describe_group("web").await.unwrap());
    tokio::time::sleep(Duration::from_secs(120)).await;
    let d = f.group.describe_group("web").await.unwrap();
    assert_eq!(ids(&d), paused, "nothing moves while paused");
    assert_eq!(d.status.unwrap().rollout.unwrap().phase, "paused");

    f.group.rollout("web", RolloutAction::Undo).await.unwrap();
    let d = wait_for("back on v1", Duration::from_secs(120), || async {
        let d = f.group.describe_group("web").await.ok()?;
        let h = d.status.clone()?.config_hash;
        (d.converged
            && d.instances.len() == 4
            && d.instances
                .iter()
                .all(|i| i.config_hash() == Some(h.as_str())))
        .then_some(d)
    })
    .await;
    let spec_now = f.group.inspect_groups().await.unwrap().remove(0);
    assert_eq!(
        spec_now.properties["Instance"]["Properties"]["Version"],
        "v1"
    );
    assert!(
        ids(&d).intersection(&v1).count() >= 2,
        "v1 instances that were never replaced stay"
    );
    assert!(f.group.rollout("nope", RolloutAction::Undo).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_restart_counts_recorded_provisions_and_resumes_the_rollout() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let f = fixture(Some(store.clone())).await;
    f.group
        .commit_group(spec(3, "v1", json!({})), false)
        .await
        .unwrap();
    converged(&f.group, 3).await;
    f.group
        .commit_group(
            spec(
                3,
                "v2",
                json!({"Updating": {"MaxSurge": 1, "MaxUnavailable": 0}}),
            ),
            false,
        )
        .await
        .unwrap();
    drop(f.group);

    // Simulate a crash right after a provision was recorded but before it completed: the record
    // holds a pending provision whose instance does not exist yet.
    let mut record = store.load().await.unwrap().remove("web").unwrap();
    record["Rollout"]["Pending"] =
        json!([{"Token": "late1", "LogicalID": null, "Since": infrakit_group::rollout::now_ms()}]);
    store.put("web", &record).await.unwrap();
    let plugins = Arc::new(Plugins::new("/nonexistent/plugins"));
    plugins.register_instance("instance-simulator", f.sampled.clone());
    plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
    f.sampled.samples.lock().unwrap().clear();
    let group = GroupPlugin::with_store(plugins, ControllerConfig::default(), store.clone())
        .await
        .unwrap();

    // While the recorded provision may still land, the controller does not add another.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        f.sampled.samples.lock().unwrap().iter().all(|s| s.0 <= 3),
        "no surge while a provision is in flight"
    );
    // The late provision lands, carrying its token: the rollout continues from there.
    let hash = group
        .describe_group("web")
        .await
        .unwrap()
        .status
        .unwrap()
        .config_hash;
    f.sim
        .provision(Spec {
            tags: tags(&[
                ("infrakit.group", "web"),
                ("infrakit.config.hash", hash.as_str()),
                ("infrakit.provision.token", "late1"),
            ]),
            properties: json!({"Version": "v2"}),
            ..Default::default()
        })
        .await
        .unwrap();
    let d = wait_for(
        "rollout finished after the restart",
        Duration::from_secs(60),
        || async {
            let d = group.describe_group("web").await.ok()?;
            (d.converged
                && d.instances
                    .iter()
                    .all(|i| i.config_hash() == Some(hash.as_str())))
            .then_some(d)
        },
    )
    .await;
    assert_eq!(d.instances.len(), 3);
    let max_total = f
        .sampled
        .samples
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.0)
        .max()
        .unwrap();
    assert!(
        max_total <= 4,
        "never more than MaxSurge extra: saw {max_total}"
    );
    assert!(store.load().await.unwrap()["web"]["Rollout"]["Pending"]
        .as_array()
        .unwrap()
        .is_empty());
}

/// The vanilla flavor, except that Drain fails.
struct FailingDrain(VanillaFlavor);

#[async_trait]
impl infrakit_spi::Flavor for FailingDrain {
    async fn validate(&self, p: &Value, a: &infrakit_spi::Allocation) -> Result<()> {
        self.0.validate(p, a).await
    }
    async fn prepare(
        &self,
        p: &Value,
        s: Spec,
        a: &infrakit_spi::Allocation,
        i: &infrakit_spi::Index,
    ) -> Result<Spec> {
        self.0.prepare(p, s, a, i).await
    }
    async fn healthy(&self, p: &Value, d: &Description) -> Result<infrakit_spi::Health> {
        self.0.healthy(p, d).await
    }
    async fn drain(&self, _: &Value, d: &Description) -> Result<()> {
        Err(infrakit_spi::Error::plugin(format!(
            "cannot drain {}: connections still open",
            d.id
        )))
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_drain_pauses_the_rollout_instead_of_destroying() {
    let sim = Arc::new(Simulator::new(SimulatorConfig::default()));
    let plugins = Arc::new(Plugins::new("/nonexistent/plugins"));
    plugins.register_instance("instance-simulator", sim.clone());
    plugins.register_flavor(
        "flavor-vanilla",
        Arc::new(FailingDrain(VanillaFlavor::new())),
    );
    let group = GroupPlugin::new(plugins, ControllerConfig::default());
    group
        .commit_group(spec(3, "v1", json!({})), false)
        .await
        .unwrap();
    let v1 = ids(&converged(&group, 3).await);
    group
        .commit_group(spec(3, "v2", json!({})), false)
        .await
        .unwrap();
    let d = wait_for("the rollout pauses", Duration::from_secs(60), || async {
        let d = group.describe_group("web").await.ok()?;
        let r = d.status.clone()?.rollout?;
        (r.phase == "paused").then_some(d)
    })
    .await;
    let reason = d.status.unwrap().rollout.unwrap().reason;
    assert!(reason.contains("cannot drain"), "{reason}");
    tokio::time::sleep(Duration::from_secs(60)).await;
    let now = ids(&group.describe_group("web").await.unwrap());
    assert!(
        v1.is_subset(&now),
        "no old instance was destroyed without a drain: {now:?}"
    );
    assert_eq!(now.len(), 4, "the surge instance stays while paused");
}

#[tokio::test(start_paused = true)]
async fn nothing_is_planned_before_the_first_successful_observation() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let sim = Arc::new(Simulator::new(SimulatorConfig::default()));
    let flaky = Observed::new(sim.clone(), Duration::ZERO);
    let setup = |flaky: Arc<Observed>| {
        let plugins = Arc::new(Plugins::new("/nonexistent/plugins"));
        plugins.register_instance("instance-simulator", flaky);
        plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
        plugins
    };
    let group = GroupPlugin::with_store(
        setup(flaky.clone()),
        ControllerConfig::default(),
        store.clone(),
    )
    .await
    .unwrap();
    group
        .commit_group(spec(3, "v1", json!({})), false)
        .await
        .unwrap();
    let before = ids(&converged(&group, 3).await);
    drop(group);

    // The controller restarts while the instance plugin cannot list anything.
    flaky.down.store(true, Ordering::SeqCst);
    let made = flaky.provisions();
    let group = GroupPlugin::with_store(setup(flaky.clone()), ControllerConfig::default(), store)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(
        flaky.provisions(),
        made,
        "an empty guess was never acted on"
    );
    let message = group
        .describe_group("web")
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("connection refused"), "{message}");

    flaky.down.store(false, Ordering::SeqCst);
    let after = ids(&converged(&group, 3).await);
    assert_eq!(after, before, "the same instances are adopted");
    assert_eq!(flaky.provisions(), made);
}

#[tokio::test(start_paused = true)]
async fn lagging_listings_do_not_cause_duplicates() {
    let sim = Arc::new(Simulator::new(SimulatorConfig::default()));
    // Listings lag three seconds behind creations.
    let lagging = Observed::new(sim.clone(), Duration::from_secs(3));
    let plugins = Arc::new(Plugins::new("/nonexistent/plugins"));
    let created = lagging.clone();
    plugins.register_instance("instance-simulator", lagging);
    plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
    let group = GroupPlugin::new(plugins, ControllerConfig::default());
    group
        .commit_group(spec(5, "v1", json!({})), false)
        .await
        .unwrap();
    converged(&group, 5).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let lagging_created = created.provisions();
    assert_eq!(lagging_created, 5, "exactly five were ever created");
    assert_eq!(sim.len(), 5);
}

#[tokio::test(start_paused = true)]
async fn completed_provisions_are_cleared_from_the_saved_state() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let f = fixture(Some(store.clone())).await;
    f.group
        .commit_group(spec(3, "v1", json!({})), false)
        .await
        .unwrap();
    converged(&f.group, 3).await;
    // A successor loading this record must not wait for provisions that already happened.
    let record = store.load().await.unwrap().remove("web").unwrap();
    assert_eq!(record["Rollout"]["Pending"], json!([]), "{record}");
}

/// A store whose next write, once armed, waits until released (a slow disk or a busy etcd), and
/// that logs the spec version of every write as it lands.
#[derive(Debug, Default)]
struct SlowStore {
    inner: MemoryStore,
    landed: Mutex<Vec<String>>,
    armed: AtomicBool,
    held: tokio::sync::Notify,
    holding: AtomicBool,
    release: tokio::sync::Notify,
}

#[async_trait]
impl Store for SlowStore {
    async fn load(&self) -> infrakit_store::Result<std::collections::BTreeMap<String, Value>> {
        self.inner.load().await
    }
    async fn put(&self, key: &str, value: &Value) -> infrakit_store::Result<()> {
        let held = self.armed.swap(false, Ordering::SeqCst);
        if held {
            let released = self.release.notified();
            self.holding.store(true, Ordering::SeqCst);
            self.held.notify_one();
            released.await;
        }
        let put = self.inner.put(key, value).await;
        let version = &value["Spec"]["Properties"]["Instance"]["Properties"]["Version"];
        self.landed.lock().unwrap().push(version.to_string());
        if held {
            self.holding.store(false, Ordering::SeqCst);
        }
        put
    }
    async fn delete(&self, key: &str) -> infrakit_store::Result<()> {
        self.inner.delete(key).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_commit_is_not_overwritten_by_a_pass_that_began_before_it() {
    let store = Arc::new(SlowStore::default());
    let f = fixture(Some(store.clone() as Arc<dyn Store>)).await;
    f.group
        .commit_group(spec(2, "v1", json!({})), false)
        .await
        .unwrap();
    let v1 = ids(&converged(&f.group, 2).await);

    // An instance dies: the controller's next pass records the replacement it is about to
    // provision, and that write is slow.
    let held = store.held.notified();
    store.armed.store(true, Ordering::SeqCst);
    let victim = v1.iter().next().unwrap().clone();
    f.sim
        .destroy(&victim, &DestroyContext::reason("killed"))
        .await
        .unwrap();
    held.await;
    assert!(store.holding.load(Ordering::SeqCst));

    // A commit arrives meanwhile. It may wait for the write in progress, but it must not be
    // acknowledged and then overwritten by that older write.
    let group = Arc::new(f.group);
    let committing = tokio::spawn({
        let group = group.clone();
        async move { group.commit_group(spec(2, "v2", json!({})), false).await }
    });
    let mut committing = std::pin::pin!(committing);
    // Paused time: the five seconds pass the moment every task waits.
    let early = tokio::time::timeout(Duration::from_secs(5), &mut committing).await;
    match early {
        Ok(done) => done.unwrap().unwrap(),
        Err(_) => {
            store.release.notify_one();
            committing.await.unwrap().unwrap()
        }
    };
    store.release.notify_one();
    wait_for("the slow write lands", Duration::from_secs(60), || async {
        (!store.holding.load(Ordering::SeqCst)).then_some(())
    })
    .await;
    // Once the commit is stored, a controller restarted at any moment loads it: no later write
    // stores the spec it replaced.
    let landed = store.landed.lock().unwrap().clone();
    let first_v2 = landed.iter().position(|v| v == "\"v2\"").unwrap();
    assert!(
        landed[first_v2..].iter().all(|v| v == "\"v2\""),
        "writes in the order they landed: {landed:?}"
    );
    // And the pass that was slow to write still completes the heal, on the new spec.
    converged(&group, 2).await;
}
