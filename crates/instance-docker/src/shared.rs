//! What the plugin and its background tasks (the event watcher, the janitor) share: the engine
//! client, the options, the event channel, and what the plugin remembers about containers (names
//! being provisioned, containers being destroyed, deaths seen on the event stream, labels).
//!
//! Also the engine calls every part of the plugin needs: inspecting and removing a container,
//! and turning an engine error into an SPI error.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{InspectContainerOptions, RemoveContainerOptions};
use bollard::Docker;
use infrakit_spi::event::Event;
use infrakit_spi::{Error, Result};
use tokio::sync::{broadcast, Notify};

use crate::labels::LabelStore;
use crate::options::{DockerOptions, PLUGIN_LABEL};

/// Capacity of the event channel; slow subscribers lose the oldest events beyond this.
pub const EVENT_CAPACITY: usize = 1024;

/// How long a `die` seen on the event stream overrides a `running` state in container lists.
const DEATH_MEMORY: Duration = Duration::from_secs(60);

/// What the plugin and its background tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) docker: Docker,
    pub(crate) endpoint: String,
    pub(crate) options: DockerOptions,
    pub(crate) events: broadcast::Sender<Event>,
    /// Names being provisioned: hidden from `DescribeInstances` until `Provision` returns.
    pub(crate) provisioning: Mutex<HashSet<String>>,
    /// IDs of containers being destroyed by the plugin (their `die` is not news).
    destroying: Mutex<HashSet<String>>,
    /// IDs of containers whose `die` was seen and no `start` since.
    died: Mutex<HashMap<String, Instant>>,
    pub(crate) labels: LabelStore,
    /// Serialises network creation, so parallel provisions do not create a network twice.
    pub(crate) network_lock: tokio::sync::Mutex<()>,
    pub(crate) janitor: Notify,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The HTTP status of an engine answer, if it was one.
pub(crate) fn status(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Reserves a name while its container is being provisioned.
pub(crate) struct Claim<'a> {
    shared: &'a Shared,
    pub(crate) name: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        lock(&self.shared.provisioning).remove(&self.name);
    }
}

/// Marks a container as being destroyed by the plugin.
pub(crate) struct Destroying<'a> {
    shared: &'a Shared,
    id: String,
}

impl Drop for Destroying<'_> {
    fn drop(&mut self) {
        lock(&self.shared.destroying).remove(&self.id);
    }
}

impl Shared {
    /// The shared state of a plugin connected to `docker` at `endpoint`, with a new event
    /// channel and nothing remembered yet but `labels`.
    pub(crate) fn new(
        docker: Docker,
        endpoint: String,
        options: DockerOptions,
        labels: LabelStore,
    ) -> Shared {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Shared {
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
        }
    }

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

    pub(crate) fn died_recently(&self, id: &str) -> bool {
        lock(&self.died)
            .get(id)
            .is_some_and(|at| at.elapsed() < DEATH_MEMORY)
    }

    pub(crate) fn is_destroying(&self, id: &str) -> bool {
        lock(&self.destroying).contains(id)
    }

    /// Marks container `id` as being destroyed by the plugin until the mark is dropped.
    pub(crate) fn mark_destroying(&self, id: &str) -> Destroying<'_> {
        lock(&self.destroying).insert(id.to_string());
        Destroying {
            shared: self,
            id: id.to_string(),
        }
    }

    /// Reserves `name` for a provision, unless another provision of this plugin holds it.
    pub(crate) fn claim(&self, name: &str) -> Option<Claim<'_>> {
        let mut set = lock(&self.provisioning);
        set.insert(name.to_string()).then(|| Claim {
            shared: self,
            name: name.to_string(),
        })
    }

    /// An engine error as an SPI error: answers from the engine become [`Error::Plugin`] (404s
    /// [`Error::NotFound`] where that is what they mean, decided by the caller), failures to
    /// reach it [`Error::Unavailable`].
    pub(crate) fn error(&self, what: &str, e: bollard::errors::Error) -> Error {
        use bollard::errors::Error as E;
        match e {
            E::DockerResponseServerError {
                status_code,
                message,
            } => Error::plugin(format!("{what}: {message} (HTTP {status_code})")),
            E::JsonDataError { .. } | E::JsonSerdeError { .. } => {
                Error::caused(what.to_string(), e)
            }
            other => Error::Unavailable {
                name: self.options.name.clone(),
                socket: self.endpoint.clone(),
                reason: format!("{what}: {other}; is dockerd running?"),
            },
        }
    }

    /// True when container `c` carries this plugin's [`PLUGIN_LABEL`].
    pub(crate) fn owns(&self, c: &ContainerInspectResponse) -> bool {
        c.config
            .as_ref()
            .and_then(|cfg| cfg.labels.as_ref())
            .and_then(|l| l.get(PLUGIN_LABEL))
            == Some(&self.options.name)
    }

    /// Inspects container `id`, `None` if it does not exist.
    pub(crate) async fn inspect(&self, id: &str) -> Result<Option<ContainerInspectResponse>> {
        match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => Ok(Some(c)),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.error(&format!("inspecting container {id}"), e)),
        }
    }

    /// Force-removes container `id` with its anonymous volumes; a missing one is fine.
    pub(crate) async fn remove(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptions {
            v: true,
            force: true,
            link: false,
        };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => {}
            Err(e) if status(&e) == Some(404) => {}
            // "removal already in progress"
            Err(e) if status(&e) == Some(409) => {}
            Err(e) => return Err(self.error(&format!("removing container {id}"), e)),
        }
        self.labels.remove(id);
        Ok(())
    }
}
