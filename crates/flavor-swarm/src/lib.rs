//! A flavor for Docker Swarm: managers and workers whose engines join an existing swarm.
//!
//! It is one plugin with two types, as in InfraKit, `flavor-swarm/manager` and
//! `flavor-swarm/worker` ([`Role`]); each is a [`SwarmFlavor`].
//!
//! ```json
//! {
//!   "Allocation": {"Size": 2},
//!   "Instance": {"Plugin": "instance-process", "Properties": {"Cmd": "/usr/local/bin/run-dockerd"}},
//!   "Flavor": {"Plugin": "flavor-swarm/worker", "Properties": {
//!     "Docker": {"Host": "tcp://10.200.1.1:2375"},
//!     "Join": "Command"
//!   }}
//! }
//! ```
//!
//! * **Prepare** asks the manager engine named by `Docker.Host` (bollard) for the swarm's ID,
//!   join tokens and manager addresses, makes a random link that it puts on the instance as a
//!   tag and on its engine as a label ([`link`]), and injects the join into the instance's
//!   start ([`prepare`]): an `Init` script for machines whose engine is a service, or a wrapper
//!   around the instance's `dockerd` command for the process plugin. A manager joins with its
//!   logical ID as its advertise address.
//! * **Healthy** finds the instance's node in the manager's node list by its link label and
//!   judges it ([`health`]): Healthy when ready (a manager: also reachable), Unknown until it
//!   has joined within `JoinGrace`, Unhealthy otherwise. While at it, at most every few
//!   seconds per group, it removes the group's nodes that have been down for
//!   `Drain.RemoveDownAfter`: the nodes of instances that died and were replaced.
//! * **Drain** takes the instance's node out of the swarm ([`engine::Manager::take_out`]):
//!   availability `drain`, a manager demoted first, its tasks given `Drain.Timeout` to stop,
//!   then removed.
//! * **Validate** checks the properties, and that a manager group allocates by logical IDs
//!   that are addresses; errors name the field ([`properties`]).

pub mod engine;
pub mod health;
pub mod link;
pub mod prepare;
pub mod properties;
pub mod role;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use infrakit_spi::instance::GROUP_TAG;
use infrakit_spi::{Allocation, Description, Error, Flavor, Health, Index, Result, Spec};
use serde_json::Value;
use tokio::time::Instant;

pub use engine::Engines;
pub use link::{Link, GROUP_LABEL, LINK_CONTEXT_TAG, LINK_CREATED_TAG, LINK_TAG, SWARM_ID_TAG};
pub use prepare::SwarmJoin;
pub use properties::{DrainSettings, HealthSettings, JoinMode, SwarmProperties};
pub use role::Role;

/// How long Prepare may take to read the swarm's tokens and managers.
pub const PREPARE_TIMEOUT: Duration = Duration::from_secs(30);
/// A group's down nodes are looked for at most this often.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The swarm flavor for one role. Cheap to clone; clones (and the flavors made by
/// [`SwarmFlavor::pair`]) share their engine clients.
#[derive(Debug, Clone)]
pub struct SwarmFlavor {
    role: Role,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    engines: Engines,
    /// When the down nodes of (endpoint, group) were last looked for.
    sweeps: Mutex<HashMap<(String, String), Instant>>,
    /// Held while a manager leaves the swarm: membership of the managers' Raft changes one
    /// manager at a time. Two managers of three demoted and stopped at once can leave the
    /// Raft with one live member of two, without a quorum, and the swarm stuck.
    manager_changes: tokio::sync::Mutex<()>,
}

impl SwarmFlavor {
    /// The flavor for `role`.
    pub fn new(role: Role) -> Self {
        SwarmFlavor {
            role,
            shared: Arc::default(),
        }
    }

    /// The manager and worker flavors, sharing their engine clients: serve them as the types
    /// `manager` and `worker` of one plugin.
    pub fn pair() -> (SwarmFlavor, SwarmFlavor) {
        let manager = SwarmFlavor::new(Role::Manager);
        let worker = SwarmFlavor {
            role: Role::Worker,
            shared: manager.shared.clone(),
        };
        (manager, worker)
    }

    /// The role of this flavor's instances.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Starts, unless one ran within [`SWEEP_INTERVAL`], a background removal of the nodes of
    /// `group` that have been down for `Drain.RemoveDownAfter`.
    fn sweep(&self, props: &SwarmProperties, group: &str) {
        if props.drain.remove_down_after.is_zero() {
            return;
        }
        let Ok(endpoint) = engine::endpoint(props.docker_host.as_deref()) else {
            return;
        };
        {
            let mut sweeps = self.shared.sweeps.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let key = (endpoint, group.to_string());
            if sweeps
                .get(&key)
                .is_some_and(|t| now.duration_since(*t) < SWEEP_INTERVAL)
            {
                return;
            }
            sweeps.insert(key, now);
        }
        let shared = self.shared.clone();
        let props = props.clone();
        let group = group.to_string();
        tokio::spawn(async move {
            if let Err(e) = sweep(&shared.engines, &props, &group).await {
                tracing::warn!(%group, error = %e, "cannot remove the group's down swarm nodes");
            }
        });
    }
}

/// Removes the nodes of `group` that have been down for `Drain.RemoveDownAfter`.
async fn sweep(engines: &Engines, props: &SwarmProperties, group: &str) -> Result<()> {
    let manager = engines.manager(props.docker_host.as_deref()).await?;
    let nodes = manager.nodes_labelled(GROUP_LABEL, group).await?;
    let views: Vec<_> = nodes.iter().map(engine::view).collect();
    for node in health::stale(&views, SystemTime::now(), props.drain.remove_down_after) {
        tracing::info!(%group, node = %node.id, addr = ?node.addr, "removing a swarm node that has been down for Drain.RemoveDownAfter");
        manager.take_out(&node.id, props.drain.timeout).await?;
    }
    Ok(())
}

#[async_trait]
impl Flavor for SwarmFlavor {
    async fn validate(&self, properties: &Value, allocation: &Allocation) -> Result<()> {
        let props = SwarmProperties::parse(properties)?;
        props.check_allocation(self.role, allocation)
    }

    async fn prepare(
        &self,
        properties: &Value,
        spec: Spec,
        allocation: &Allocation,
        _index: &Index,
    ) -> Result<Spec> {
        let props = SwarmProperties::parse(properties)?;
        props.check_allocation(self.role, allocation)?;
        let read = async {
            let manager = self
                .shared
                .engines
                .manager(props.docker_host.as_deref())
                .await?;
            manager.swarm_join().await
        };
        let swarm = tokio::time::timeout(PREPARE_TIMEOUT, read)
            .await
            .map_err(|_| {
                Error::plugin(format!(
                    "the swarm manager did not answer within {PREPARE_TIMEOUT:?}"
                ))
            })??;
        let link = Link::generate();
        let spec = prepare::prepare(self.role, &props, &swarm, &link, spec)?;
        tracing::info!(role = %self.role, swarm = %swarm.swarm_id, link = %link.value, logical_id = ?spec.logical_id, "prepared a swarm node");
        Ok(spec)
    }

    async fn healthy(&self, properties: &Value, instance: &Description) -> Result<Health> {
        let props = SwarmProperties::parse(properties)?;
        let Some(link) = instance.tags.get(LINK_TAG) else {
            tracing::debug!(instance = %instance.id, "no {LINK_TAG} tag: not prepared by the swarm flavor");
            return Ok(Health::Unhealthy);
        };
        let lookup = async {
            let manager = self
                .shared
                .engines
                .manager(props.docker_host.as_deref())
                .await?;
            manager.nodes_labelled(LINK_TAG, link).await
        };
        let nodes = match tokio::time::timeout(props.health.timeout, lookup).await {
            Ok(Ok(nodes)) => nodes,
            Ok(Err(e)) => {
                tracing::warn!(instance = %instance.id, error = %e, "cannot judge health");
                return Ok(Health::Unknown);
            }
            Err(_) => {
                tracing::warn!(instance = %instance.id, timeout = ?props.health.timeout, "the swarm manager did not answer in time");
                return Ok(Health::Unknown);
            }
        };
        let views: Vec<_> = nodes.iter().map(engine::view).collect();
        let age = link::age(&instance.tags, SystemTime::now());
        let (health, why) = health::judge(self.role, &views, age, props.health.join_grace);
        tracing::debug!(instance = %instance.id, %link, %health, why, "swarm node health");
        if let Some(group) = instance.tags.get(GROUP_TAG) {
            self.sweep(&props, group);
        }
        Ok(health)
    }

    async fn drain(&self, properties: &Value, instance: &Description) -> Result<()> {
        let props = SwarmProperties::parse(properties)?;
        let Some(link) = instance.tags.get(LINK_TAG) else {
            tracing::info!(instance = %instance.id, "no {LINK_TAG} tag: no swarm node to drain");
            return Ok(());
        };
        let manager = self
            .shared
            .engines
            .manager(props.docker_host.as_deref())
            .await?;
        let _one_at_a_time = match self.role {
            Role::Manager => Some(self.shared.manager_changes.lock().await),
            Role::Worker => None,
        };
        for node in manager.nodes_labelled(LINK_TAG, link).await? {
            let id = node.id.unwrap_or_default();
            tracing::info!(instance = %instance.id, node = %id, role = %self.role, "taking the instance's node out of the swarm");
            manager.take_out(&id, props.drain.timeout).await?;
        }
        Ok(())
    }
}
