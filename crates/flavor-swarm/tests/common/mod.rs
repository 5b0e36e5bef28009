//! Fixtures for the swarm tests: a private network (a "switch" namespace with a bridge) where
//! every Docker engine runs in a network namespace of its own with its own address, engines
//! started by the real process instance plugin, a bootstrap manager that initialises the swarm,
//! and a group controller in-process with the swarm flavors. A guard removes processes,
//! namespaces and mounts however a test ends.
//!
//! Needs root, `dockerd` and `docker` (Debian `docker.io`), `ip` (iproute2), `nsenter` and
//! `unshare` (util-linux).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bollard::models::{Node, SwarmInitRequest, SwarmSpec, SwarmSpecDispatcher};
use bollard::query_parameters::ListNodesOptions;
use bollard::Docker;
use serde_json::{json, Value};

use infrakit_flavor_swarm::{SwarmFlavor, LINK_TAG};
use infrakit_group::{ControllerConfig, GroupPlugin};
use infrakit_instance_process::ProcessPlugin;
use infrakit_rpc::Plugins;
use infrakit_spi::{Description, Group, GroupDescription, GroupSpec, Health, Instance, Spec, Tags};
use infrakit_testkit::{eventually, group};

/// The lab's subnet (private to each lab's switch namespace, so labs may share it).
pub const SUBNET: &str = "10.213.0";
/// The bootstrap manager's address.
pub const BOOTSTRAP: &str = "10.213.0.1";

/// The engine-heavy tests take turns: a handful of engines at a time on a shared machine.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

/// Fails the test with a clear message unless it can run engines in namespaces.
pub fn require_tools() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the swarm tests create network namespaces and run dockerd: run them as root"
    );
    for (tool, package) in [
        ("dockerd", "docker.io"),
        ("docker", "docker.io"),
        ("ip", "iproute2"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
    ] {
        assert!(
            on_path(tool),
            "{tool} is not on PATH: install Debian's {package} package (scripts/test.sh installs docker.io)"
        );
    }
}

/// Runs `program args`, failing the test with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The launcher every engine instance runs, as `docs/plugins/swarm.md` gives it: it takes an
/// address (the logical ID, or the next free one), makes a network namespace with a veth to the
/// lab's bridge, and runs dockerd in it (in a mount namespace of its own, so its mounts go with
/// it) with its state in the instance's directory. Its arguments go to dockerd.
pub fn documented_launcher() -> String {
    doc_block("sh", "infrakit-engine: runs one Docker engine")
}

/// The code block of `docs/plugins/swarm.md` in language `lang` that contains `marker`.
pub fn doc_block(lang: &str, marker: &str) -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/plugins/swarm.md"
    ))
    .expect("docs/plugins/swarm.md");
    doc.split(&format!("```{lang}\n"))
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains(marker))
        .unwrap_or_else(|| panic!("no {lang} block with {marker:?} in docs/plugins/swarm.md"))
        .to_string()
}

/// The documented launcher with the lab's directory and namespace; fails when the page's
/// launcher no longer has the lines it replaces.
fn launcher_for(dir: &Path, prefix: &str) -> String {
    let doc = documented_launcher();
    let mut replaced = 0;
    let script: Vec<String> = doc
        .lines()
        .map(|l| {
            if l.starts_with("LAB=") {
                replaced += 1;
                format!("LAB={}", dir.display())
            } else if l.starts_with("NET=") {
                replaced += 1;
                format!("NET={prefix}")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert_eq!(replaced, 2, "the documented launcher sets LAB= and NET=");
    assert!(doc.contains(&format!("SUBNET={SUBNET}\n")));
    script.join("\n") + "\n"
}

/// A private network for engines, removed with everything in it when dropped.
pub struct Lab {
    /// The name of the lab's bridge namespace, and the prefix of its engines' namespaces.
    pub prefix: String,
    /// The lab's files (launcher, address pool, the process plugin's instances).
    pub dir: tempfile::TempDir,
}

impl Lab {
    pub fn new() -> Lab {
        require_tools();
        static N: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!(
            "iksw{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new().prefix("iksw").tempdir().unwrap();
        let lab = Lab { prefix, dir };
        let sw = lab.prefix.clone();
        run("ip", &["netns", "add", &sw]);
        run("ip", &["-n", &sw, "link", "set", "lo", "up"]);
        run("ip", &["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        run("ip", &["-n", &sw, "link", "set", "br0", "up"]);
        let script = launcher_for(lab.dir.path(), &lab.prefix);
        let launcher = lab.launcher();
        std::fs::write(&launcher, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&launcher, std::fs::Permissions::from_mode(0o755)).unwrap();
        lab
    }

    /// The engine launcher (the process plugin's `Cmd`).
    pub fn launcher(&self) -> PathBuf {
        self.dir.path().join("engine.sh")
    }

    /// The lab's network namespaces.
    pub fn namespaces(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir("/run/netns") else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| *n == self.prefix || n.starts_with(&format!("{}-", self.prefix)))
            .collect()
    }

    /// SIGKILLs every process whose command line mentions the lab's directory (engines, their
    /// containerd, the wrappers).
    pub fn kill_all(&self) {
        let marker = self.dir.path().to_string_lossy().into_owned();
        for pid in pids_mentioning(&marker) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The processes whose command line contains `marker`.
pub fn pids_mentioning(marker: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(marker)
                .then_some(pid)
        })
        .collect()
}

impl Drop for Lab {
    fn drop(&mut self) {
        let marker = self.dir.path().to_string_lossy().into_owned();
        // Processes first (their namespaces and mounts go with them), a few rounds for the ones
        // that were starting.
        for _ in 0..50 {
            if pids_mentioning(&marker).is_empty() {
                break;
            }
            self.kill_all();
            std::thread::sleep(Duration::from_millis(100));
        }
        // Mounts left in this mount namespace under the lab's directory, deepest first.
        if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
            let mut points: Vec<&str> = info
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|p| p.starts_with(&marker))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = std::process::Command::new("umount")
                    .args(["-l", p])
                    .status();
            }
        }
        for ns in self.namespaces() {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &ns])
                .status();
        }
    }
}

/// A Docker client of the engine whose API socket is `socket`, once it answers.
pub async fn engine_at(socket: &Path, within: Duration) -> Docker {
    let host = format!("unix://{}", socket.display());
    eventually(&format!("the engine at {host} answers"), within, || async {
        let d = Docker::connect_with_host(&host).ok()?;
        let d = d.negotiate_version().await.ok()?;
        d.ping().await.ok()?;
        Some(d)
    })
    .await
}

/// A group controller over the real process plugin and the swarm flavors, with a bootstrap
/// manager engine that initialised the swarm.
pub struct Fixture {
    pub group: GroupPlugin,
    pub procs: Arc<ProcessPlugin>,
    /// The bootstrap manager's engine.
    pub manager: Docker,
    /// Its API socket.
    pub manager_socket: PathBuf,
    // Dropped last: kill everything, remove namespaces and files.
    pub lab: Lab,
}

impl Fixture {
    pub async fn new() -> Fixture {
        let lab = Lab::new();
        let procs = Arc::new(
            ProcessPlugin::open(lab.dir.path().join("procs"))
                .unwrap()
                .with_grace_period(Duration::from_secs(10)),
        );
        let plugins = Arc::new(Plugins::new(lab.dir.path().join("plugins")));
        plugins.register_instance("instance-process", procs.clone());
        plugins.register_publisher("instance-process", procs.clone());
        let (manager, worker) = SwarmFlavor::pair();
        plugins.register_flavor("flavor-swarm/manager", Arc::new(manager));
        plugins.register_flavor("flavor-swarm/worker", Arc::new(worker));
        let group = GroupPlugin::new(
            plugins,
            ControllerConfig {
                poll_interval: Duration::from_millis(500),
                ..ControllerConfig::default()
            },
        );

        // The bootstrap manager: an engine started by the process plugin, outside any group.
        let id = procs
            .provision(Spec {
                properties: json!({"Cmd": lab.launcher()}),
                logical_id: Some(BOOTSTRAP.into()),
                tags: Tags::from([("role".to_string(), "bootstrap".to_string())]),
                ..Default::default()
            })
            .await
            .unwrap();
        let manager_socket = procs.instance_dir(&id).unwrap().join("docker.sock");
        let manager = engine_at(&manager_socket, Duration::from_secs(60)).await;
        manager
            .init_swarm(SwarmInitRequest {
                listen_addr: Some("0.0.0.0:2377".into()),
                advertise_addr: Some(BOOTSTRAP.into()),
                spec: Some(SwarmSpec {
                    // Nodes are marked down about 3 s after their engine dies.
                    dispatcher: Some(SwarmSpecDispatcher {
                        heartbeat_period: Some(1_000_000_000),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        Fixture {
            group,
            procs,
            manager,
            manager_socket,
            lab,
        }
    }

    /// `Docker.Host` of the flavor properties: the bootstrap manager.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.manager_socket.display())
    }

    /// Flavor properties for engines run by the process plugin.
    pub fn flavor(&self, extra: Value) -> Value {
        let mut v = json!({
            "Docker": {"Host": self.docker_host()},
            "Join": "Command",
            "EngineLabels": {"lab": self.lab.prefix},
            "Health": {"JoinGrace": "60s", "Timeout": "3s"},
            "Drain": {"Timeout": "10s", "RemoveDownAfter": "2s"},
        });
        if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
            v.extend(extra);
        }
        v
    }

    /// A group of engines run by the launcher.
    pub fn spec(&self, id: &str, allocation: Value, role: &str, flavor: Value) -> GroupSpec {
        group::spec(id)
            .allocation(allocation)
            .instance("instance-process", json!({"Cmd": self.lab.launcher()}))
            .flavor(&format!("flavor-swarm/{role}"), flavor)
            .build()
    }

    /// The swarm's nodes, by the engine's `infrakit-link` label (the bootstrap manager, which
    /// has none, under "").
    pub async fn nodes(&self) -> BTreeMap<String, Vec<Node>> {
        // A swarm busy electing or re-joining a manager may time out a listing: ask again.
        let nodes = eventually(
            "the swarm lists its nodes",
            Duration::from_secs(60),
            || async { self.manager.list_nodes(None::<ListNodesOptions>).await.ok() },
        )
        .await;
        let mut out: BTreeMap<String, Vec<Node>> = BTreeMap::new();
        for n in nodes {
            let link = engine_labels(&n).get(LINK_TAG).cloned().unwrap_or_default();
            out.entry(link).or_default().push(n);
        }
        out
    }

    /// The address the launcher gave instance `id`.
    pub fn address_of(&self, id: &str) -> String {
        let dir = self.procs.instance_dir(id).unwrap();
        std::fs::read_to_string(dir.join("address"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// The pid of instance `id`'s dockerd.
    pub fn engine_pid(&self, id: &str) -> i32 {
        let dir = self.procs.instance_dir(id).unwrap();
        std::fs::read_to_string(dir.join("docker.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// The end of instance `id`'s stderr (the wrapper's and dockerd's log), for failure messages.
    pub fn log_of(&self, id: &str) -> String {
        let path = self.procs.instance_dir(id).unwrap().join("stderr.log");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("infrakit swarm") || l.contains("level=error"))
            .collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The group's description once it is converged with `n` instances, all Healthy.
    pub async fn healthy(&self, group: &str, n: usize) -> Option<GroupDescription> {
        let d = self.group.describe_group(group).await.ok()?;
        let status = d.status.as_ref()?;
        let ok = d.converged
            && d.instances.len() == n
            && status.instances.len() == n
            && status.instances.iter().all(|i| i.health == Health::Healthy);
        ok.then_some(d)
    }

    /// The live instances carrying tag `infrakit.group=<group>`.
    pub async fn members(&self, group: &str) -> Vec<Description> {
        let tags = Tags::from([("infrakit.group".to_string(), group.to_string())]);
        self.procs.describe_instances(&tags, false).await.unwrap()
    }
}

/// The engine labels of `node`.
pub fn engine_labels(node: &Node) -> HashMap<String, String> {
    node.description
        .as_ref()
        .and_then(|d| d.engine.as_ref())
        .and_then(|e| e.labels.clone())
        .unwrap_or_default()
}

/// True when `node` is ready.
pub fn ready(node: &Node) -> bool {
    node.status.as_ref().and_then(|s| s.state) == Some(bollard::models::NodeState::READY)
}

/// True when `node` is a reachable manager.
pub fn reachable_manager(node: &Node) -> bool {
    node.manager_status.as_ref().and_then(|m| m.reachability)
        == Some(bollard::models::Reachability::REACHABLE)
}
