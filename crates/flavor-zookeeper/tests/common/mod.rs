//! Fixtures for the ensemble tests: a group controller in-process with the real process
//! instance plugin and the ZooKeeper flavor, members on free loopback ports, and a guard that
//! kills every JVM of a test however it ends.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use infrakit_flavor_zookeeper::srvr::{self, Mode};
use infrakit_flavor_zookeeper::{properties, ZooKeeperFlavor};
use infrakit_group::{ControllerConfig, GroupPlugin};
use infrakit_instance_process::ProcessPlugin;
use infrakit_rpc::Plugins;
use infrakit_spi::{Group, GroupDescription, GroupSpec, Health};
use infrakit_testkit::{eventually, group};

/// Debian's `zkServer.sh` (package `zookeeper`).
pub const ZK_SERVER_SH: &str = "/usr/share/zookeeper/bin/zkServer.sh";
/// Debian's slf4j binding that prints to standard error (package `libslf4j-java`, a dependency
/// of ZooKeeper's): the members' logs end up in the process plugin's `stderr.log`.
pub const SLF4J_SIMPLE: &str = "/usr/share/java/slf4j-simple.jar";

/// One test at a time runs JVMs: three or four of them on a shared two-core machine are enough.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Fails the test with a clear message unless Java and ZooKeeper are installed.
pub fn require_zookeeper() {
    let java = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("java").is_file()))
        .unwrap_or(false);
    assert!(
        java,
        "java is not on PATH: install Debian's zookeeper package (it brings a JRE); scripts/test.sh does"
    );
    for f in [properties::DEFAULT_CLASSPATH, ZK_SERVER_SH, SLF4J_SIMPLE] {
        assert!(
            Path::new(f).exists(),
            "{f} is missing: install Debian's zookeeper package; scripts/test.sh does"
        );
    }
}

pub use infrakit_testkit::free_ports;

/// Logical IDs of `n` members on loopback, each with its own client, peer and election ports.
pub fn loopback_members(n: usize) -> Vec<String> {
    let ports = free_ports(3 * n);
    ports
        .chunks(3)
        .map(|p| format!("127.0.0.1:{}:{}:{}", p[0], p[1], p[2]))
        .collect()
}

/// SIGKILLs, when dropped, every process whose command line mentions `marker` (the test's
/// temporary directory, which every member's arguments contain).
pub struct KillOnDrop {
    pub marker: String,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            if String::from_utf8_lossy(&cmdline).contains(&self.marker) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// A group controller over the real process plugin and the ZooKeeper flavor.
pub struct Fixture {
    pub group: GroupPlugin,
    pub procs: Arc<ProcessPlugin>,
    pub data_dir: PathBuf,
    pub id: String,
    // Dropped last (fields drop in order): kill first, then remove the files.
    _kill: KillOnDrop,
    pub tmp: tempfile::TempDir,
}

impl Fixture {
    pub fn new(id: &str) -> Fixture {
        require_zookeeper();
        let tmp = tempfile::tempdir().unwrap();
        let kill = KillOnDrop {
            marker: tmp.path().to_string_lossy().into_owned(),
        };
        let procs = Arc::new(
            ProcessPlugin::open(tmp.path().join("procs"))
                .unwrap()
                .with_grace_period(Duration::from_secs(3)),
        );
        let plugins = Arc::new(Plugins::new(tmp.path().join("plugins")));
        plugins.register_instance("instance-process", procs.clone());
        plugins.register_publisher("instance-process", procs.clone());
        plugins.register_flavor("flavor-zookeeper", Arc::new(ZooKeeperFlavor::new()));
        plugins.register_flavor(
            "flavor-vanilla",
            Arc::new(infrakit_flavor_vanilla::VanillaFlavor::new()),
        );
        let combo = infrakit_flavor_combo::ComboFlavor::new(&plugins);
        plugins.register_flavor("flavor-combo", Arc::new(combo));
        let group = GroupPlugin::new(
            plugins,
            ControllerConfig {
                poll_interval: Duration::from_millis(250),
                ..ControllerConfig::default()
            },
        );
        Fixture {
            group,
            procs,
            data_dir: tmp.path().join("zk"),
            id: id.to_string(),
            _kill: kill,
            tmp,
        }
    }

    /// Flavor properties running members with Java directly, logging to standard error.
    pub fn java_flavor(&self, config: Value) -> Value {
        json!({
            "DataDir": self.data_dir,
            "Config": config,
            "Run": {
                "Classpath": [properties::DEFAULT_CLASSPATH, SLF4J_SIMPLE],
                "JvmFlags": ["-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"],
            },
            "Health": {"StartupGrace": "60s", "ElectionGrace": "15s", "Timeout": "1s"},
        })
    }

    /// A pet group spec over the process plugin.
    pub fn spec(&self, members: &[String], flavor: Value, extra: Value) -> GroupSpec {
        group::spec(&self.id)
            .logical_ids(members)
            .instance("instance-process", json!({"Cmd": "zookeeper"}))
            .flavor("flavor-zookeeper", flavor)
            .with(extra)
            .build()
    }

    /// Waits until the group has one healthy instance per member, is converged and the members
    /// themselves report a quorum (one leader, the rest followers; `standalone` for one).
    pub async fn serving(&self, members: &[String], within: Duration) -> GroupDescription {
        eventually(
            "the ensemble serves: every instance healthy, one leader",
            within,
            || async {
                let d = self.group.describe_group(&self.id).await.ok()?;
                let status = d.status.as_ref()?;
                let all_healthy = status.instances.len() == members.len()
                    && status.instances.iter().all(|i| i.health == Health::Healthy);
                if !(d.converged && all_healthy) {
                    return None;
                }
                let modes = modes(members).await;
                let ok = if members.len() == 1 {
                    modes == [Some(Mode::Standalone)]
                } else {
                    count(&modes, Mode::Leader) == 1
                        && count(&modes, Mode::Follower) == members.len() - 1
                };
                ok.then_some(d)
            },
        )
        .await
    }

    /// The end of the stderr log of instance `id` (ZooKeeper's own log), for failure messages.
    pub fn log_of(&self, id: &str) -> String {
        let path = self.procs.instance_dir(id).unwrap().join("stderr.log");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub async fn teardown(self) {
        self.group.destroy_group(&self.id).await.unwrap();
    }
}

/// What each member says its role is (`None`: not serving or not answering).
pub async fn modes(members: &[String]) -> Vec<Option<Mode>> {
    let mut out = Vec::new();
    for m in members {
        let addr = infrakit_flavor_zookeeper::Member::parse(m)
            .unwrap()
            .client_address();
        out.push(
            srvr::query(&addr, Duration::from_secs(1))
                .await
                .mode()
                .cloned(),
        );
    }
    out
}

pub fn count(modes: &[Option<Mode>], mode: Mode) -> usize {
    modes.iter().filter(|m| m.as_ref() == Some(&mode)).count()
}

/// Clients' connect string for `members`.
pub fn connect_string(members: &[String]) -> String {
    infrakit_flavor_zookeeper::Ensemble::parse(members)
        .unwrap()
        .connect_string()
}
