//! The built-in plugins and how to serve them on their sockets.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result};

use infrakit_flavor_combo::ComboFlavor;
use infrakit_flavor_swarm::SwarmFlavor;
use infrakit_flavor_vanilla::VanillaFlavor;
use infrakit_flavor_zookeeper::ZooKeeperFlavor;
use infrakit_group::{ControllerConfig, GroupPlugin};
use infrakit_instance_docker::{DockerOptions, DockerPlugin};
use infrakit_instance_file::FilePlugin;
use infrakit_instance_process::ProcessPlugin;
use infrakit_instance_simulator::{Simulator, SimulatorConfig};
use infrakit_instance_terraform::{TerraformOptions, TerraformPlugin};
use infrakit_rpc::{dir, Handlers, PluginServer, Plugins};
use infrakit_store::FileStore;

use crate::cli::PluginOptions;

/// A kind of built-in plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The group controller.
    Group,
    /// Local processes.
    InstanceProcess,
    /// One JSON file per instance (InfraKit's testing plugin).
    InstanceFile,
    /// In-memory simulated instances.
    InstanceSimulator,
    /// Docker containers (needs a Docker engine).
    InstanceDocker,
    /// Resources created by Terraform (needs the `terraform` binary).
    InstanceTerraform,
    /// The vanilla flavor.
    FlavorVanilla,
    /// Several flavors as one.
    FlavorCombo,
    /// ZooKeeper ensemble members.
    FlavorZookeeper,
    /// Docker Swarm managers and workers (types `manager` and `worker`).
    FlavorSwarm,
}

/// Every built-in kind.
pub const ALL: &[Kind] = &[
    Kind::InstanceProcess,
    Kind::InstanceFile,
    Kind::InstanceSimulator,
    Kind::InstanceDocker,
    Kind::InstanceTerraform,
    Kind::FlavorVanilla,
    Kind::FlavorCombo,
    Kind::FlavorZookeeper,
    Kind::FlavorSwarm,
    Kind::Group,
];

/// The kinds `infrakit up` serves: everything that needs no outside service.
pub const EMBEDDED: &[Kind] = &[
    Kind::InstanceProcess,
    Kind::InstanceFile,
    Kind::InstanceSimulator,
    Kind::FlavorVanilla,
    Kind::FlavorCombo,
    Kind::FlavorZookeeper,
];

impl Kind {
    /// The kind's default plugin name.
    pub fn default_name(self) -> &'static str {
        match self {
            Kind::Group => "group",
            Kind::InstanceProcess => "instance-process",
            Kind::InstanceFile => "instance-file",
            Kind::InstanceSimulator => "instance-simulator",
            Kind::InstanceDocker => "instance-docker",
            Kind::InstanceTerraform => "instance-terraform",
            Kind::FlavorVanilla => "flavor-vanilla",
            Kind::FlavorCombo => "flavor-combo",
            Kind::FlavorZookeeper => "flavor-zookeeper",
            Kind::FlavorSwarm => "flavor-swarm",
        }
    }
}

impl Kind {
    /// Async worker threads of a process serving this plugin alone (`infrakit plugin run`, which
    /// `plugin start` launches); `None`: tokio's default, one per core.
    ///
    /// instance-file: one. Its file work runs on threads of its own, so its async side only
    /// answers calls. With a worker per core, a describe's answer (420 KB at 1,000 instances)
    /// is built on one worker and written out and freed on another, and mimalloc keeps pages of
    /// large blocks on each: measured under a describe every 100 ms, 5.4 MB of heap with one
    /// worker against 10 to 13 MB with two (and more on machines with more cores).
    pub fn async_workers(self) -> Option<usize> {
        match self {
            Kind::InstanceFile => Some(1),
            _ => None,
        }
    }
}

impl FromStr for Kind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Kind> {
        ALL.iter()
            .copied()
            .find(|k| k.default_name() == s)
            .or(match s {
                "process" => Some(Kind::InstanceProcess),
                "file" => Some(Kind::InstanceFile),
                "simulator" => Some(Kind::InstanceSimulator),
                "docker" => Some(Kind::InstanceDocker),
                "terraform" => Some(Kind::InstanceTerraform),
                "vanilla" => Some(Kind::FlavorVanilla),
                "combo" => Some(Kind::FlavorCombo),
                "zookeeper" => Some(Kind::FlavorZookeeper),
                "swarm" => Some(Kind::FlavorSwarm),
                _ => None,
            })
            .with_context(|| {
                let names: Vec<_> = ALL.iter().map(|k| k.default_name()).collect();
                format!(
                    "unknown plugin kind '{s}' (built-in kinds: {})",
                    names.join(", ")
                )
            })
    }
}

/// Splits `KIND[:NAME]`.
pub fn parse_spec(spec: &str) -> Result<(Kind, String)> {
    let (kind, name) = match spec.split_once(':') {
        Some((k, n)) => (k.parse::<Kind>()?, n.to_string()),
        None => {
            let k = spec.parse::<Kind>()?;
            (k, k.default_name().to_string())
        }
    };
    Ok((kind, name))
}

/// The controller configuration from plugin options.
pub fn controller_config(opts: &PluginOptions) -> ControllerConfig {
    ControllerConfig {
        poll_interval: opts.poll_interval,
        resync_interval: opts.resync_interval,
        max_parallel: opts.max_parallel.max(1),
        ..ControllerConfig::default()
    }
}

/// Where a plugin keeps its state: `$INFRAKIT_HOME/<name>`.
fn state_dir(name: &str) -> PathBuf {
    dir::infrakit_home().join(name)
}

/// Creates plugin `kind` under `name`, registers it in `plugins` (so in-process callers use it
/// directly) and serves it on its socket.
pub async fn serve(
    kind: Kind,
    name: &str,
    opts: &PluginOptions,
    plugins: &Arc<Plugins>,
) -> Result<PluginServer> {
    let handlers = match kind {
        Kind::Group => {
            let store = Arc::new(FileStore::new(state_dir(name).join("groups")));
            let g = GroupPlugin::with_store(plugins.clone(), controller_config(opts), store)
                .await
                .with_context(|| format!("starting {name}"))?;
            let g = Arc::new(g);
            Handlers::new().group(g.clone()).publisher(g)
        }
        Kind::InstanceProcess => {
            let p = Arc::new(
                ProcessPlugin::open(state_dir(name)).with_context(|| format!("opening {name}"))?,
            );
            plugins.register_instance(name, p.clone());
            plugins.register_publisher(name, p.clone());
            Handlers::new().instance("", p.clone()).publisher(p)
        }
        Kind::InstanceFile => {
            let dir = opts.dir.clone().unwrap_or_else(|| state_dir(name));
            let p = Arc::new(FilePlugin::new(dir).with_context(|| format!("opening {name}"))?);
            plugins.register_instance(name, p.clone());
            // Events only while the directory is watched: a group reuses its last listing as
            // long as its instance plugin's event stream is live and quiet, so a plugin that
            // cannot see changes must serve no stream, and be polled.
            if p.watching() {
                plugins.register_publisher(name, p.clone());
                Handlers::new().instance("", p.clone()).publisher(p)
            } else {
                Handlers::new().instance("", p)
            }
        }
        Kind::InstanceSimulator => {
            let p = Arc::new(Simulator::new(SimulatorConfig {
                provision_latency: opts.latency,
                failure_rate: opts.failure_rate,
                ..SimulatorConfig::default()
            }));
            plugins.register_instance(name, p.clone());
            plugins.register_publisher(name, p.clone());
            Handlers::new().instance("", p.clone()).publisher(p)
        }
        Kind::InstanceDocker => {
            let p = DockerPlugin::connect(DockerOptions {
                state_dir: Some(state_dir(name)),
                ..DockerOptions::named(name)
            })
            .await
            .with_context(|| format!("starting {name}"))?;
            let p = Arc::new(p);
            plugins.register_instance(name, p.clone());
            plugins.register_publisher(name, p.clone());
            Handlers::new().instance("", p.clone()).publisher(p)
        }
        Kind::InstanceTerraform => {
            let dir = opts.dir.clone().unwrap_or_else(|| state_dir(name));
            let p = TerraformPlugin::start(TerraformOptions {
                name: name.to_string(),
                ..TerraformOptions::new(dir)
            })
            .await
            .with_context(|| format!("starting {name}"))?;
            let p = Arc::new(p);
            plugins.register_instance(name, p.clone());
            plugins.register_publisher(name, p.clone());
            Handlers::new().instance("", p.clone()).publisher(p)
        }
        Kind::FlavorVanilla => {
            let f = Arc::new(VanillaFlavor::new());
            plugins.register_flavor(name, f.clone());
            // Its health watches' events.
            plugins.register_publisher(name, f.clone());
            Handlers::new().flavor("", f.clone()).publisher(f)
        }
        Kind::FlavorCombo => {
            let f = Arc::new(ComboFlavor::new(plugins));
            plugins.register_flavor(name, f.clone());
            Handlers::new().flavor("", f)
        }
        Kind::FlavorZookeeper => {
            let f = Arc::new(ZooKeeperFlavor::new());
            plugins.register_flavor(name, f.clone());
            Handlers::new().flavor("", f)
        }
        Kind::FlavorSwarm => {
            let (manager, worker) = SwarmFlavor::pair();
            let (manager, worker) = (Arc::new(manager), Arc::new(worker));
            plugins.register_flavor(&format!("{name}/manager"), manager.clone());
            plugins.register_flavor(&format!("{name}/worker"), worker.clone());
            Handlers::new()
                .flavor("manager", manager)
                .flavor("worker", worker)
        }
    };
    PluginServer::start(plugins.dir(), name, handlers)
        .await
        .with_context(|| format!("starting plugin {name}"))
}
