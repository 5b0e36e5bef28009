//! The Docker instance plugin: every instance is a container of the local (or `DOCKER_HOST`)
//! Docker engine.
//!
//! Instance properties name the image and how to run it ([`DockerProperties`]), either in
//! InfraKit's original shape, with the Docker API's own field names,
//! `{"Config": {"Image": "...", "Cmd": [...]}, "HostConfig": {...}, "NetworkAttachments": [...]}`,
//! or in a short form that reads like `docker run`:
//! `{"image": "...", "command": ["sh", "-c", "..."], "env": {"K": "V"}, "ports": ["8080:80"]}`.
//! Images are never pulled: an image must already be present on the engine.
//!
//! # Containers
//!
//! The instance ID is the container name: `<group>-<logical ID>` for a pet (stable across
//! replacements; a suffix is added only while the previous holder of the name still runs, as in
//! a surge rollout), `<group>-<8 random characters>` for cattle, where `<group>` is the
//! `infrakit.group` tag (the plugin name without one), both reduced to the characters Docker
//! allows in names. A dead container holding a pet's name is removed when the pet is provisioned
//! again.
//!
//! Every container carries the spec's tags as labels, plus the properties' labels and
//! `infrakit.plugin=<plugin name>` ([`PLUGIN_LABEL`]); the plugin only ever lists, destroys,
//! labels and reports containers with its own `infrakit.plugin` label, so several plugins (or
//! test runs) can share an engine. The container's environment holds `INFRAKIT_INSTANCE_ID`,
//! `INFRAKIT_LOGICAL_ID` and `INFRAKIT_GROUP`, as with the process plugin.
//!
//! # Volumes
//!
//! An attachment of type `volume` (e.g. the vanilla flavor's
//! `{"ID": "data-{{ LogicalID }}", "Type": "volume"}`) is a named Docker volume called after the
//! attachment ID, created by the engine on first use and mounted at `/data/<ID>`
//! ([`VOLUME_MOUNT_ROOT`]), unless the properties already mount that volume elsewhere (short
//! form `"volumes": ["<ID>:/var/lib/db"]`). The mount point is also in
//! `INFRAKIT_VOLUME_<ID>` ([`volume_env_name`]). The plugin never removes volumes, so a
//! replaced pet finds its data again.
//!
//! # Lifecycle
//!
//! `Provision` creates the container, connects its networks (creating missing ones), starts it,
//! then runs the spec's `Init` (if not empty) inside it with `/bin/sh -c`; a non-zero exit
//! removes the container and fails with the script's output. A container appears in
//! `DescribeInstances` once its `Provision` has returned. `Destroy` stops the container (SIGTERM,
//! then SIGKILL after the stop timeout) and removes it with its anonymous volumes.
//!
//! `DescribeInstances` lists only `created`, `running` and `restarting` containers: one that
//! exited is gone as an instance, so the group controller replaces it. Exited containers are kept
//! for post-mortems (`docker logs`), the newest [`DockerOptions::keep_exited`] only.
//!
//! `Label` merges tags, which Docker cannot do on an existing container: the extra tags are kept
//! by the plugin (in `labels.json` of its state directory, if it has one) and merged into what
//! `DescribeInstances` and the events report.
//!
//! # Events
//!
//! The plugin follows the engine's event stream and publishes `exited`, `oom`, `destroyed`,
//! `health` and, after a reconnection, `resync` events ([`events`]), so the group controller
//! replaces a dead container without waiting for its next poll.

pub mod events;
mod labels;
pub mod properties;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummaryStateEnum,
    HealthStatusEnum, Mount, MountType, NetworkConnectRequest, NetworkCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, InspectNetworkOptions, ListContainersOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;
use infrakit_spi::event::{Event, Publisher};
use infrakit_spi::instance::{tags_match, Properties, GROUP_TAG, LOGICAL_ID_TAG};
use infrakit_spi::{Description, DestroyContext, Error, Instance, Result, Spec, Tags};
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::{broadcast, Notify};
use tokio::task::AbortHandle;

pub use labels::LABELS_FILE;
pub use properties::{DockerProperties, NetworkAttachment};

/// Label naming the plugin that created a container; the plugin only manages containers whose
/// value is its own name.
pub const PLUGIN_LABEL: &str = "infrakit.plugin";
/// Default plugin name.
pub const DEFAULT_NAME: &str = "instance-docker";
/// Engine endpoint used when neither the options nor `DOCKER_HOST` name one.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";
/// Default time a container gets to stop after SIGTERM before it is killed.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time the `Init` script may run.
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(300);
/// Default number of exited containers kept for post-mortems.
pub const DEFAULT_KEEP_EXITED: usize = 16;
/// Where volume attachments are mounted unless the properties mount them elsewhere.
pub const VOLUME_MOUNT_ROOT: &str = "/data";
/// Attachment type that becomes a named Docker volume.
pub const VOLUME_ATTACHMENT: &str = "volume";
/// Capacity of the event channel; slow subscribers lose the oldest events beyond this.
pub const EVENT_CAPACITY: usize = 1024;

/// Environment variable holding the instance ID (the container name).
pub const ENV_INSTANCE_ID: &str = "INFRAKIT_INSTANCE_ID";
/// Environment variable holding the logical ID (empty for cattle).
pub const ENV_LOGICAL_ID: &str = "INFRAKIT_LOGICAL_ID";
/// Environment variable holding the `infrakit.group` tag (empty if absent).
pub const ENV_GROUP: &str = "INFRAKIT_GROUP";
/// Prefix of the variables holding each volume attachment's mount point.
pub const ENV_VOLUME_PREFIX: &str = "INFRAKIT_VOLUME_";

/// How much of the `Init` output an error quotes.
const INIT_OUTPUT_BYTES: usize = 2048;
/// How many inspections `DescribeInstances` runs at once.
const INSPECT_CONCURRENCY: usize = 8;
/// Wait before the janitor removes old exited containers, so bursts of deaths are handled once.
const JANITOR_DELAY: Duration = Duration::from_secs(2);
/// How long a `die` seen on the event stream overrides a `running` state in container lists.
const DEATH_MEMORY: Duration = Duration::from_secs(60);

/// How the plugin connects and behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerOptions {
    /// Plugin name, put on every container as `infrakit.plugin=<name>`.
    pub name: String,
    /// Engine endpoint (`unix:///path`, `tcp://host:port`); `None` reads `DOCKER_HOST`, falling
    /// back to [`DEFAULT_ENDPOINT`].
    pub host: Option<String>,
    /// Time a container gets between SIGTERM and SIGKILL on `Destroy`.
    pub stop_timeout: Duration,
    /// Time the `Init` script may run before the container is removed and `Provision` fails.
    pub init_timeout: Duration,
    /// Directory for the plugin's state (`labels.json`); `None` keeps labels in memory.
    pub state_dir: Option<PathBuf>,
    /// How many exited containers of this plugin are kept for post-mortems.
    pub keep_exited: usize,
}

impl Default for DockerOptions {
    fn default() -> Self {
        DockerOptions {
            name: DEFAULT_NAME.to_string(),
            host: None,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            init_timeout: DEFAULT_INIT_TIMEOUT,
            state_dir: None,
            keep_exited: DEFAULT_KEEP_EXITED,
        }
    }
}

impl DockerOptions {
    /// Default options with plugin name `name`.
    pub fn named(name: impl Into<String>) -> Self {
        DockerOptions {
            name: name.into(),
            ..DockerOptions::default()
        }
    }
}

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

/// What the plugin and its background tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) docker: Docker,
    endpoint: String,
    pub(crate) options: DockerOptions,
    events: broadcast::Sender<Event>,
    /// Names being provisioned: hidden from `DescribeInstances` until `Provision` returns.
    provisioning: Mutex<HashSet<String>>,
    /// IDs of containers being destroyed by the plugin (their `die` is not news).
    destroying: Mutex<HashSet<String>>,
    /// IDs of containers whose `die` was seen and no `start` since.
    died: Mutex<HashMap<String, Instant>>,
    pub(crate) labels: labels::LabelStore,
    /// Serialises network creation, so parallel provisions do not create a network twice.
    network_lock: tokio::sync::Mutex<()>,
    pub(crate) janitor: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn publish(&self, event: Event) {
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    pub(crate) fn record_death(&self, id: &str) {
        let mut died = lock(&self.died);
        let now = Instant::now();
        died.retain(|_, at| now.duration_since(*at) < DEATH_MEMORY);
        died.insert(id.to_string(), now);
    }

    pub(crate) fn forget_death(&self, id: &str) {
        lock(&self.died).remove(id);
    }

    fn died_recently(&self, id: &str) -> bool {
        lock(&self.died)
            .get(id)
            .is_some_and(|at| at.elapsed() < DEATH_MEMORY)
    }

    pub(crate) fn is_destroying(&self, id: &str) -> bool {
        lock(&self.destroying).contains(id)
    }

    /// An engine error as an SPI error: answers from the engine become [`Error::Plugin`] (404s
    /// [`Error::NotFound`] where that is what they mean, decided by the caller), failures to
    /// reach it [`Error::Unavailable`].
    fn error(&self, what: &str, e: bollard::errors::Error) -> Error {
        use bollard::errors::Error as E;
        match e {
            E::DockerResponseServerError {
                status_code,
                message,
            } => Error::plugin(format!("{what}: {message} (HTTP {status_code})")),
            E::JsonDataError { .. } | E::JsonSerdeError { .. } => {
                Error::plugin(format!("{what}: {e}"))
            }
            other => Error::Unavailable {
                name: self.options.name.clone(),
                socket: self.endpoint.clone(),
                reason: format!("{what}: {other}; is dockerd running?"),
            },
        }
    }

    fn owns(&self, c: &ContainerInspectResponse) -> bool {
        c.config
            .as_ref()
            .and_then(|cfg| cfg.labels.as_ref())
            .and_then(|l| l.get(PLUGIN_LABEL))
            == Some(&self.options.name)
    }
}

/// The HTTP status of an engine answer, if it was one.
fn status(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The name of the variable holding the mount point of volume attachment `id`:
/// [`ENV_VOLUME_PREFIX`] followed by the ID upper-cased, every character other than a letter or
/// digit replaced by `_` (`data-db1` is `INFRAKIT_VOLUME_DATA_DB1`).
pub fn volume_env_name(id: &str) -> String {
    let suffix: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{ENV_VOLUME_PREFIX}{suffix}")
}

/// `s` reduced to the characters Docker allows in container names (`[a-zA-Z0-9_.-]`, others
/// become `-`), starting with a letter or digit.
pub use infrakit_spi::instance::safe_name as sanitize_name;

fn random_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn live_summary_state(s: Option<&ContainerSummaryStateEnum>) -> bool {
    matches!(
        s,
        Some(
            ContainerSummaryStateEnum::CREATED
                | ContainerSummaryStateEnum::RUNNING
                | ContainerSummaryStateEnum::RESTARTING
        )
    )
}

fn live_state(s: Option<&ContainerStateStatusEnum>) -> bool {
    matches!(
        s,
        Some(
            ContainerStateStatusEnum::CREATED
                | ContainerStateStatusEnum::RUNNING
                | ContainerStateStatusEnum::RESTARTING
        )
    )
}

/// Reserves a name while its container is being provisioned.
struct Claim<'a> {
    shared: &'a Shared,
    name: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        lock(&self.shared.provisioning).remove(&self.name);
    }
}

/// Marks a container as being destroyed by the plugin.
struct Destroying<'a> {
    shared: &'a Shared,
    id: String,
}

impl Drop for Destroying<'_> {
    fn drop(&mut self) {
        lock(&self.shared.destroying).remove(&self.id);
    }
}

/// The summary `DescribeInstances` reports as an instance's properties.
fn summary(c: &ContainerInspectResponse) -> Value {
    let state = c.state.as_ref();
    let status = state
        .and_then(|s| s.status.as_ref())
        .map(|s| s.to_string())
        .unwrap_or_default();
    let health = match state
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.status.as_ref())
    {
        Some(HealthStatusEnum::HEALTHY) => "healthy",
        Some(HealthStatusEnum::UNHEALTHY) => "unhealthy",
        Some(HealthStatusEnum::STARTING) => "starting",
        _ => "none",
    };
    let networks = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref());
    // Prefer the default bridge's address, then any network's, in name order.
    let ip = networks.and_then(|n| {
        let mut named: Vec<(&String, &bollard::models::EndpointSettings)> = n.iter().collect();
        named.sort_by_key(|(name, _)| (name.as_str() != "bridge", name.as_str()));
        named
            .into_iter()
            .filter_map(|(_, e)| e.ip_address.clone())
            .find(|ip| !ip.is_empty())
    });
    json!({
        "State": status,
        "Health": health,
        "IP": ip.unwrap_or_default(),
        "StartedAt": state.and_then(|s| s.started_at.clone()).unwrap_or_default(),
        "Image": c.config.as_ref().and_then(|cfg| cfg.image.clone()).unwrap_or_default(),
        "Name": c.name.as_deref().unwrap_or_default().trim_start_matches('/'),
        "ContainerID": c.id.clone().unwrap_or_default(),
    })
}

/// The end of `bytes`, as text, at most [`INIT_OUTPUT_BYTES`] long.
fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(INIT_OUTPUT_BYTES);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

impl DockerPlugin {
    /// Connects to the engine named by `options.host`, `DOCKER_HOST` or [`DEFAULT_ENDPOINT`],
    /// checks that it answers, and starts following its events.
    ///
    /// Fails with [`Error::Unavailable`] naming the endpoint when no engine answers. Must be
    /// called from within a tokio runtime.
    pub async fn connect(options: DockerOptions) -> Result<DockerPlugin> {
        if options.name.trim().is_empty() {
            return Err(Error::invalid("name", "the plugin name must not be empty"));
        }
        let endpoint = options
            .host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let endpoint = if endpoint.starts_with('/') {
            format!("unix://{endpoint}")
        } else {
            endpoint
        };
        let unavailable = |reason: String| Error::Unavailable {
            name: options.name.clone(),
            socket: endpoint.clone(),
            reason: format!(
                "no Docker engine answers there ({reason}); start dockerd (`dockerd &` or \
                 `systemctl start docker`) or point DOCKER_HOST at a running engine"
            ),
        };
        let since = SystemTime::now();
        let docker =
            Docker::connect_with_host(&endpoint).map_err(|e| unavailable(e.to_string()))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        docker
            .ping()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let labels = labels::LabelStore::open(options.state_dir.as_deref())?;
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let shared = Arc::new(Shared {
            docker,
            endpoint,
            options,
            events,
            provisioning: Mutex::new(HashSet::new()),
            destroying: Mutex::new(HashSet::new()),
            died: Mutex::new(HashMap::new()),
            labels,
            network_lock: tokio::sync::Mutex::new(()),
            janitor: Notify::new(),
        });
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

    /// Checks that the image of `props` is present on the engine.
    async fn check_image(&self, props: &DockerProperties) -> Result<()> {
        match self.docker().inspect_image(props.image()).await {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Err(not_present(props)),
            Err(e) => Err(self
                .shared()
                .error(&format!("inspecting image {:?}", props.image()), e)),
        }
    }

    /// Creates network `name` (with `driver`, default `bridge`) unless it exists.
    async fn ensure_network(&self, name: &str, driver: Option<&str>) -> Result<()> {
        let _serial = self.shared().network_lock.lock().await;
        match self
            .docker()
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if status(&e) == Some(404) => {}
            Err(e) => {
                return Err(self
                    .shared()
                    .error(&format!("inspecting network {name}"), e))
            }
        }
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some(driver.unwrap_or("bridge").to_string()),
            labels: Some(HashMap::from([(
                PLUGIN_LABEL.to_string(),
                self.options().name.clone(),
            )])),
            ..Default::default()
        };
        match self.docker().create_network(request).await {
            Ok(_) => {
                tracing::info!(network = %name, "created network");
                Ok(())
            }
            Err(e) if status(&e) == Some(409) => Ok(()),
            Err(e) => Err(self.shared().error(&format!("creating network {name}"), e)),
        }
    }

    /// Reserves `name` for a provision, unless another provision of this plugin holds it.
    fn claim(&self, name: &str) -> Option<Claim<'_>> {
        let mut set = lock(&self.shared().provisioning);
        set.insert(name.to_string()).then(|| Claim {
            shared: self.shared(),
            name: name.to_string(),
        })
    }

    /// Frees a pet's name held by a container of this plugin that no longer runs. True when the
    /// name is free to use now.
    async fn free_pet_name(&self, name: &str) -> Result<bool> {
        let c = match self
            .docker()
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => c,
            Err(e) if status(&e) == Some(404) => return Ok(true),
            Err(e) => {
                return Err(self
                    .shared()
                    .error(&format!("inspecting container {name}"), e))
            }
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
        if running || !self.shared().owns(&c) {
            return Ok(false);
        }
        let id = c.id.clone().unwrap_or_else(|| name.to_string());
        tracing::info!(container = %name, ?state, "removing the dead container holding a pet's name");
        self.remove(&id).await?;
        Ok(true)
    }

    /// Force-removes container `id` with its anonymous volumes; a missing one is fine.
    async fn remove(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptions {
            v: true,
            force: true,
            link: false,
        };
        match self.docker().remove_container(id, Some(options)).await {
            Ok(()) => {}
            Err(e) if status(&e) == Some(404) => {}
            // "removal already in progress"
            Err(e) if status(&e) == Some(409) => {}
            Err(e) => return Err(self.shared().error(&format!("removing container {id}"), e)),
        }
        self.shared().labels.remove(id);
        Ok(())
    }

    /// Runs `script` in container `id` with `/bin/sh -c`; fails with its output unless it exits
    /// with status 0.
    async fn run_init(&self, id: &str, name: &str, script: &str) -> Result<()> {
        let exec = self
            .docker()
            .create_exec(
                id,
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(vec!["/bin/sh", "-c", script]),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                self.shared()
                    .error(&format!("Init: cannot exec in {name}"), e)
            })?;
        let run = async {
            let mut output = Vec::new();
            match self
                .docker()
                .start_exec(&exec.id, None::<StartExecOptions>)
                .await
                .map_err(|e| {
                    self.shared()
                        .error(&format!("Init: cannot start in {name}"), e)
                })? {
                StartExecResults::Attached {
                    output: mut out, ..
                } => {
                    while let Some(chunk) = out.next().await {
                        match chunk {
                            Ok(log) => {
                                output.extend_from_slice(&log.into_bytes());
                                if output.len() > 4 * INIT_OUTPUT_BYTES {
                                    output.drain(..output.len() - INIT_OUTPUT_BYTES);
                                }
                            }
                            Err(e) => {
                                return Err(self
                                    .shared()
                                    .error(&format!("Init: reading its output in {name}"), e))
                            }
                        }
                    }
                }
                StartExecResults::Detached => {}
            }
            // The exit code is recorded as the output ends; poll briefly if it lags.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let info = self.docker().inspect_exec(&exec.id).await.map_err(|e| {
                    self.shared()
                        .error(&format!("Init: inspecting it in {name}"), e)
                })?;
                match (info.running, info.exit_code) {
                    (Some(false), Some(code)) => return Ok((code, output)),
                    _ if Instant::now() >= deadline => return Ok((-1, output)),
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        };
        match tokio::time::timeout(self.options().init_timeout, run).await {
            Ok(Ok((0, _))) => Ok(()),
            Ok(Ok((code, output))) => Err(Error::plugin(format!(
                "Init failed in container {name} (exit code {code}); output: {:?}",
                tail(&output)
            ))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::plugin(format!(
                "Init timed out in container {name} after {}",
                humantime::format_duration(self.options().init_timeout)
            ))),
        }
    }

    /// Everything after the container was created: networks, start, Init.
    async fn start(
        &self,
        id: &str,
        name: &str,
        props: &DockerProperties,
        init: &str,
    ) -> Result<()> {
        for n in props.networks() {
            if props.user_network_mode() == Some(n.name.as_str()) {
                continue;
            }
            let request = NetworkConnectRequest {
                container: id.to_string(),
                endpoint_config: None,
            };
            self.docker()
                .connect_network(&n.name, request)
                .await
                .map_err(|e| {
                    self.shared()
                        .error(&format!("connecting {name} to network {}", n.name), e)
                })?;
        }
        self.docker()
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|e| {
                self.shared()
                    .error(&format!("starting container {name}"), e)
            })?;
        if !init.trim().is_empty() {
            self.run_init(id, name, init).await?;
        }
        Ok(())
    }

    /// Inspects container `id`, `None` if it does not exist.
    async fn inspect(&self, id: &str) -> Result<Option<ContainerInspectResponse>> {
        match self
            .docker()
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => Ok(Some(c)),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(self
                .shared()
                .error(&format!("inspecting container {id}"), e)),
        }
    }
}

fn not_present(props: &DockerProperties) -> Error {
    Error::invalid(
        props.image_path(),
        format!(
            "image '{}' is not present locally; build or load it first (no registry is used)",
            props.image()
        ),
    )
}

/// Volume attachment IDs of `spec`, checked to be valid Docker volume names.
fn volume_attachments(spec: &Spec) -> Result<Vec<&str>> {
    let mut out = Vec::new();
    for (i, a) in spec.attachments.iter().enumerate() {
        if a.kind != VOLUME_ATTACHMENT {
            continue;
        }
        if !properties::valid_volume_name(&a.id) {
            return Err(Error::invalid(
                format!("Spec.Attachments[{i}].ID"),
                format!(
                    "{:?} is not a Docker volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)",
                    a.id
                ),
            ));
        }
        if !out.contains(&a.id.as_str()) {
            out.push(a.id.as_str());
        }
    }
    Ok(out)
}

/// Removes exited containers of the plugin beyond the newest `keep_exited`, and forgets the
/// labels of containers that no longer exist. Woken after deaths and reconnections.
async fn janitor(shared: Arc<Shared>) {
    loop {
        shared.janitor.notified().await;
        tokio::time::sleep(JANITOR_DELAY).await;
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{PLUGIN_LABEL}={}", shared.options.name)],
        )]);
        let list = match shared
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "janitor: cannot list containers");
                continue;
            }
        };
        let existing: BTreeSet<String> = list.iter().filter_map(|c| c.id.clone()).collect();
        shared.labels.retain(&existing);
        let mut dead: Vec<_> = list
            .into_iter()
            .filter(|c| {
                matches!(
                    c.state,
                    Some(ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD)
                )
            })
            .collect();
        dead.sort_by_key(|c| std::cmp::Reverse(c.created.unwrap_or(0)));
        for c in dead.into_iter().skip(shared.options.keep_exited) {
            let Some(id) = c.id else { continue };
            let options = RemoveContainerOptions {
                v: true,
                force: true,
                link: false,
            };
            match shared.docker.remove_container(&id, Some(options)).await {
                Ok(()) => tracing::debug!(container = %id, "removed an old exited container"),
                Err(e) => tracing::debug!(container = %id, error = %e, "janitor: cannot remove"),
            }
        }
    }
}

impl Publisher for DockerPlugin {
    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared().events.subscribe()
    }
}

/// One container found by `DescribeInstances`, before inspection.
struct Found {
    id: String,
    name: String,
    tags: Tags,
    /// Listed as running although its `die` was seen: the list may lag; inspect to be sure.
    suspect: bool,
    /// When the engine created the container.
    created: Option<std::time::SystemTime>,
}

#[async_trait]
impl Instance for DockerPlugin {
    async fn validate(&self, properties: &Value) -> Result<()> {
        let props = DockerProperties::parse(properties)?;
        self.check_image(&props).await
    }

    async fn provision(&self, spec: Spec) -> Result<String> {
        let props = DockerProperties::parse(&spec.properties)?;
        let volumes = volume_attachments(&spec)?;
        let shared = self.shared();
        let group = spec
            .tags
            .get(GROUP_TAG)
            .map(str::to_string)
            .unwrap_or_default();
        let prefix = sanitize_name(if group.is_empty() {
            &shared.options.name
        } else {
            &group
        });

        let mut labels = props.labels().clone();
        labels.extend(
            spec.tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        if let Some(l) = &spec.logical_id {
            labels.insert(LOGICAL_ID_TAG, l);
        }
        labels.insert(PLUGIN_LABEL, &shared.options.name);

        let already = props.mounted_volumes();
        let mut mounts = Vec::new();
        let mut env = vec![
            (
                ENV_LOGICAL_ID.to_string(),
                spec.logical_id.clone().unwrap_or_default(),
            ),
            (ENV_GROUP.to_string(), group.clone()),
        ];
        for id in &volumes {
            let target = match already.get(*id) {
                Some(t) => t.clone(),
                None => {
                    let t = format!("{VOLUME_MOUNT_ROOT}/{id}");
                    mounts.push(Mount {
                        target: Some(t.clone()),
                        source: Some(id.to_string()),
                        typ: Some(MountType::VOLUME),
                        ..Default::default()
                    });
                    t
                }
            };
            env.push((volume_env_name(id), target));
        }

        if let Some(n) = props.user_network_mode() {
            self.ensure_network(n, None).await?;
        }
        for n in props.networks() {
            self.ensure_network(&n.name, n.driver.as_deref()).await?;
        }

        let stop_timeout = shared.options.stop_timeout.as_secs().min(i32::MAX as u64) as i64;
        let pet_name = spec
            .logical_id
            .as_ref()
            .map(|l| format!("{prefix}-{}", sanitize_name(l)));
        let mut freed = false;
        let mut attempt = 0;
        let (claim, id) = loop {
            attempt += 1;
            if attempt > 8 {
                return Err(Error::plugin(format!(
                    "cannot find a free container name with prefix {prefix}"
                )));
            }
            let name = match &pet_name {
                Some(p) if attempt <= 2 => p.clone(),
                Some(p) => format!("{p}-{}", random_suffix(6)),
                None => format!("{prefix}-{}", random_suffix(8)),
            };
            let Some(claim) = self.claim(&name) else {
                attempt = attempt.max(2);
                continue;
            };
            let mut env = env.clone();
            env.push((ENV_INSTANCE_ID.to_string(), name.clone()));
            let mut body = props.container_body(labels.clone(), &env, mounts.clone());
            // `docker stop` and the engine's own shutdown use the same grace as Destroy.
            body.stop_timeout.get_or_insert(stop_timeout);
            let options = CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            };
            match shared.docker.create_container(Some(options), body).await {
                Ok(r) => break (claim, r.id),
                Err(e) if status(&e) == Some(409) => {
                    if pet_name.as_deref() == Some(name.as_str()) && !freed {
                        freed = true;
                        if !self.free_pet_name(&name).await? {
                            attempt = attempt.max(2);
                        }
                    }
                }
                Err(e) if status(&e) == Some(404) && e.to_string().contains("image") => {
                    return Err(not_present(&props))
                }
                Err(e) => {
                    return Err(shared.error(&format!("creating container {name}"), e));
                }
            }
        };
        let name = claim.name.clone();
        if let Err(e) = self.start(&id, &name, &props, &spec.init).await {
            let _mark = {
                lock(&shared.destroying).insert(id.clone());
                Destroying {
                    shared,
                    id: id.clone(),
                }
            };
            if let Err(re) = self.remove(&id).await {
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
            .inspect(id)
            .await?
            .filter(|c| self.shared().owns(c))
            .ok_or_else(|| Error::instance_not_found(id))?;
        let cid = c.id.unwrap_or_else(|| id.to_string());
        self.shared().labels.merge(&cid, labels)
    }

    async fn destroy(&self, id: &str, context: &DestroyContext) -> Result<()> {
        let Some(c) = self.inspect(id).await? else {
            return Ok(()); // already gone
        };
        if !self.shared().owns(&c) {
            tracing::warn!(container = %id, "not destroying a container this plugin did not create");
            return Ok(());
        }
        let cid = c.id.clone().unwrap_or_else(|| id.to_string());
        lock(&self.shared().destroying).insert(cid.clone());
        let _mark = Destroying {
            shared: self.shared(),
            id: cid.clone(),
        };
        tracing::info!(container = %id, reason = %context.reason, "destroying instance");
        let timeout = self.options().stop_timeout.as_secs().min(i32::MAX as u64) as i32;
        let stop = StopContainerOptions {
            signal: None,
            t: Some(timeout),
        };
        match self.docker().stop_container(&cid, Some(stop)).await {
            Ok(()) => {}
            // 304: already stopped; 404: already gone.
            Err(e) if matches!(status(&e), Some(304 | 404)) => {}
            Err(e) => return Err(self.shared().error(&format!("stopping container {id}"), e)),
        }
        self.remove(&cid).await
    }

    async fn describe_instances(&self, tags: &Tags, properties: bool) -> Result<Vec<Description>> {
        let shared = self.shared();
        let extras = shared.labels.snapshot();
        // Tags that Label may have set cannot be filtered by the engine.
        let relabelled: HashSet<&str> = extras.values().flat_map(|t| t.keys()).collect();
        let mut label_filters = vec![format!("{PLUGIN_LABEL}={}", shared.options.name)];
        label_filters.extend(
            tags.iter()
                .filter(|(k, _)| !relabelled.contains(k))
                .map(|(k, v)| format!("{k}={v}")),
        );
        let list = shared
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([("label".to_string(), label_filters)])),
                ..Default::default()
            }))
            .await
            .map_err(|e| shared.error("listing containers", e))?;
        let provisioning = lock(&shared.provisioning).clone();
        let mut found = Vec::new();
        for c in list {
            let (Some(id), Some(name)) = (c.id, c.names.and_then(|n| n.into_iter().next())) else {
                continue;
            };
            let name = name.trim_start_matches('/').to_string();
            if !live_summary_state(c.state.as_ref()) || provisioning.contains(&name) {
                continue;
            }
            let mut merged: Tags = c.labels.unwrap_or_default().into_iter().collect();
            if let Some(extra) = extras.get(&id) {
                merged.extend(extra);
            }
            if !tags_match(&merged, tags) {
                continue;
            }
            let suspect =
                c.state == Some(ContainerSummaryStateEnum::RUNNING) && shared.died_recently(&id);
            let created = c
                .created
                .and_then(|secs| u64::try_from(secs).ok())
                .map(|secs| std::time::UNIX_EPOCH + Duration::from_secs(secs));
            found.push(Found {
                id,
                name,
                tags: merged,
                suspect,
                created,
            });
        }

        let inspected: Vec<Option<Description>> = futures::stream::iter(found)
            .map(|f| async move {
                if !(properties || f.suspect) {
                    return Ok(Some(f.describe(None)));
                }
                let Some(c) = self.inspect(&f.id).await? else {
                    return Ok(None);
                };
                let state = c.state.as_ref().and_then(|s| s.status.as_ref());
                if !live_state(state) {
                    return Ok(None);
                }
                if state == Some(&ContainerStateStatusEnum::RUNNING) && f.suspect {
                    // Restarted since (a restart policy): it is alive.
                    shared.forget_death(&f.id);
                }
                let props = properties.then(|| summary(&c));
                Ok::<_, Error>(Some(f.describe(props)))
            })
            .buffer_unordered(INSPECT_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        let mut out: Vec<Description> = inspected.into_iter().flatten().collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

impl Found {
    fn describe(self, properties: Option<Value>) -> Description {
        Description {
            logical_id: self.tags.get(LOGICAL_ID_TAG).map(str::to_string),
            id: self.name,
            tags: self.tags,
            properties: properties.as_ref().map(Properties::new),
            created: self.created,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_docker_names() {
        assert_eq!(sanitize_name("web"), "web");
        assert_eq!(sanitize_name("my group/1"), "my-group-1");
        assert_eq!(sanitize_name("_x"), "x");
        assert_eq!(sanitize_name("--"), "x");
        assert_eq!(sanitize_name("db.1_a"), "db.1_a");
    }

    #[test]
    fn volume_variables() {
        assert_eq!(volume_env_name("data-db1"), "INFRAKIT_VOLUME_DATA_DB1");
    }

    #[test]
    fn attachments_must_be_volume_names() {
        let spec: Spec = serde_json::from_value(json!({
            "Attachments": [{"ID": "ok-1", "Type": "volume"}, {"ID": "x", "Type": "ebs"}, {"ID": "a/b", "Type": "volume"}]
        }))
        .unwrap();
        let err = volume_attachments(&spec).unwrap_err().to_string();
        assert!(err.starts_with("Spec.Attachments[2].ID"), "{err}");
    }
}
