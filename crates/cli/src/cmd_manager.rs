//! `infrakit manager ...`: run managers and talk to them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use infrakit_manager::{Backend, LocalLeadership, Manager};
use infrakit_rpc::{dir, Handlers, ManagerClient, PluginServer, Plugins, ServerOptions};
use infrakit_spi::manager::Manager as _;
use infrakit_spi::{Group, GroupSpec};
use infrakit_store::FileStore;

use infrakit_http::{HttpServer, Options as HttpOptions, Sources};

use crate::builtin::controller_config;
use crate::cli::{Format, ManagerArgs, ManagerCommand, ManagerRunArgs, StoreKind};
use crate::cmd_plugin::{option_args, spawn_background};
use crate::io;
use infrakit_rpc::shutdown_signal;

/// A manager serving on its socket, campaigning in the background.
pub struct RunningManager {
    /// The manager (it implements the Group API).
    pub manager: Arc<Manager>,
    server: PluginServer,
    http: Option<HttpServer>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningManager {
    /// Stops campaigning (group controllers stop; instances stay) and stops serving.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
        if let Some(http) = self.http {
            http.stop().await;
        }
        self.server.stop().await;
    }

    /// Waits until this manager leads (or `within` passes).
    pub async fn wait_until_leading(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if self.manager.is_leader().await.unwrap_or(false) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

/// Starts a manager called `name` in this process, using `plugins` to reach the instance and
/// flavor plugins.
pub async fn start(
    name: &str,
    args: &ManagerRunArgs,
    plugins: &Arc<Plugins>,
) -> Result<RunningManager> {
    let location = dir::socket_path(plugins.dir(), name).display().to_string();
    let backend = match args.store {
        StoreKind::Embedded => {
            let home = dir::infrakit_home();
            let leadership = LocalLeadership::acquire(&home, &location)?;
            let path: PathBuf = home.join(name).join("groups");
            Backend {
                info: json!({"Backend": "embedded", "Path": path.display().to_string()}),
                store: Arc::new(FileStore::new(path)),
                leadership: Arc::new(leadership),
                vars: Some(Arc::new(FileStore::new(home.join(name).join("vars")))),
            }
        }
        StoreKind::Etcd => etcd_backend(args, &location).await?,
    };
    let manager = Manager::new(
        name,
        &location,
        plugins.clone(),
        controller_config(&args.options),
        backend,
    );
    let mut options = ServerOptions::from_env()
        .context("INFRAKIT_SERVER_* limits")?
        .metrics(manager.telemetry().metrics.connections());
    if let Some(tcp) = crate::remote::listener(&args.listen)? {
        options = options.tcp(tcp);
    }
    let server = PluginServer::start_with(
        plugins.dir(),
        name,
        Handlers::new()
            .group(manager.clone())
            .manager(manager.clone())
            .publisher(manager.clone()),
        options,
    )
    .await
    .with_context(|| format!("starting manager {name}"))?;
    if let Some(addr) = server.tcp_addr() {
        eprintln!("manager {name}: listening on tcp {addr}");
    }
    let http = match &args.http {
        Some(addr) => {
            let http = HttpServer::start(
                addr,
                Sources {
                    groups: manager.clone(),
                    events: manager.clone(),
                    telemetry: manager.telemetry().clone(),
                },
                HttpOptions {
                    actions: args.http_actions,
                },
            )
            .await?;
            eprintln!(
                "manager {name}: dashboard on http://{}/ , metrics on http://{}/metrics",
                http.addr(),
                http.addr()
            );
            Some(http)
        }
        None => None,
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(manager.clone().run(shutdown.clone()));
    Ok(RunningManager {
        manager,
        server,
        http,
        shutdown,
        task,
    })
}

#[cfg(feature = "etcd")]
async fn etcd_backend(args: &ManagerRunArgs, location: &str) -> Result<Backend> {
    use infrakit_manager_etcd::EtcdLeadership;
    if args.etcd_endpoints.is_empty() {
        bail!("--store etcd needs --etcd-endpoints (or INFRAKIT_ETCD_ENDPOINTS)");
    }
    let leadership = EtcdLeadership::connect(
        args.etcd_endpoints.clone(),
        &args.etcd_prefix,
        location,
        args.lease_ttl,
    )
    .await?;
    let store = leadership.store();
    Ok(Backend {
        info: store.info(),
        store: Arc::new(store),
        vars: Some(Arc::new(leadership.vars_store())),
        leadership: Arc::new(leadership),
    })
}

/// The etcd store is a cargo feature (its client needs `protoc` to build); without it, say how
/// to get it.
#[cfg(not(feature = "etcd"))]
async fn etcd_backend(_args: &ManagerRunArgs, _location: &str) -> Result<Backend> {
    bail!("{}", ETCD_MISSING)
}

/// What `--store etcd` says in a build without the etcd feature.
#[cfg(not(feature = "etcd"))]
pub const ETCD_MISSING: &str = "this infrakit was built without the etcd store; rebuild it with `cargo install --path crates/cli --features etcd` (needs protoc: apt install protobuf-compiler)";

/// Runs a manager command.
pub async fn run(args: ManagerArgs) -> Result<()> {
    match args.command {
        ManagerCommand::Start(run) => {
            #[cfg(not(feature = "etcd"))]
            if matches!(run.store, StoreKind::Etcd) {
                bail!("{ETCD_MISSING}");
            }
            let cmd = run_command(&args.name, &run)?;
            spawn_background(&args.name, &cmd).await
        }
        ManagerCommand::Run(run) => {
            let plugins = Arc::new(Plugins::new(dir::plugins_dir()));
            let running = start(&args.name, &run, &plugins).await?;
            tracing::info!(manager = %args.name, "manager running");
            shutdown_signal().await?;
            running.stop().await;
            Ok(())
        }
        ManagerCommand::Status { output } => status(&args.name, output).await,
        ManagerCommand::Commit {
            file,
            pretend,
            force,
        } => commit(&args.name, &file, pretend, force).await,
        ManagerCommand::Inspect { output } => {
            let client = crate::cmd_group::client(&args.name)?;
            let entries: Vec<Entry> = client
                .inspect_groups()
                .await?
                .into_iter()
                .map(|spec| Entry {
                    plugin: Some(args.name.clone()),
                    properties: spec,
                })
                .collect();
            io::print_value(&entries, output)
        }
    }
}

/// The arguments of `infrakit` that run manager `name` with the settings of `run`, for
/// `manager start` to run in the background.
fn run_command(name: &str, run: &ManagerRunArgs) -> Result<Vec<String>> {
    let mut cmd: Vec<String> = vec!["manager".into(), "--name".into(), name.into(), "run".into()];
    cmd.push("--store".into());
    cmd.push(match run.store {
        StoreKind::Embedded => "embedded".into(),
        StoreKind::Etcd => "etcd".into(),
    });
    if !run.etcd_endpoints.is_empty() {
        cmd.push("--etcd-endpoints".into());
        cmd.push(run.etcd_endpoints.join(","));
    }
    cmd.extend(["--etcd-prefix".into(), run.etcd_prefix.clone()]);
    cmd.extend([
        "--lease-ttl".into(),
        humantime::format_duration(run.lease_ttl).to_string(),
    ]);
    if let Some(addr) = &run.http {
        cmd.extend(["--http".into(), addr.clone()]);
    }
    if run.http_actions {
        cmd.push("--http-actions".into());
    }
    cmd.extend(crate::remote::listen_flags(&run.listen));
    cmd.extend(option_args(&run.options)?);
    Ok(cmd)
}

/// `manager status`: manager `name`'s leadership, location and store.
async fn status(name: &str, output: Format) -> Result<()> {
    let client = match crate::remote::client(name)? {
        Some(remote) => remote,
        None => Plugins::new(dir::plugins_dir())
            .client(name)
            .with_context(|| {
                format!("is the manager running? try `infrakit manager start` (name {name})")
            })?,
    };
    let status = ManagerClient::new(client).status().await?;
    if output != Format::Table {
        return io::print_value(&status, output);
    }
    outln!("name:       {}", status.name);
    outln!(
        "leader:     {}",
        if status.leader {
            "yes (this manager)"
        } else {
            "no"
        }
    );
    outln!(
        "leader at:  {}",
        status
            .leader_location
            .as_deref()
            .unwrap_or("(none elected)")
    );
    outln!("location:   {}", status.location);
    outln!("store:      {}", status.store);
    outln!("leadership: {}", status.leadership);
    Ok(())
}

/// `manager commit`: commits the entries of `file`, each to its plugin (manager `name` when it
/// names none); with `pretend`, only says what each commit would do.
async fn commit(name: &str, file: &str, pretend: bool, force: bool) -> Result<()> {
    let entries = read_entries(file)?;
    // Every entry is checked before any is committed, so a refusal changes nothing.
    if !pretend {
        for entry in &entries {
            let plugin = entry.plugin.clone().unwrap_or_else(|| name.to_string());
            let client = crate::cmd_group::client(&plugin)?;
            crate::guard::refuse_destructive(&client, &entry.properties, force).await?;
        }
    }
    for entry in entries {
        let plugin = entry.plugin.clone().unwrap_or_else(|| name.to_string());
        let client = crate::cmd_group::client(&plugin)?;
        let id = entry.properties.id.clone();
        let details = client.commit_group(entry.properties, pretend).await?;
        outln!("Group {id} with plugin {plugin} plan: {details}");
    }
    Ok(())
}

/// One entry of InfraKit's manager format.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    #[serde(rename = "Plugin", default)]
    plugin: Option<String>,
    #[serde(rename = "Properties")]
    properties: GroupSpec,
}

fn read_entries(file: &str) -> Result<Vec<Entry>> {
    let doc = io::read_document(file)?;
    if !doc.is_array() {
        bail!("{file}: a manager commit takes an array of {{Plugin, Properties}} entries");
    }
    infrakit_spi::error::decode_at("", &doc)
        .with_context(|| format!("{file} is not a list of group entries"))
}
