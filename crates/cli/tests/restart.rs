//! The manager (embedded store) is killed with SIGKILL in the middle of a rollout and started
//! again: it takes the lock the dead process held, resumes from its saved state and finishes,
//! never exceeding MaxSurge extra instances. Specs survive.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, Home};
use infrakit_rpc::{Client, InstanceClient};
use infrakit_spi::{Instance, Tags};

fn spec(version: &str) -> String {
    serde_json::json!({
        "ID": "workers",
        "Properties": {
            "Allocation": {"Size": 6},
            "Instance": {"Plugin": "instance-process", "Properties": {"Cmd": "sleep", "Args": ["300"], "Env": {"VERSION": version}}},
            "Flavor": {"Plugin": "flavor-vanilla"},
            "Updating": {"MaxSurge": 1, "MaxUnavailable": 0, "MinHealthyTime": "1s"}
        }
    })
    .to_string()
}

/// Samples the number of instances through the process plugin's socket every 10 ms.
fn sampler(
    home: &Home,
    stop: Arc<AtomicBool>,
    max: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<usize> {
    let socket = home.path().join("plugins/instance-process");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client = InstanceClient::new(Client::new("instance-process", socket), "");
            let mut samples = 0;
            while !stop.load(Ordering::SeqCst) {
                if let Ok(list) = client.describe_instances(&Tags::new(), false).await {
                    max.fetch_max(list.len(), Ordering::SeqCst);
                    samples += 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            samples
        })
    })
}

fn hashes(home: &Home) -> Vec<String> {
    home.process_instances()
        .iter()
        .map(|d| {
            d["Tags"]["infrakit.config.hash"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn a_killed_controller_resumes_its_rollout_without_overshooting() {
    let home = Home::new();
    home.ok(&["plugin", "start", "instance-process", "flavor-vanilla"]);
    home.ok(&["manager", "start"]);
    let v1 = home.write("v1.json", &spec("1"));
    let v2 = home.write("v2.json", &spec("2"));
    home.ok(&["group", "commit", v1.to_str().unwrap()]);
    eventually("6 running", Duration::from_secs(20), || {
        (hashes(&home).len() == 6).then_some(())
    });
    let old_hash = hashes(&home)[0].clone();

    let stop = Arc::new(AtomicBool::new(false));
    let max = Arc::new(AtomicUsize::new(0));
    let sampling = sampler(&home, stop.clone(), max.clone());

    home.ok(&["group", "commit", v2.to_str().unwrap()]);
    for round in 1..=2 {
        // Wait until the rollout has made some progress, then kill the controller outright.
        eventually("rollout progress", Duration::from_secs(30), || {
            let new = hashes(&home).iter().filter(|h| **h != old_hash).count();
            (new >= round * 2).then_some(())
        });
        let pid = std::fs::read_to_string(home.path().join("plugins/group.pid")).unwrap();
        let pid = nix::unistd::Pid::from_raw(pid.trim().parse().unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        eventually("the controller is gone", Duration::from_secs(10), || {
            nix::sys::signal::kill(pid, None).is_err().then_some(())
        });
        // Its socket is left behind; starting it again replaces the stale socket, takes the lock
        // and resumes.
        home.ok(&["manager", "start"]);
        let inspect = home.ok(&["group", "inspect", "workers"]);
        assert!(
            inspect.contains("\"VERSION\": \"2\""),
            "the committed spec survived: {inspect}"
        );
    }

    let done = eventually(
        "all six on the new configuration",
        Duration::from_secs(60),
        || {
            let h = hashes(&home);
            let out = home.ok(&["group", "describe", "workers"]);
            (h.len() == 6 && h.iter().all(|x| *x != old_hash) && out.contains("; converged"))
                .then_some(h)
        },
    );
    stop.store(true, Ordering::SeqCst);
    let samples = sampling.join().unwrap();
    assert!(samples > 50, "sampled {samples} times");
    assert_eq!(done.iter().collect::<BTreeSet<_>>().len(), 1);
    let most = max.load(Ordering::SeqCst);
    assert!(
        most <= 7,
        "saw {most} instances at once; MaxSurge is 1 over 6"
    );
    let status = home.ok(&["group", "rollout", "status", "workers"]);
    assert!(status.contains("rollout complete"), "{status}");
    home.ok(&["group", "destroy", "workers"]);
}
