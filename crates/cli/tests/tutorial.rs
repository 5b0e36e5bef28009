//! The original InfraKit tutorial, run against the built binary: once with the file instance
//! plugin (deleting files kills instances), once with local processes (SIGKILL kills them).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{eventually, example, Home};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

fn members(home: &Home, plugin: &str) -> Vec<Value> {
    let v = home.json(&["instance", "--name", plugin, "describe", "-p", "-o", "json"]);
    v.as_array().unwrap().clone()
}

fn ids(list: &[Value]) -> BTreeSet<String> {
    list.iter()
        .map(|d| d["ID"].as_str().unwrap().to_string())
        .collect()
}

fn hashes(list: &[Value]) -> BTreeSet<String> {
    list.iter()
        .map(|d| {
            d["Tags"]["infrakit.config.hash"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// Waits until the group reports `n` members and is converged; returns their IDs.
fn converged(home: &Home, id: &str, n: usize) -> BTreeSet<String> {
    eventually(&format!("{id} converged at {n} instances"), WAIT, || {
        let out = home.ok(&["group", "describe", id]);
        let count = home.lines(&["group", "describe", id, "-q"]).len();
        (count == n && out.contains("; converged")).then(|| {
            home.lines(&["group", "describe", id, "-q"])
                .into_iter()
                .collect()
        })
    })
}

/// The part of the tutorial shared by both instance plugins, up to the self-healing step.
fn commit_free_recommit_and_roll(
    home: &Home,
    plugin: &str,
    v1: &str,
    v2: &str,
) -> BTreeSet<String> {
    assert_eq!(home.lines(&["plugin", "ls", "-q"]).len(), 3);
    assert_eq!(
        home.lines(&["instance", "--name", plugin, "describe", "-q"])
            .len(),
        0
    );

    assert_eq!(
        home.ok(&["group", "commit", v1]).trim(),
        "Committed cattle: Managing 5 instances"
    );
    let first = converged(home, "cattle", 5);
    assert_eq!(ids(&members(home, plugin)), first);

    // Free and commit again: the same five instances are adopted, none replaced.
    assert_eq!(home.ok(&["group", "free", "cattle"]).trim(), "Freed cattle");
    home.ok(&["group", "commit", v1]);
    let adopted = converged(home, "cattle", 5);
    assert_eq!(
        adopted, first,
        "re-commit after free must not replace instances"
    );
    assert_eq!(
        home.lines(&["group", "ls", "-q"]),
        vec!["cattle".to_string()]
    );

    // InfraKit's sentence first, exactly; then infrakit's step-by-step plan.
    let pretend = home.ok(&["group", "commit", v2, "--pretend"]);
    let mut lines = pretend.lines();
    assert_eq!(
        lines.next().unwrap(),
        "Committing cattle would involve: Performing a rolling update on 5 instances, then adding 5 instances to increase the group size to 10"
    );
    let plan: Vec<&str> = lines.collect();
    assert_eq!(
        plan.first().map(|l| l.trim()),
        Some("step 1: create 6 new instance(s)"),
        "{pretend}"
    );
    assert!(
        plan.last().unwrap().contains(
            "lowest number of healthy instances during the change: 5; most instances at once: 11"
        ),
        "{pretend}"
    );
    assert_eq!(
        ids(&members(home, plugin)),
        first,
        "a pretend commit changes nothing"
    );

    home.ok(&["group", "commit", v2]);
    let ten = eventually("10 members, all on the new configuration", WAIT, || {
        let m = members(home, plugin);
        (m.len() == 10 && hashes(&m).len() == 1 && ids(&m).is_disjoint(&first)).then_some(m)
    });
    let new_hash = hashes(&ten).into_iter().next().unwrap();
    let v1_hash = members_hash_of(home, v1);
    assert_ne!(new_hash, v1_hash);
    converged(home, "cattle", 10)
}

/// The config hash the group computes for a spec (read back through a pretend commit's describe).
fn members_hash_of(home: &Home, spec: &str) -> String {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(spec).unwrap()).unwrap();
    let p = infrakit_spi::GroupProperties::parse(&serde_json::from_value(v).unwrap()).unwrap();
    let _ = home;
    p.config_hash()
}

#[test]
fn tutorial_with_the_file_plugin() {
    let home = Home::new();
    let files = home.path().join("tutorial");
    home.ok(&["plugin", "start", "group", "flavor-vanilla"]);
    home.ok(&[
        "plugin",
        "start",
        "instance-file",
        "--dir",
        files.to_str().unwrap(),
    ]);

    let ten = commit_free_recommit_and_roll(
        &home,
        "instance-file",
        &example("cattle.json"),
        &example("cattle2.json"),
    );

    // Delete three instance files: the group heals back to ten.
    let killed: Vec<String> = ten.iter().take(3).cloned().collect();
    for id in &killed {
        std::fs::remove_file(files.join(id)).unwrap();
    }
    let healed = converged(&home, "cattle", 10);
    for id in &killed {
        assert!(!healed.contains(id));
    }

    assert_eq!(
        home.ok(&["group", "destroy", "cattle"]).trim(),
        "Destroyed cattle"
    );
    assert_eq!(
        home.lines(&["instance", "--name", "instance-file", "describe", "-q"])
            .len(),
        0
    );
    assert!(home
        .fails(&["group", "describe", "cattle"])
        .contains("Group 'cattle' is not being watched"));
}

fn process_spec(size: u32, version: &str) -> String {
    serde_json::json!({
        "ID": "cattle",
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "instance-process", "Properties": {"Cmd": "sleep", "Args": ["300"], "Env": {"VERSION": version}}},
            "Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Init": ["echo init $INFRAKIT_INSTANCE_ID"], "Tags": {"tier": "web"}}}
        }
    })
    .to_string()
}

#[test]
fn tutorial_with_local_processes() {
    let home = Home::new();
    home.ok(&[
        "plugin",
        "start",
        "group",
        "instance-process",
        "flavor-vanilla",
    ]);
    let v1 = home.write("cattle.json", &process_spec(5, "1.0"));
    let v2 = home.write("cattle2.json", &process_spec(10, "2.0"));

    let ten = commit_free_recommit_and_roll(
        &home,
        "instance-process",
        v1.to_str().unwrap(),
        v2.to_str().unwrap(),
    );

    // SIGKILL three processes: the group heals back to ten.
    let pids: Vec<(String, i32)> = members(&home, "instance-process")
        .iter()
        .filter(|d| ten.contains(d["ID"].as_str().unwrap()))
        .take(3)
        .map(|d| {
            (
                d["ID"].as_str().unwrap().to_string(),
                d["Properties"]["PID"].as_i64().unwrap() as i32,
            )
        })
        .collect();
    assert_eq!(pids.len(), 3);
    for (_, pid) in &pids {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    let healed = converged(&home, "cattle", 10);
    for (id, _) in &pids {
        assert!(
            !healed.contains(id),
            "killed instance {id} must be replaced"
        );
    }

    let survivors: Vec<i32> = members(&home, "instance-process")
        .iter()
        .map(|d| d["Properties"]["PID"].as_i64().unwrap() as i32)
        .collect();
    home.ok(&["group", "destroy", "cattle"]);
    assert_eq!(
        home.lines(&["instance", "--name", "instance-process", "describe", "-q"])
            .len(),
        0
    );
    for pid in survivors {
        eventually("destroyed processes are gone", WAIT, || {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                .is_err()
                .then_some(())
        });
    }
}
