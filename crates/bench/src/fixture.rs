//! A group controller over the in-process instance simulator, as the scenarios use it: the
//! simulator behind a wrapper that counts `DescribeInstances` calls (one per reconcile), the
//! simulator's events, and the vanilla flavor (which judges simulated instances healthy at once).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::time::Instant;

use infrakit_flavor_vanilla::VanillaFlavor;
use infrakit_group::{ControllerConfig, GroupPlugin};
use infrakit_instance_simulator::{Simulator, SimulatorConfig};
use infrakit_rpc::Plugins;
use infrakit_spi::event::Publisher;
use infrakit_spi::{
    Description, DestroyContext, Group, GroupDescription, GroupSpec, Instance, Spec, Tags,
};

/// Name the simulator is registered under.
pub const SIMULATOR: &str = "instance-simulator";
/// Name the vanilla flavor is registered under.
pub const VANILLA: &str = "flavor-vanilla";

/// An instance plugin that counts the `DescribeInstances` calls made to the plugin it wraps.
pub struct Counting {
    inner: Arc<dyn Instance>,
    describes: AtomicU64,
    /// CPU nanoseconds spent inside the wrapped plugin's `DescribeInstances` (the plugin's
    /// work, not the controller's: a real plugin runs in a process of its own).
    describe_cpu_ns: AtomicU64,
}

impl Counting {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Instance>) -> Self {
        Counting {
            inner,
            describes: AtomicU64::new(0),
            describe_cpu_ns: AtomicU64::new(0),
        }
    }

    /// CPU time spent in the wrapped plugin's `DescribeInstances` so far.
    pub fn describe_cpu(&self) -> Duration {
        Duration::from_nanos(self.describe_cpu_ns.load(Ordering::Relaxed))
    }

    /// `DescribeInstances` calls so far.
    pub fn describes(&self) -> u64 {
        self.describes.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Instance for Counting {
    async fn validate(&self, properties: &Value) -> infrakit_spi::Result<()> {
        self.inner.validate(properties).await
    }
    async fn provision(&self, spec: Spec) -> infrakit_spi::Result<String> {
        self.inner.provision(spec).await
    }
    async fn label(&self, id: &str, labels: &Tags) -> infrakit_spi::Result<()> {
        self.inner.label(id, labels).await
    }
    async fn destroy(&self, id: &str, context: &DestroyContext) -> infrakit_spi::Result<()> {
        self.inner.destroy(id, context).await
    }
    async fn describe_instances(
        &self,
        tags: &Tags,
        properties: bool,
    ) -> infrakit_spi::Result<Vec<Description>> {
        self.describes.fetch_add(1, Ordering::Relaxed);
        // The simulator answers without yielding, so the thread's CPU clock measures it alone.
        let before = crate::measure::thread_cpu_time();
        let answer = self.inner.describe_instances(tags, properties).await;
        let spent = crate::measure::thread_cpu_time().saturating_sub(before);
        self.describe_cpu_ns
            .fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
        answer
    }
}

/// A group plugin managing simulated instances in this process.
pub struct SimGroup {
    /// The simulator (for its instance count and kills).
    pub sim: Arc<Simulator>,
    /// The counting wrapper the controller calls.
    pub counter: Arc<Counting>,
    /// The group controller.
    pub group: Arc<GroupPlugin>,
}

impl SimGroup {
    /// A controller with `config` over a simulator with `provision_latency`.
    pub fn new(provision_latency: Duration, config: ControllerConfig) -> SimGroup {
        let sim = Arc::new(Simulator::new(SimulatorConfig {
            provision_latency,
            ..SimulatorConfig::default()
        }));
        let counter = Arc::new(Counting::new(sim.clone()));
        let plugins = Arc::new(Plugins::new("/nonexistent/infrakit-bench/plugins"));
        plugins.register_instance(SIMULATOR, counter.clone());
        plugins.register_publisher(SIMULATOR, sim.clone() as Arc<dyn Publisher>);
        plugins.register_flavor(VANILLA, Arc::new(VanillaFlavor::new()));
        let group = Arc::new(GroupPlugin::new(plugins, config));
        SimGroup {
            sim,
            counter,
            group,
        }
    }

    /// Commits group `bench` at `size` (configuration `v1`) and waits until it is converged at
    /// that size; returns when the describe that said so started (the controller's state it
    /// reports was read then).
    pub async fn commit_and_converge(&self, size: usize) -> Result<Instant> {
        let within = Duration::from_secs(600);
        self.group
            .commit_group(sim_spec("bench", size, "v1", None), false)
            .await?;
        // The simulator's count is free to read; describe (which copies every instance) only
        // once it is right.
        let sim = self.sim.clone();
        wait_for("the instances to be there", within, || sim.len() == size).await?;
        wait_converged(
            self.group.as_ref(),
            "bench",
            describe_every(size),
            within,
            |d| d.instances.len() == size,
        )
        .await
    }
}

/// A controller configuration with `poll_interval` and the defaults otherwise (64 parallel
/// provisions, 5 s health timeout).
pub fn config(poll_interval: Duration) -> ControllerConfig {
    ControllerConfig {
        poll_interval,
        ..ControllerConfig::default()
    }
}

/// A spec of `size` simulated instances of configuration `version`, with an optional `Updating`
/// block.
pub fn sim_spec(id: &str, size: usize, version: &str, updating: Option<Value>) -> GroupSpec {
    let mut properties = json!({
        "Allocation": {"Size": size},
        "Instance": {"Plugin": SIMULATOR, "Properties": {"Version": version}},
        "Flavor": {"Plugin": VANILLA},
    });
    if let Some(u) = updating {
        properties["Updating"] = u;
    }
    GroupSpec {
        id: id.into(),
        properties,
    }
}

/// Polls `DescribeGroup` every `every` until `done` holds for a converged description, and
/// returns when the successful call started (the controller's state it reports was read then).
pub async fn wait_converged(
    group: &dyn Group,
    id: &str,
    every: Duration,
    within: Duration,
    done: impl Fn(&GroupDescription) -> bool,
) -> Result<Instant> {
    let deadline = Instant::now() + within;
    loop {
        let asked = Instant::now();
        let last = match group.describe_group(id).await {
            Ok(d) if d.converged && done(&d) => return Ok(asked),
            Ok(d) => format!(
                "{} instances, converged {}, status {:?}",
                d.instances.len(),
                d.converged,
                d.status.map(|s| s.message)
            ),
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!("group {id} did not converge within {within:?}; last: {last}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Polls `cond` every millisecond until it holds, for at most `within`.
pub async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + within;
    while !cond() {
        if Instant::now() > deadline {
            bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// A polling period for describes of a group of `n` instances that keeps the benchmark's own
/// describes a small share of the work measured.
pub fn describe_every(n: usize) -> Duration {
    Duration::from_millis((n as u64 / 1_000).clamp(2, 50))
}
