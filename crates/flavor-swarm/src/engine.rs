//! The flavor's I/O: the Docker API of a swarm manager, through bollard.
//!
//! [`Engines`] keeps one client per endpoint (version negotiated once, forgotten after a
//! failure so the next call connects again). A [`Manager`] reads what joining takes
//! ([`Manager::swarm_join`]), lists nodes by engine label ([`Manager::nodes_labelled`]), and
//! takes a node out of the swarm ([`Manager::take_out`]): availability `drain`, demotion of a
//! manager, a wait for its tasks to stop, then a forced removal.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bollard::errors::Error as DockerError;
use bollard::models::{
    LocalNodeState, Node, NodeSpecAvailabilityEnum, NodeSpecRoleEnum, TaskState,
};
use bollard::query_parameters::{
    DeleteNodeOptions, ListNodesOptions, ListTasksOptions, UpdateNodeOptions,
};
use bollard::Docker;
use infrakit_spi::{Error, Result};
use tokio::time::Instant;

use crate::health::{NodeState, NodeView, Reachability};
use crate::prepare::SwarmJoin;
use crate::properties::normalize_host;

/// The engine endpoint used when neither the properties nor `DOCKER_HOST` name one.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";
/// How long connecting to an engine (and negotiating the API version) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two looks while waiting for a demotion or for tasks to stop.
const POLL: Duration = Duration::from_millis(200);

/// The endpoint to use: `host` if given, else `DOCKER_HOST`, else [`DEFAULT_ENDPOINT`].
pub fn endpoint(host: Option<&str>) -> Result<String> {
    match host {
        Some(h) => Ok(h.to_string()),
        None => match std::env::var("DOCKER_HOST") {
            Ok(h) if !h.trim().is_empty() => {
                normalize_host(&h).map_err(|e| Error::plugin(format!("DOCKER_HOST: {e}")))
            }
            _ => Ok(DEFAULT_ENDPOINT.to_string()),
        },
    }
}

/// Clients of swarm managers' engines, one per endpoint.
#[derive(Debug, Default)]
pub struct Engines {
    clients: Mutex<HashMap<String, Docker>>,
}

impl Engines {
    /// The manager at `host` (see [`endpoint`]), connected if need be.
    pub async fn manager(&self, host: Option<&str>) -> Result<Manager<'_>> {
        let endpoint = endpoint(host)?;
        let cached = self.lock().get(&endpoint).cloned();
        let docker = match cached {
            Some(d) => d,
            None => {
                let fail = |e: String| {
                    Error::plugin(format!(
                        "cannot reach the swarm manager's Docker engine at {endpoint}: {e}"
                    ))
                };
                let docker =
                    Docker::connect_with_host(&endpoint).map_err(|e| fail(e.to_string()))?;
                let docker = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
                    .await
                    .map_err(|_| fail(format!("no answer within {CONNECT_TIMEOUT:?}")))?
                    .map_err(|e| fail(e.to_string()))?;
                self.lock().insert(endpoint.clone(), docker.clone());
                docker
            }
        };
        Ok(Manager {
            engines: self,
            docker,
            endpoint,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Docker>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A swarm manager's engine.
#[derive(Debug)]
pub struct Manager<'a> {
    engines: &'a Engines,
    docker: Docker,
    endpoint: String,
}

/// True for Docker's "no such object" answer.
fn not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The message of a Docker error, without bollard's wrapping.
fn message(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// When `node` last changed, whichever type bollard gives its timestamps.
fn updated_at(node: &Node) -> Option<SystemTime> {
    let v = serde_json::to_value(node.updated_at.as_ref()?).ok()?;
    humantime::parse_rfc3339_weak(v.as_str()?).ok()
}

/// The flavor's view of `node`.
pub fn view(node: &Node) -> NodeView {
    let state = match node.status.as_ref().and_then(|s| s.state) {
        Some(bollard::models::NodeState::READY) => NodeState::Ready,
        Some(bollard::models::NodeState::DOWN) => NodeState::Down,
        Some(bollard::models::NodeState::DISCONNECTED) => NodeState::Disconnected,
        _ => NodeState::Unknown,
    };
    let manager = node.manager_status.as_ref().map(|m| match m.reachability {
        Some(bollard::models::Reachability::REACHABLE) => Reachability::Reachable,
        Some(bollard::models::Reachability::UNREACHABLE) => Reachability::Unreachable,
        _ => Reachability::Unknown,
    });
    let spec = node.spec.as_ref();
    NodeView {
        id: node.id.clone().unwrap_or_default(),
        state,
        manager,
        spec_manager: spec.and_then(|s| s.role) == Some(NodeSpecRoleEnum::MANAGER),
        drained: spec.and_then(|s| s.availability) == Some(NodeSpecAvailabilityEnum::DRAIN),
        updated_at: updated_at(node),
        addr: node.status.as_ref().and_then(|s| s.addr.clone()),
    }
}

/// The engine labels of `node`.
fn engine_label<'n>(node: &'n Node, key: &str) -> Option<&'n str> {
    node.description
        .as_ref()?
        .engine
        .as_ref()?
        .labels
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

impl Manager<'_> {
    /// The endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A failure talking to the engine: the client is dropped from the cache (the next call
    /// connects again) and the error names the endpoint and what was being done.
    fn fail(&self, doing: &str, e: &DockerError) -> Error {
        if !matches!(e, DockerError::DockerResponseServerError { .. }) {
            self.engines.lock().remove(&self.endpoint);
        }
        Error::plugin(format!(
            "swarm manager at {}: {doing}: {}",
            self.endpoint,
            message(e)
        ))
    }

    /// The swarm's ID, join tokens and manager addresses (this manager's first). Fails with
    /// advice when the engine is not a manager of an active swarm.
    pub async fn swarm_join(&self) -> Result<SwarmJoin> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| self.fail("reading the engine's info", &e))?;
        let swarm = info.swarm.unwrap_or_default();
        let state = swarm.local_node_state.unwrap_or(LocalNodeState::EMPTY);
        if state != LocalNodeState::ACTIVE || swarm.control_available != Some(true) {
            return Err(Error::plugin(format!(
                "the Docker engine at {} is not a swarm manager (swarm state: {}, manager: {}): \
                 run `docker swarm init` there, or point Docker.Host at a manager",
                self.endpoint,
                if state == LocalNodeState::EMPTY {
                    "unknown".to_string()
                } else {
                    state.to_string()
                },
                swarm.control_available.unwrap_or(false)
            )));
        }
        let inspected = self
            .docker
            .inspect_swarm()
            .await
            .map_err(|e| self.fail("inspecting the swarm", &e))?;
        let tokens = inspected.join_tokens.unwrap_or_default();
        let (Some(worker_token), Some(manager_token)) = (tokens.worker, tokens.manager) else {
            return Err(Error::plugin(format!(
                "swarm manager at {}: the swarm reported no join tokens",
                self.endpoint
            )));
        };
        let mut managers: Vec<(bool, String)> = swarm
            .remote_managers
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| {
                let me = p.node_id.is_some() && p.node_id == swarm.node_id;
                p.addr.map(|a| (!me, a))
            })
            .collect();
        managers.sort();
        Ok(SwarmJoin {
            swarm_id: inspected.id.unwrap_or_default(),
            worker_token,
            manager_token,
            managers: managers.into_iter().map(|(_, a)| a).collect(),
        })
    }

    /// The nodes whose engine carries the label `key=value`.
    pub async fn nodes_labelled(&self, key: &str, value: &str) -> Result<Vec<Node>> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{key}={value}")])]);
        let nodes = self
            .docker
            .list_nodes(Some(ListNodesOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|e| self.fail("listing nodes", &e))?;
        Ok(nodes
            .into_iter()
            .filter(|n| engine_label(n, key) == Some(value))
            .collect())
    }

    async fn inspect(&self, id: &str) -> Result<Option<Node>> {
        match self.docker.inspect_node(id).await {
            Ok(n) => Ok(Some(n)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(self.fail(&format!("inspecting node {id}"), &e)),
        }
    }

    /// Changes the spec of node `id` with `change`, retrying when someone else changed the node
    /// in between. `Ok(false)` when the node is gone.
    async fn update(
        &self,
        id: &str,
        what: &str,
        change: impl Fn(&mut bollard::models::NodeSpec),
    ) -> Result<bool> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(node) = self.inspect(id).await? else {
                return Ok(false);
            };
            let mut spec = node.spec.unwrap_or_default();
            change(&mut spec);
            let version = node.version.and_then(|v| v.index).unwrap_or_default() as i64;
            match self
                .docker
                .update_node(id, spec, UpdateNodeOptions { version })
                .await
            {
                Ok(()) => return Ok(true),
                Err(e) if not_found(&e) => return Ok(false),
                Err(e) if attempt < 5 && message(&e).contains("out of sequence") => continue,
                Err(e) => return Err(self.fail(&format!("{what} node {id}"), &e)),
            }
        }
    }

    /// True while a task on node `id` may still be running.
    async fn has_live_tasks(&self, id: &str) -> Result<bool> {
        let filters = HashMap::from([("node".to_string(), vec![id.to_string()])]);
        let tasks = self
            .docker
            .list_tasks(Some(ListTasksOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|e| self.fail(&format!("listing the tasks of node {id}"), &e))?;
        Ok(tasks.iter().any(|t| {
            t.status
                .as_ref()
                .and_then(|s| s.state)
                .is_some_and(|s| s <= TaskState::RUNNING)
        }))
    }

    /// Takes node `id` out of the swarm, within `timeout` for the waits: availability `drain`
    /// (a ready node), demotion (a manager, waiting until it has left the managers), a wait
    /// for its tasks to stop (a ready node), then a forced removal. A node that is already gone
    /// is fine. Fails when a step is refused, e.g. demoting the last manager.
    pub async fn take_out(&self, id: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let Some(node) = self.inspect(id).await? else {
            return Ok(());
        };
        let v = view(&node);
        if v.state == NodeState::Ready && !v.drained {
            tracing::info!(node = %id, endpoint = %self.endpoint, "draining swarm node");
            if !self
                .update(id, "draining", |s| {
                    s.availability = Some(NodeSpecAvailabilityEnum::DRAIN)
                })
                .await?
            {
                return Ok(());
            }
        }
        if v.spec_manager || v.manager.is_some() {
            tracing::info!(node = %id, endpoint = %self.endpoint, "demoting swarm manager");
            if !self
                .update(id, "demoting", |s| s.role = Some(NodeSpecRoleEnum::WORKER))
                .await?
            {
                return Ok(());
            }
            loop {
                match self.inspect(id).await? {
                    None => return Ok(()),
                    Some(n) if n.manager_status.is_none() => break,
                    Some(_) if Instant::now() >= deadline => break,
                    Some(_) => tokio::time::sleep(POLL).await,
                }
            }
        }
        if v.state == NodeState::Ready {
            while Instant::now() < deadline && self.has_live_tasks(id).await? {
                tokio::time::sleep(POLL).await;
            }
        }
        self.remove(id, deadline).await
    }

    /// Removes node `id` (forced: it may still be up), retrying until `deadline` while a
    /// demotion is still under way.
    pub async fn remove(&self, id: &str, deadline: Instant) -> Result<()> {
        loop {
            match self
                .docker
                .delete_node(id, Some(DeleteNodeOptions { force: true }))
                .await
            {
                Ok(()) => {
                    tracing::info!(node = %id, endpoint = %self.endpoint, "removed swarm node");
                    return Ok(());
                }
                Err(e) if not_found(&e) => return Ok(()),
                Err(e) if Instant::now() < deadline && message(&e).contains("demoted") => {
                    tokio::time::sleep(POLL).await
                }
                Err(e) => return Err(self.fail(&format!("removing node {id}"), &e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nodes_as_the_api_reports_them() {
        let manager: Node = serde_json::from_value(json!({
            "ID": "nb7kywsbs763m2jfsa7gsi71r",
            "Version": {"Index": 24},
            "CreatedAt": "2026-11-27T14:18:10.070271191Z",
            "UpdatedAt": "2026-11-27T14:18:15.32450696Z",
            "Spec": {"Labels": {}, "Role": "manager", "Availability": "active"},
            "Description": {"Hostname": "vm", "Engine": {"EngineVersion": "20.10.24", "Labels": {"infrakit-link": "abc", "infrakit.group": "g"}}},
            "Status": {"State": "ready", "Addr": "10.200.0.2"},
            "ManagerStatus": {"Reachability": "reachable", "Addr": "10.200.0.2:2377"}
        }))
        .unwrap();
        let v = view(&manager);
        assert_eq!(v.id, "nb7kywsbs763m2jfsa7gsi71r");
        assert_eq!(v.state, NodeState::Ready);
        assert_eq!(v.manager, Some(Reachability::Reachable));
        assert!(v.spec_manager && !v.drained);
        assert_eq!(v.addr.as_deref(), Some("10.200.0.2"));
        assert_eq!(
            v.updated_at,
            Some(humantime::parse_rfc3339("2026-11-27T14:18:15.32450696Z").unwrap())
        );
        assert_eq!(engine_label(&manager, "infrakit-link"), Some("abc"));
        assert_eq!(engine_label(&manager, "zone"), None);

        let dead: Node = serde_json::from_value(json!({
            "ID": "w1",
            "Spec": {"Role": "worker", "Availability": "drain"},
            "Status": {"State": "down", "Message": "heartbeat failure"}
        }))
        .unwrap();
        let v = view(&dead);
        assert_eq!(
            (v.state, v.manager, v.spec_manager, v.drained),
            (NodeState::Down, None, false, true)
        );
        assert_eq!(v.updated_at, None);
        assert_eq!(view(&Node::default()).state, NodeState::Unknown);
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint(Some("tcp://10.0.0.1:2375")).unwrap(),
            "tcp://10.0.0.1:2375"
        );
    }
}
