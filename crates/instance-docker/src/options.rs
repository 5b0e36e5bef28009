//! How the plugin connects and behaves ([`DockerOptions`]), with the defaults, and the label that
//! marks the containers it manages ([`PLUGIN_LABEL`]).

use std::path::PathBuf;
use std::time::Duration;

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

    /// The engine endpoint to connect to: [`DockerOptions::host`], else `DOCKER_HOST` (when not
    /// empty), else [`DEFAULT_ENDPOINT`]; a bare path is a Unix socket.
    pub(crate) fn endpoint(&self) -> String {
        let endpoint = self
            .host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        if endpoint.starts_with('/') {
            format!("unix://{endpoint}")
        } else {
            endpoint
        }
    }

    /// [`DockerOptions::stop_timeout`] in whole seconds, as the engine takes it.
    pub(crate) fn stop_timeout_secs(&self) -> u64 {
        self.stop_timeout.as_secs().min(i32::MAX as u64)
    }
}
