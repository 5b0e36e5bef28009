//! A deployment as users run one: the group plugin, an instance plugin and the vanilla flavor,
//! each a process of its own started by `infrakit plugin start`, talking JSON-RPC over the Unix
//! sockets of a private `INFRAKIT_HOME` (a temporary directory, so nothing of the user's is
//! touched).
//!
//! The plugins' pids are read from the `.pid` files each plugin server writes beside its socket.
//! [`Deployment::stop`] runs `infrakit plugin stop` (each plugin, then `--all`); the process
//! plugin's members, which outlive their plugin by design, and everything on drop (a panic or an
//! early return included) are SIGKILLed by `infrakit_testkit::process::kill_processes_in`, which
//! finds processes by a directory in their environment, command line or working directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use infrakit_rpc::{dir, Client, GroupClient, InstanceClient};
use infrakit_spi::GroupSpec;
use infrakit_testkit::process::{is_running, kill_processes_in};

use crate::measure;

/// The flavor plugin of every deployment.
const FLAVOR: &str = "flavor-vanilla";
/// The group plugin's name.
const GROUP: &str = "group";

/// The instance plugin a deployment runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceKind {
    /// `instance-file`: one JSON file per instance.
    File,
    /// `instance-process`: one `sleep 3600` process per instance.
    Process,
    /// `instance-simulator`: instances in the plugin's memory.
    Simulator,
}

impl InstanceKind {
    /// The plugin's kind and name, as `infrakit plugin start` takes it.
    pub fn plugin(self) -> &'static str {
        match self {
            InstanceKind::File => "instance-file",
            InstanceKind::Process => "instance-process",
            InstanceKind::Simulator => "instance-simulator",
        }
    }

    /// A short name for the results.
    pub fn label(self) -> &'static str {
        match self {
            InstanceKind::File => "file",
            InstanceKind::Process => "process",
            InstanceKind::Simulator => "simulator",
        }
    }

    /// Instance properties of configuration `version`.
    fn properties(self, version: &str) -> Value {
        match self {
            InstanceKind::File | InstanceKind::Simulator => json!({"Version": version}),
            InstanceKind::Process => json!({
                "Cmd": "sleep",
                "Args": ["3600"],
                "Env": {"INFRAKIT_BENCH_VERSION": version},
            }),
        }
    }

    /// A group spec of `size` instances of configuration `version` on this plugin, with an
    /// optional `Updating` block.
    pub fn spec(self, id: &str, size: usize, version: &str, updating: Option<&Value>) -> GroupSpec {
        let mut properties = json!({
            "Allocation": {"Size": size},
            "Instance": {"Plugin": self.plugin(), "Properties": self.properties(version)},
            "Flavor": {"Plugin": FLAVOR},
        });
        if let Some(u) = updating {
            properties["Updating"] = u.clone();
        }
        GroupSpec {
            id: id.into(),
            properties,
        }
    }
}

/// The plugins of a deployment, running.
pub struct Deployment {
    exe: PathBuf,
    home: tempfile::TempDir,
    instance: InstanceKind,
    pids: Vec<(&'static str, i32)>,
}

impl Deployment {
    /// Starts `group`, the `instance` plugin and `flavor-vanilla` with the `infrakit` binary
    /// `exe`, the group plugin polling every `poll`, and reads their pids.
    pub async fn start(exe: &Path, instance: InstanceKind, poll: Duration) -> Result<Deployment> {
        let home = tempfile::Builder::new()
            .prefix("infrakit-bench-")
            .tempdir()
            .context("creating a home for the deployment")?;
        let mut d = Deployment {
            exe: exe.to_path_buf(),
            home,
            instance,
            pids: Vec::new(),
        };
        let poll = humantime::format_duration(poll).to_string();
        d.infrakit(&[
            "plugin",
            "start",
            GROUP,
            instance.plugin(),
            FLAVOR,
            "--poll-interval",
            &poll,
        ])
        .await?;
        for name in [GROUP, instance.plugin(), FLAVOR] {
            let file = dir::pid_path(&d.plugins_dir(), name);
            let pid = dir::pid_file_process(&file)
                .with_context(|| format!("no live process in {}", file.display()))?;
            d.pids.push((name, pid));
        }
        Ok(d)
    }

    /// The directory of the deployment's plugin sockets.
    pub fn plugins_dir(&self) -> PathBuf {
        self.home.path().join("plugins")
    }

    /// The deployment's `INFRAKIT_HOME`.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Runs `infrakit args` in this deployment's home; fails unless it succeeds.
    pub async fn infrakit(&self, args: &[&str]) -> Result<String> {
        let out = tokio::process::Command::new(&self.exe)
            .args(args)
            .env("INFRAKIT_HOME", self.home.path())
            .env("INFRAKIT_PLUGINS_DIR", self.plugins_dir())
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("running {}", self.exe.display()))?;
        if !out.status.success() {
            bail!(
                "`infrakit {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A client of the group plugin.
    pub fn group(&self) -> GroupClient {
        let socket = dir::socket_path(&self.plugins_dir(), GROUP);
        GroupClient::new(Client::new(GROUP, socket))
    }

    /// A client of the instance plugin.
    pub fn instances(&self) -> InstanceClient {
        let name = self.instance.plugin();
        let socket = dir::socket_path(&self.plugins_dir(), name);
        InstanceClient::new(Client::new(name, socket), "")
    }

    /// The plugin processes: name and pid, group first.
    pub fn processes(&self) -> &[(&'static str, i32)] {
        &self.pids
    }

    /// Stops the plugins: `infrakit plugin stop NAME` for each, all at once, then `infrakit
    /// plugin stop --all` for anything left. Returns once the plugin processes have exited and
    /// the instance plugin's members (processes working in its state directory) are killed.
    /// `plugin stop` itself returns only once an exited plugin is reaped by init, which some
    /// hosts do late (seconds); the returned [`Stopping`] waits for that.
    pub async fn stop(self) -> Result<Stopping> {
        let pids: Vec<i32> = self.pids.iter().map(|(_, pid)| *pid).collect();
        // Not the whole home: the `plugin stop` commands name it in their environment.
        let members = self.home.path().join(self.instance.plugin());
        let task = tokio::spawn(async move {
            let this = &self;
            let stops = this
                .pids
                .iter()
                .map(|(name, _)| async move { this.infrakit(&["plugin", "stop", name]).await });
            let stopped: Vec<Result<String>> = futures::future::join_all(stops).await;
            let swept = self.infrakit(&["plugin", "stop", "--all"]).await;
            for r in stopped {
                r?;
            }
            swept.map(drop)
            // Dropping `self` sweeps the home for anything still running.
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while pids.iter().any(|pid| is_running(*pid)) {
            if task.is_finished() || Instant::now() > deadline {
                break; // the sweep of the home, when the task ends, kills what is left
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::task::spawn_blocking(move || kill_processes_in(&members)).await?;
        Ok(Stopping(task))
    }
}

/// The end of [`Deployment::stop`]: the `plugin stop` commands finishing.
pub struct Stopping(tokio::task::JoinHandle<Result<()>>);

impl Stopping {
    /// Waits for the commands; fails if one did.
    pub async fn finish(self) -> Result<()> {
        self.0.await.context("stopping a deployment")?
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        // Before the home is removed: processes are found by their paths.
        kill_processes_in(self.home.path());
    }
}

/// What one process cost over a window.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// CPU time over wall time, in percent of one core.
    pub cpu_percent: f64,
    /// Highest `VmRSS` sampled, in bytes.
    pub rss_max: u64,
    /// `VmHWM` at the end: the highest resident memory since the process started.
    pub hwm: u64,
}

/// Measures `pids` over `window`: CPU from `/proc/<pid>/stat` at both ends, `VmRSS` sampled
/// every 50 ms.
pub async fn usage(pids: &[i32], window: Duration) -> Result<Vec<Usage>> {
    let cpu = |pids: &[i32]| -> Result<Vec<Duration>> {
        pids.iter().map(|p| measure::process_cpu_time(*p)).collect()
    };
    let start = Instant::now();
    let before = cpu(pids)?;
    let mut rss_max = vec![0u64; pids.len()];
    loop {
        for (max, pid) in rss_max.iter_mut().zip(pids) {
            *max = (*max).max(measure::process_memory(*pid)?.rss);
        }
        let elapsed = start.elapsed();
        if elapsed >= window {
            break;
        }
        // A measurement window passing, not a wait for something to happen.
        tokio::time::sleep((window - elapsed).min(Duration::from_millis(50))).await;
    }
    let after = cpu(pids)?;
    let wall = start.elapsed().as_secs_f64();
    pids.iter()
        .enumerate()
        .map(|(i, pid)| {
            Ok(Usage {
                cpu_percent: after[i].saturating_sub(before[i]).as_secs_f64() / wall * 100.0,
                rss_max: rss_max[i],
                hwm: measure::process_memory(*pid)?.hwm,
            })
        })
        .collect()
}

/// How often the benchmark asks a deployed group plugin for a group of `n` instances:
/// `DescribeGroup` lists every member over the socket, so larger groups are asked less often
/// (5 ms up to 2,500 instances, 200 ms at 100,000) to keep the benchmark's own calls a small
/// share of the group plugin's work.
pub fn describe_every(n: usize) -> Duration {
    Duration::from_millis((n as u64 / 500).clamp(5, 200))
}

/// A poll interval as the results print it (`100ms`, `1s`).
pub fn poll_label(poll: Duration) -> String {
    humantime::format_duration(poll).to_string()
}
