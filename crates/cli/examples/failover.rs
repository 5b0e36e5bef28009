//! Benchmark: manager failover time on etcd.
//!
//! Starts a three-member etcd cluster, the process instance plugin, the vanilla flavor and three
//! managers (all separate processes, lease TTL 3 s), commits a group of two workers, then, `--runs`
//! times: kills the leader with SIGKILL and one worker at the same moment, and measures the time
//! until the new leader's first action (the killed worker's replacement is running). Prints the
//! samples' p50/p99/max.
//!
//! ```sh
//! cargo build -p infrakit && cargo run -p infrakit --example failover -- --runs 20
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use infrakit_testkit::EtcdCluster;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const MANAGERS: [&str; 3] = ["group", "group1", "group2"];

struct Env {
    bin: PathBuf,
    home: tempfile::TempDir,
    endpoints: String,
}

impl Env {
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.bin)
            .args(args)
            .env("INFRAKIT_HOME", self.home.path())
            .env("INFRAKIT_GROUP_POLL_INTERVAL", "1s")
            .output()
            .expect("infrakit runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "infrakit {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn start_manager(&self, name: &str) {
        self.ok(&[
            "manager",
            "--name",
            name,
            "start",
            "--store",
            "etcd",
            "--etcd-endpoints",
            &self.endpoints,
            "--lease-ttl",
            "3s",
        ]);
    }

    fn leader(&self) -> Option<String> {
        MANAGERS.iter().map(|s| s.to_string()).find(|name| {
            let out = self.run(&["manager", "--name", name, "status", "-o", "json"]);
            out.status.success()
                && serde_json::from_slice::<Value>(&out.stdout).is_ok_and(|v| v["Leader"] == true)
        })
    }

    fn workers(&self) -> Vec<(String, i32)> {
        let v: Value = serde_json::from_str(&self.ok(&[
            "instance",
            "--name",
            "instance-process",
            "describe",
            "-p",
            "-o",
            "json",
        ]))
        .unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["ID"].as_str().unwrap().to_string(),
                    d["Properties"]["PID"].as_i64().unwrap() as i32,
                )
            })
            .collect()
    }

    fn pid(&self, name: &str) -> Pid {
        let text =
            std::fs::read_to_string(self.home.path().join(format!("plugins/{name}.pid"))).unwrap();
        Pid::from_raw(text.trim().parse().unwrap())
    }
}

fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("INFRAKIT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("infrakit");
    assert!(
        bin.exists(),
        "build the binary first (cargo build -p infrakit) or set INFRAKIT_BIN"
    );
    bin
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let etcd = EtcdCluster::start().await;
    let env = Env {
        bin: binary(),
        home: tempfile::tempdir().unwrap(),
        endpoints: etcd.endpoints().join(","),
    };
    env.ok(&["plugin", "start", "instance-process", "flavor-vanilla"]);
    for name in MANAGERS {
        env.start_manager(name);
    }
    wait_for("a leader", Duration::from_secs(10), || env.leader());
    let spec = serde_json::json!({"ID": "workers", "Properties": {
        "Allocation": {"Size": 2},
        "Instance": {"Plugin": "instance-process", "Properties": {"Cmd": "sleep", "Args": ["3600"]}},
        "Flavor": {"Plugin": "flavor-vanilla"}}});
    let file = env.home.path().join("workers.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    env.ok(&["group", "commit", file.to_str().unwrap()]);
    wait_for("2 workers", Duration::from_secs(20), || {
        (env.workers().len() == 2).then_some(())
    });

    let mut samples = Vec::new();
    for run in 1..=runs {
        let leader = wait_for("a leader", Duration::from_secs(20), || env.leader());
        // Let the workers age past the crash-loop window first.
        std::thread::sleep(Duration::from_secs(1));
        let workers = env.workers();
        let (victim, victim_pid) = workers[0].clone();
        let leader_pid = env.pid(&leader);
        let t0 = Instant::now();
        kill(leader_pid, Signal::SIGKILL).unwrap();
        kill(Pid::from_raw(victim_pid), Signal::SIGKILL).unwrap();
        wait_for("the replacement", Duration::from_secs(30), || {
            let now = env.workers();
            (now.len() == 2 && !now.iter().any(|(id, _)| *id == victim)).then_some(())
        });
        let took = t0.elapsed();
        println!(
            "run {run:>2}: leader {leader} killed; first action after {:.0} ms",
            took.as_secs_f64() * 1000.0
        );
        samples.push(took);
        wait_for(
            "the dead manager's pid gone",
            Duration::from_secs(10),
            || kill(leader_pid, None).is_err().then_some(()),
        );
        env.start_manager(&leader);
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!(
        "failover, leader SIGKILL to first action by the new leader, lease TTL 3 s, {runs} runs:"
    );
    println!(
        "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap())
    );
    let _ = env.run(&["group", "destroy", "workers"]);
    let _ = env.run(&["plugin", "stop", "--all"]);
}
