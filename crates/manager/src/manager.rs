//! [`Manager`]: the Group API served by whichever manager leads.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;

use infrakit_group::telemetry::kind;
use infrakit_group::{ControllerConfig, GroupPlugin, Telemetry};
use infrakit_rpc::{Client, GroupClient, Plugins};
use infrakit_spi::group::{PlanPreview, RolloutAction};
use infrakit_spi::manager::ManagerStatus;
use infrakit_spi::{Error, Group, GroupDescription, GroupSpec, Result};
use infrakit_store::Store;

use crate::leadership::Leadership;

/// How long a manager waits before campaigning again after the backend failed.
const RETRY: Duration = Duration::from_secs(1);

/// The key of the operator's variables in their store.
const VARS_KEY: &str = "vars";

/// Where a manager keeps its state and how it campaigns.
pub struct Backend {
    /// The groups' records.
    pub store: Arc<dyn Store>,
    /// The store's details for `manager status` (backend, path or endpoints).
    pub info: Value,
    /// How managers elect one leader.
    pub leadership: Arc<dyn Leadership>,
    /// The operator's variables (the `vars` metadata object); kept in memory when `None`.
    pub vars: Option<Arc<dyn Store>>,
}

/// A manager: campaigns for leadership; while leading, runs the group controller on the shared
/// store; while following, forwards Group calls to the leader.
pub struct Manager {
    name: String,
    location: String,
    plugins: Arc<Plugins>,
    config: ControllerConfig,
    store: Arc<dyn Store>,
    store_info: Value,
    leadership: Arc<dyn Leadership>,
    leading: RwLock<Option<Arc<GroupPlugin>>>,
    vars_store: Option<Arc<dyn Store>>,
    /// The variables when they are kept in memory; with a store, serialises commits.
    vars: Mutex<Value>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("name", &self.name)
            .field("location", &self.location)
            .finish()
    }
}

impl Manager {
    /// A manager called `name`, reachable at `location` (its socket path).
    pub fn new(
        name: &str,
        location: &str,
        plugins: Arc<Plugins>,
        config: ControllerConfig,
        backend: Backend,
    ) -> Arc<Manager> {
        Arc::new(Manager {
            name: name.to_string(),
            location: location.to_string(),
            plugins,
            config,
            store: backend.store,
            store_info: backend.info,
            leadership: backend.leadership,
            leading: RwLock::new(None),
            vars_store: backend.vars,
            vars: Mutex::new(Value::Object(Default::default())),
        })
    }

    /// Campaigns, leads while elected, and campaigns again when leadership is lost, until
    /// `shutdown` is cancelled. On losing leadership every group controller stops at once;
    /// instances stay.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let term = tokio::select! {
                term = self.leadership.campaign() => term,
                _ = shutdown.cancelled() => return,
            };
            let term = match term {
                Ok(term) => term,
                Err(e) => {
                    tracing::warn!(manager = %self.name, error = %e, "campaign failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY) => continue,
                        _ = shutdown.cancelled() => return,
                    }
                }
            };
            let controller = GroupPlugin::fenced(
                self.plugins.clone(),
                self.config.clone(),
                self.store.clone(),
                term.fence.clone(),
            )
            .await;
            match controller {
                Ok(controller) => {
                    tracing::info!(manager = %self.name, "leading: group controllers resumed");
                    self.telemetry().events.manager(
                        kind::LEADERSHIP,
                        &self.name,
                        format!("{} leads: group controllers resumed", self.name),
                    );
                    *self.leading.write().await = Some(Arc::new(controller));
                }
                Err(e) => {
                    tracing::error!(manager = %self.name, error = %e, "elected, but cannot load the groups");
                }
            }
            tokio::select! {
                _ = term.lost.cancelled() => {
                    tracing::warn!(manager = %self.name, "lost leadership: group controllers stopped");
                    self.telemetry().events.manager(
                        kind::LEADERSHIP,
                        &self.name,
                        format!("{} lost leadership: group controllers stopped", self.name),
                    );
                }
                _ = shutdown.cancelled() => {}
            }
            *self.leading.write().await = None;
            if shutdown.is_cancelled() {
                return;
            }
        }
    }

    /// Where this manager's controllers report events and metrics (the same across terms).
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.config.telemetry
    }

    /// The variables now: from their store when there is one.
    async fn load_vars(&self, memory: &Value) -> Result<Value> {
        let Some(store) = &self.vars_store else {
            return Ok(memory.clone());
        };
        let mut all = store
            .load()
            .await
            .map_err(|e| Error::caused("cannot read the variables", e))?;
        Ok(all
            .remove(VARS_KEY)
            .unwrap_or_else(|| Value::Object(Default::default())))
    }

    /// Where Group calls go: the local controller when leading, else the leader.
    async fn target(&self) -> Result<Arc<dyn Group>> {
        if let Some(local) = self.leading.read().await.as_ref() {
            return Ok(local.clone());
        }
        let leader = self
            .leadership
            .leader()
            .await
            .map_err(|e| Error::caused("not the leader, and the leader is unknown", e))?;
        match leader {
            None => Err(Error::plugin(
                "not the leader, and no leader is elected yet; try again shortly",
            )),
            Some(location) if location == self.location => Err(Error::plugin(
                "elected but not ready yet; try again shortly",
            )),
            Some(location) if Path::new(&location).exists() => Ok(Arc::new(GroupClient::new(
                Client::new(&self.name, &location),
            ))),
            Some(location) => Err(Error::plugin(format!(
                "not the leader; the leader is {location}"
            ))),
        }
    }
}

#[async_trait]
impl Group for Manager {
    async fn commit_group(&self, spec: GroupSpec, pretend: bool) -> Result<String> {
        self.target().await?.commit_group(spec, pretend).await
    }
    async fn free_group(&self, id: &str) -> Result<()> {
        self.target().await?.free_group(id).await
    }
    async fn describe_group(&self, id: &str) -> Result<GroupDescription> {
        self.target().await?.describe_group(id).await
    }
    async fn destroy_group(&self, id: &str) -> Result<()> {
        self.target().await?.destroy_group(id).await
    }
    async fn inspect_groups(&self) -> Result<Vec<GroupSpec>> {
        self.target().await?.inspect_groups().await
    }
    async fn destroy_instances(&self, id: &str, instances: &[String]) -> Result<()> {
        self.target().await?.destroy_instances(id, instances).await
    }
    async fn size(&self, id: &str) -> Result<usize> {
        self.target().await?.size(id).await
    }
    async fn set_size(&self, id: &str, size: usize) -> Result<()> {
        self.target().await?.set_size(id, size).await
    }
    async fn plan_group(&self, spec: GroupSpec) -> Result<PlanPreview> {
        self.target().await?.plan_group(spec).await
    }
    async fn rollout(&self, id: &str, action: RolloutAction) -> Result<()> {
        self.target().await?.rollout(id, action).await
    }
}

#[async_trait]
impl infrakit_spi::manager::Manager for Manager {
    async fn is_leader(&self) -> Result<bool> {
        Ok(self.leading.read().await.is_some())
    }

    async fn leader_location(&self) -> Result<Option<String>> {
        self.leadership
            .leader()
            .await
            .map_err(|e| Error::plugin(e.to_string()))
    }

    async fn vars(&self) -> Result<Value> {
        let memory = self.vars.lock().await;
        self.load_vars(&memory).await
    }

    async fn commit_vars(&self, cas: &str, proposed: Value) -> Result<()> {
        if !proposed.is_object() {
            return Err(Error::invalid(
                "Proposed",
                "the variables must be an object",
            ));
        }
        let mut memory = self.vars.lock().await;
        let current = self.load_vars(&memory).await?;
        infrakit_spi::metadata::check_cas(&current, &proposed, cas)?;
        if let Some(store) = &self.vars_store {
            store
                .put(VARS_KEY, &proposed)
                .await
                .map_err(|e| Error::caused("cannot save the variables", e))?;
        }
        *memory = proposed;
        Ok(())
    }

    async fn status(&self) -> Result<ManagerStatus> {
        Ok(ManagerStatus {
            name: self.name.clone(),
            leader: self.leading.read().await.is_some(),
            leader_location: self.leadership.leader().await.ok().flatten(),
            location: self.location.clone(),
            store: self.store_info.clone(),
            leadership: self.leadership.info(),
        })
    }
}

impl infrakit_spi::event::Publisher for Manager {
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<infrakit_spi::Event> {
        self.telemetry().events.subscribe()
    }

    fn recent(&self) -> Vec<infrakit_spi::Event> {
        self.telemetry().events.recent()
    }
}
