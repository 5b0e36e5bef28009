//! The plugin itself ([`DockerPlugin`]): connecting to the engine, and the Instance API
//! (`Validate`, `Provision`, `Label`, `Destroy`, `DescribeInstances`) on top of the other
//! modules, with the event channel as a [`Publisher`].

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bollard::models::{ContainerCreateBody, ContainerStateStatusEnum, Mount};
use bollard::query_parameters::{CreateContainerOptions, StopContainerOptions};
use bollard::Docker;
use infrakit_spi::event::{Event, Publisher};
use infrakit_spi::{Description, DestroyContext, Error, Instance, Result, Spec, Tags};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use crate::container::{self, ENV_INSTANCE_ID};
use crate::events;
use crate::init::{self, not_present};
use crate::janitor::janitor;
use crate::labels::LabelStore;
use crate::options::{DockerOptions, PLUGIN_LABEL};
use crate::properties::DockerProperties;
use crate::shared::{status, Claim, Shared};

/// The Docker instance plugin.
///
/// Cheap to clone; clones share one engine connection and one event watcher. Dropping the last
/// clone stops following the engine's events; the containers keep running.
#[derive(Debug, Clone)]
pub struct DockerPlugin {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What every container a provision tries to create has in common: all but its name.
struct Blueprint<'a> {
    props: &'a DockerProperties,
    labels: Tags,
    env: Vec<(String, String)>,
    mounts: Vec<Mount>,
    /// [`DockerOptions::stop_timeout`] in seconds.
    stop_timeout: i64,
}

impl Blueprint<'_> {
    /// The body of the container to create as `name`.
    fn body(&self, name: &str) -> ContainerCreateBody {
        let mut env = self.env.clone();
        env.push((ENV_INSTANCE_ID.to_string(), name.to_string()));
        let mut body = self
            .props
            .container_body(self.labels.clone(), &env, self.mounts.clone());
        // `docker stop` and the engine's own shutdown use the same grace as Destroy.
        body.stop_timeout.get_or_insert(self.stop_timeout);
        body
    }
}

impl DockerPlugin {
    /// Connects to the engine named by `options.host`, `DOCKER_HOST` or
    /// [`DEFAULT_ENDPOINT`](crate::DEFAULT_ENDPOINT), checks that it answers, and starts
    /// following its events.
    ///
    /// Fails with [`Error::Unavailable`] naming the endpoint when no engine answers. Must be
    /// called from within a tokio runtime.
    pub async fn connect(options: DockerOptions) -> Result<DockerPlugin> {
        if options.name.trim().is_empty() {
            return Err(Error::invalid("name", "the plugin name must not be empty"));
        }
        let endpoint = options.endpoint();
        let since = SystemTime::now();
        let docker = engine(&options.name, &endpoint).await?;
        let labels = LabelStore::open(options.state_dir.as_deref())?;
        let shared = Arc::new(Shared::new(docker, endpoint, options, labels));
        let watcher = tokio::spawn(events::watch(shared.clone(), since));
        let janitor = tokio::spawn(janitor(shared.clone()));
        shared.janitor.notify_one();
        tracing::info!(endpoint = %shared.endpoint, plugin = %shared.options.name, "connected to the Docker engine");
        Ok(DockerPlugin {
            inner: Arc::new(Inner {
                shared,
                tasks: vec![watcher.abort_handle(), janitor.abort_handle()],
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The options the plugin was connected with.
    pub fn options(&self) -> &DockerOptions {
        &self.shared().options
    }

    /// The engine endpoint in use.
    pub fn endpoint(&self) -> &str {
        &self.shared().endpoint
    }

    /// The engine client, for callers that need more than the Instance API.
    pub fn docker(&self) -> &Docker {
        &self.shared().docker
    }

    /// Creates the container of `blueprint` under the first name it can have: a pet's own name
    /// (`pet_name`; taken from a dead container of this plugin once), else that name with a
    /// random suffix, at most eight tries; cattle get `<prefix>-<random>`. Returns the claim on
    /// the name and the container ID.
    async fn create(
        &self,
        prefix: &str,
        pet_name: Option<&String>,
        blueprint: &Blueprint<'_>,
    ) -> Result<(Claim<'_>, String)> {
        let shared = self.shared();
        let mut freed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if attempt > 8 {
                return Err(Error::plugin(format!(
                    "cannot find a free container name with prefix {prefix}"
                )));
            }
            let name = container::candidate_name(prefix, pet_name, attempt);
            let Some(claim) = shared.claim(&name) else {
                attempt = attempt.max(2);
                continue;
            };
            let body = blueprint.body(&name);
            let options = CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            };
            match shared.docker.create_container(Some(options), body).await {
                Ok(r) => return Ok((claim, r.id)),
                Err(e) if status(&e) == Some(409) => {
                    if pet_name == Some(&name) && !freed {
                        freed = true;
                        if !self.free_pet_name(&name).await? {
                            attempt = attempt.max(2);
                        }
                    }
                }
                Err(e) if status(&e) == Some(404) && e.to_string().contains("image") => {
                    return Err(not_present(blueprint.props))
                }
                Err(e) => {
                    return Err(shared.error(&format!("creating container {name}"), e));
                }
            }
        }
    }

    /// Frees a pet's name held by a container of this plugin that no longer runs. True when the
    /// name is free to use now.
    async fn free_pet_name(&self, name: &str) -> Result<bool> {
        let shared = self.shared();
        let Some(c) = shared.inspect(name).await? else {
            return Ok(true);
        };
        let state = c.state.as_ref().and_then(|s| s.status.as_ref());
        let running = matches!(
            state,
            Some(
                ContainerStateStatusEnum::RUNNING
                    | ContainerStateStatusEnum::RESTARTING
                    | ContainerStateStatusEnum::PAUSED
            )
        );
        if running || !shared.owns(&c) {
            return Ok(false);
        }
        let id = c.id.clone().unwrap_or_else(|| name.to_string());
        tracing::info!(container = %name, ?state, "removing the dead container holding a pet's name");
        shared.remove(&id).await?;
        Ok(true)
    }
}

/// A client of the engine at `endpoint`, checked to answer; [`Error::Unavailable`] (for plugin
/// `plugin`) otherwise.
async fn engine(plugin: &str, endpoint: &str) -> Result<Docker> {
    let unavailable = |reason: String| Error::Unavailable {
        name: plugin.to_string(),
        socket: endpoint.to_string(),
        reason: format!(
            "no Docker engine answers there ({reason}); start dockerd (`dockerd &` or \
             `systemctl start docker`) or point DOCKER_HOST at a running engine"
        ),
    };
    let docker = Docker::connect_with_host(endpoint).map_err(|e| unavailable(e.to_string()))?;
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    docker
        .ping()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    Ok(docker)
}

impl Publisher for DockerPlugin {
    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared().events.subscribe()
    }
}

#[async_trait]
impl Instance for DockerPlugin {
    async fn validate(&self, properties: &Value) -> Result<()> {
        let props = DockerProperties::parse(properties)?;
        init::check_image(self.shared(), &props).await
    }

    async fn provision(&self, spec: Spec) -> Result<String> {
        let props = DockerProperties::parse(&spec.properties)?;
        let volumes = container::volume_attachments(&spec)?;
        let shared = self.shared();
        let group = container::group(&spec);
        let prefix = container::name_prefix(&group, &shared.options.name);
        let labels = container::labels(&props, &spec, &shared.options.name);
        let (mounts, env) = container::volumes_and_env(&props, &spec, &group, &volumes);
        init::ensure_networks(shared, &props).await?;
        let blueprint = Blueprint {
            props: &props,
            labels,
            env,
            mounts,
            stop_timeout: shared.options.stop_timeout_secs() as i64,
        };
        let pet_name = container::pet_name(&prefix, spec.logical_id.as_ref());
        let (claim, id) = self.create(&prefix, pet_name.as_ref(), &blueprint).await?;
        let name = claim.name.clone();
        if let Err(e) = init::start(shared, &id, &name, &props, &spec.init).await {
            let _mark = shared.mark_destroying(&id);
            if let Err(re) = shared.remove(&id).await {
                tracing::warn!(container = %name, error = %re, "cannot remove a container that failed to start");
            }
            return Err(e);
        }
        tracing::info!(container = %name, id = %&id[..id.len().min(12)], "started instance");
        drop(claim);
        Ok(name)
    }

    async fn label(&self, id: &str, labels: &Tags) -> Result<()> {
        if labels.contains_key(PLUGIN_LABEL) {
            return Err(Error::invalid(
                format!("Labels.{PLUGIN_LABEL}"),
                "is reserved: it names the plugin managing the container",
            ));
        }
        let c = self
            .shared()
            .inspect(id)
            .await?
            .filter(|c| self.shared().owns(c))
            .ok_or_else(|| Error::instance_not_found(id))?;
        let cid = c.id.unwrap_or_else(|| id.to_string());
        self.shared().labels.merge(&cid, labels)
    }

    async fn destroy(&self, id: &str, context: &DestroyContext) -> Result<()> {
        let shared = self.shared();
        let Some(c) = shared.inspect(id).await? else {
            return Ok(()); // already gone
        };
        if !shared.owns(&c) {
            tracing::warn!(container = %id, "not destroying a container this plugin did not create");
            return Ok(());
        }
        let cid = c.id.clone().unwrap_or_else(|| id.to_string());
        let _mark = shared.mark_destroying(&cid);
        tracing::info!(container = %id, reason = %context.reason, "destroying instance");
        let stop = StopContainerOptions {
            signal: None,
            t: Some(shared.options.stop_timeout_secs() as i32),
        };
        match shared.docker.stop_container(&cid, Some(stop)).await {
            Ok(()) => {}
            // 304: already stopped; 404: already gone.
            Err(e) if matches!(status(&e), Some(304 | 404)) => {}
            Err(e) => return Err(shared.error(&format!("stopping container {id}"), e)),
        }
        shared.remove(&cid).await
    }

    async fn describe_instances(&self, tags: &Tags, properties: bool) -> Result<Vec<Description>> {
        crate::describe::describe(self.shared(), tags, properties).await
    }
}
