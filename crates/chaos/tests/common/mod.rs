//! Set-ups shared by the fault tests: a simulated group in this process, and real `infrakit`
//! processes (the process plugin, the vanilla flavor, a manager) in a private home.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use infrakit_chaos::procs::{Daemon, Reaper};
use infrakit_chaos::proxy::TapServer;
use infrakit_chaos::{Census, FaultyFlavor, FaultyInstance, Ledger, Tap};
use infrakit_flavor_vanilla::VanillaFlavor;
use infrakit_group::{ControllerConfig, GroupPlugin};
use infrakit_instance_simulator::{Simulator, SimulatorConfig};
use infrakit_rpc::{Client, GroupClient, InstanceClient, Plugins};
use infrakit_spi::instance::GROUP_TAG;
use infrakit_spi::Tags;
use infrakit_store::MemoryStore;

/// The tags of group `id`'s members.
pub fn members(id: &str) -> Tags {
    Tags::from([(GROUP_TAG.to_string(), id.to_string())])
}

/// A controller in this process over simulated instances:
/// controller -> faulty instance plugin -> tap -> simulator, and controller -> faulty flavor ->
/// vanilla flavor. The tap judges health with its own vanilla flavor, which never fails.
pub struct Simulated {
    pub sim: Arc<Simulator>,
    pub tap: Arc<Tap>,
    pub faulty: Arc<FaultyInstance<Tap>>,
    pub flavor: Arc<FaultyFlavor<VanillaFlavor>>,
    pub ledger: Arc<Ledger>,
    pub store: Arc<MemoryStore>,
    pub group: GroupPlugin,
    _tmp: tempfile::TempDir,
}

impl Simulated {
    /// Allows `limit` instances at first. The tap counts the simulator's instances after each
    /// provision (one group per simulator).
    pub async fn new(limit: usize) -> Simulated {
        Self::with(limit, SimulatorConfig::default()).await
    }

    /// Like [`Simulated::new`], the simulator configured by `config`.
    pub async fn with(limit: usize, simulator: SimulatorConfig) -> Simulated {
        let tmp = tempfile::tempdir().unwrap();
        let sim = Arc::new(Simulator::new(simulator));
        let ledger = Ledger::new(limit);
        let counted = sim.clone();
        let tap = Tap::new(
            sim.clone(),
            Arc::new(VanillaFlavor::new()),
            json!({}),
            ledger.clone(),
            Census::Count(Box::new(move || counted.len())),
        );
        let faulty = FaultyInstance::new(tap.clone());
        let flavor = FaultyFlavor::new(Arc::new(VanillaFlavor::new()));
        let plugins = Arc::new(Plugins::new(tmp.path().join("plugins")));
        plugins.register_instance("instance-simulator", faulty.clone());
        plugins.register_publisher("instance-simulator", sim.clone());
        plugins.register_flavor("flavor-vanilla", flavor.clone());
        let store = Arc::new(MemoryStore::default());
        let group = GroupPlugin::with_store(plugins, config(), store.clone())
            .await
            .unwrap();
        Simulated {
            sim,
            tap,
            faulty,
            flavor,
            ledger,
            store,
            group,
            _tmp: tmp,
        }
    }

    /// The stored record of group `id`.
    pub async fn record(&self, id: &str) -> Value {
        use infrakit_store::Store;
        self.store.load().await.unwrap()[id].clone()
    }
}

/// The controller settings of the in-process tests: InfraKit's defaults but a 1 s poll.
pub fn config() -> ControllerConfig {
    ControllerConfig {
        poll_interval: Duration::from_secs(1),
        ..ControllerConfig::default()
    }
}

/// A private infrakit home with real plugin processes in it:
/// `instance-process` (the process plugin) and, if asked, `flavor-vanilla`. Everything it
/// started, instances included, is killed when it is dropped.
pub struct Home {
    // Dropped in this order: the plugins, then the instances, then the directories.
    pub process: Daemon,
    pub flavor: Option<Daemon>,
    _reaper: Reaper,
    pub dir: tempfile::TempDir,
    pub logs: tempfile::TempDir,
    pub group: String,
    pub argv: Vec<String>,
}

/// Environment of every `infrakit` process the tests start.
pub const ENV: &[(&str, &str)] = &[
    ("INFRAKIT_GROUP_POLL_INTERVAL", "200ms"),
    ("INFRAKIT_LOG", "info"),
];

impl Home {
    /// Starts the process plugin (and the vanilla flavor when `flavor`) for group `group`,
    /// whose instances will run `sleep <n>` with an `n` of their own.
    pub async fn start(group: &str, flavor: bool) -> Home {
        let dir = tempfile::Builder::new()
            .prefix("infrakit-chaos")
            .tempdir()
            .unwrap();
        let logs = tempfile::tempdir().unwrap();
        // An argument no other test uses, so the census counts this group's instances only.
        let argv = vec![
            "sleep".to_string(),
            format!("{}", 100_000 + std::process::id() % 100_000),
        ];
        let reaper = Reaper::new(group, &argv);
        let process = Daemon::start(
            dir.path(),
            "instance-process",
            &[
                "plugin",
                "run",
                "instance-process",
                "--name",
                "instance-process",
            ],
            ENV,
            logs.path(),
        )
        .await;
        let flavor = if flavor {
            Some(
                Daemon::start(
                    dir.path(),
                    "flavor-vanilla",
                    &[
                        "plugin",
                        "run",
                        "flavor-vanilla",
                        "--name",
                        "flavor-vanilla",
                    ],
                    ENV,
                    logs.path(),
                )
                .await,
            )
        } else {
            None
        };
        Home {
            process,
            flavor,
            _reaper: reaper,
            dir,
            logs,
            group: group.to_string(),
            argv,
        }
    }

    /// `$INFRAKIT_HOME`.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The plugin directory.
    pub fn plugins(&self) -> PathBuf {
        self.path().join("plugins")
    }

    /// A client of the process plugin's socket.
    pub fn process_client(&self) -> InstanceClient {
        InstanceClient::new(Client::new("instance-process", self.process.socket()), "")
    }

    /// A tap in front of the process plugin, judging with a vanilla flavor of its own and
    /// counting the group's instances in the plugin's listing after each provision.
    pub fn tap(&self, ledger: &Arc<Ledger>) -> Arc<Tap> {
        Tap::new(
            Arc::new(self.process_client()),
            Arc::new(VanillaFlavor::new()),
            json!({}),
            ledger.clone(),
            Census::Listing(members(&self.group)),
        )
    }

    /// Serves `tap` as plugin `instance-tap`, relaying the process plugin's events.
    pub async fn serve_tap(&self, tap: Arc<Tap>) -> TapServer {
        TapServer::start(&self.plugins(), "instance-tap", tap, self.process.socket()).await
    }

    /// Starts `infrakit manager run` (embedded store) serving `group`.
    pub async fn manager(&self) -> Daemon {
        Daemon::start(
            self.path(),
            "group",
            &["manager", "run"],
            ENV,
            self.logs.path(),
        )
        .await
    }

    /// A Group client of the manager's socket.
    pub fn group_client(&self) -> GroupClient {
        GroupClient::new(Client::new("group", self.plugins().join("group")))
    }

    /// The stored record of group `id` in the manager's embedded store.
    pub fn record(&self, id: &str) -> Value {
        let path = self.path().join("group/groups").join(format!("{id}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    /// The pids of the group's instances that really run.
    pub fn running(&self) -> Vec<i32> {
        infrakit_chaos::procs::group_processes(&self.group, &self.argv)
    }

    /// Provisions under way in the process plugin: `Init` scripts (`sleep <init_secs>`, run by
    /// `/bin/sh -c`) running for the group.
    pub fn provisions_under_way(&self, init_secs: f64) -> usize {
        let script = format!("sleep {init_secs}");
        let sh: Vec<String> = vec!["/bin/sh".into(), "-c".into(), script];
        let direct: Vec<String> = vec!["sleep".into(), format!("{init_secs}")];
        infrakit_chaos::procs::group_processes(&self.group, &sh).len()
            + infrakit_chaos::procs::group_processes(&self.group, &direct).len()
    }
}
