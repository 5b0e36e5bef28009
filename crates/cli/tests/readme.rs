//! The README's tour and examples, run through the built binary as a user would run them:
//! `up` with the quickstart, the commands of the tour in another "terminal" (killing a worker,
//! scaling, a pretend and a real rollout to `quickstart-v2.yaml`, closed pipes), instance ages
//! across a restart of `up`, `down` acting through the running `up`, and `examples/pets.yaml`
//! (a killed pet comes back with its logical ID and its data).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

use common::{eventually, example, Background, Home};
use infrakit_testkit::process::is_running as alive;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// Generous: a loaded 2-core machine runs the whole suite meanwhile.
const WAIT: Duration = Duration::from_secs(60);

fn up(home: &Home, spec: &str) -> Background {
    Background::spawn(home.command(&["up", &example(spec), "--plain"]))
}

/// The group's instances as the controller reports them (ID -> status).
fn statuses(home: &Home, group: &str) -> BTreeMap<String, Value> {
    let d = home.json(&["group", "describe", group, "-o", "json"]);
    d["Status"]["Instances"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|i| (i["ID"].as_str().unwrap().to_string(), i.clone()))
        .collect()
}

/// The process plugin's instances: ID -> (logical ID, PID).
fn processes(home: &Home) -> BTreeMap<String, (Option<String>, i32)> {
    home.process_instances()
        .iter()
        .map(|d| {
            (
                d["ID"].as_str().unwrap().to_string(),
                (
                    d["LogicalID"].as_str().map(str::to_string),
                    d["Properties"]["PID"].as_i64().unwrap() as i32,
                ),
            )
        })
        .collect()
}

/// Waits until `group` reports `n` healthy members of the current configuration, converged.
fn converged(home: &Home, group: &str, n: usize) -> BTreeSet<String> {
    eventually(&format!("{group} converged at {n}"), WAIT, || {
        let d = home.json(&["group", "describe", group, "-o", "json"]);
        let instances = statuses(home, group);
        let all_good = instances
            .values()
            .all(|i| i["Health"] == 1 && i["Config"] == "current");
        (d["Converged"] == true && instances.len() == n && all_good)
            .then(|| instances.into_keys().collect())
    })
}

/// Runs `infrakit args` with its standard output closed before it writes anything: it must end
/// quietly with success, as `ls` does in `ls | head -0`.
fn with_closed_stdout(home: &Home, args: &[&str]) {
    let mut child = home
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.success() && !stderr.contains("panicked"),
        "infrakit {args:?} with a closed pipe: {status}, stderr: {stderr}"
    );
}

#[test]
fn the_readme_tour_runs_against_up() {
    let home = Home::new();
    // `up ... --http ADDR`: the dashboard and metrics listener.
    let port = infrakit_testkit::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut upped = Background::spawn(home.command(&[
        "up",
        &example("quickstart.yaml"),
        "--plain",
        "--http",
        &addr,
    ]));
    upped.wait_for_line("Committed", WAIT, |l| {
        l == "Committed workers: Managing 3 instances"
    });
    upped.wait_for_line("converged", WAIT, |l| {
        l == "workers: 3 desired, 3 running, 3 healthy; converged"
    });

    // `group describe workers`: the members, their health, config and age.
    let table = home.lines(&["group", "describe", "workers"]);
    assert!(
        table.iter().any(|l| l.starts_with("ID")
            && ["LOGICAL", "HEALTH", "CONFIG", "AGE"]
                .iter()
                .all(|h| l.contains(h))),
        "{table:#?}"
    );
    let first = converged(&home, "workers", 3);

    // `curl -s http://127.0.0.1:9090/metrics | grep infrakit_group`, and the dashboard's page.
    let (code, metrics) = get(port, "/metrics").expect("the metrics listener answers");
    assert_eq!(code, 200);
    assert!(
        metrics
            .lines()
            .any(|l| l == "infrakit_group_healthy_instances{group=\"workers\"} 3"),
        "{metrics}"
    );
    // The manager's socket counts the connections the commands above made.
    let accepted = metrics
        .lines()
        .find(|l| {
            l.starts_with("infrakit_rpc_connections_accepted_total{")
                && l.contains("listener=\"unix\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert!(accepted.is_some_and(|n| n > 0), "{metrics}");
    let (code, page) = get(port, "/").expect("the dashboard answers");
    assert_eq!(code, 200);
    assert!(
        page.contains("<html") || page.contains("<!DOCTYPE"),
        "{page}"
    );
    // `infrakit events`: the group's lifecycle so far.
    let events = home.ok(&["events", "--group", "workers"]);
    assert!(events.contains("provisioned"), "{events}");

    // `instance describe -p`: what the process plugin sees, with PIDs.
    let procs = processes(&home);
    assert_eq!(procs.keys().cloned().collect::<BTreeSet<_>>(), first);
    let described = home.ok(&["instance", "describe", "-p"]);
    for (_, pid) in procs.values() {
        assert!(described.contains(&pid.to_string()), "{described}");
    }

    // Kill a worker: a replacement starts and the group converges at 3 again.
    let (victim, (_, pid)) = procs.iter().next().unwrap();
    kill(Pid::from_raw(*pid), Signal::SIGKILL).unwrap();
    let healed = eventually("the killed worker is replaced", WAIT, || {
        let ids = converged(&home, "workers", 3);
        (!ids.contains(victim)).then_some(ids)
    });
    assert_eq!(healed.intersection(&first).count(), 2);

    // Closed pipes end quietly: `group describe workers | true`, `plugin ls | head -1`,
    // `instance describe -q | grep -q x`.
    with_closed_stdout(&home, &["group", "describe", "workers"]);
    with_closed_stdout(&home, &["plugin", "ls"]);
    with_closed_stdout(
        &home,
        &["instance", "--name", "instance-process", "describe", "-q"],
    );

    // Scale out.
    home.ok(&["group", "scale", "workers", "5"]);
    let five = converged(&home, "workers", 5);
    assert!(healed.is_subset(&five));

    // A pretend commit of version 2 says what it would do and changes nothing.
    let v2 = example("quickstart-v2.yaml");
    let pretend = home.ok(&["group", "commit", &v2, "--pretend"]);
    assert_eq!(
        pretend.lines().next(),
        Some("Committing workers would involve: Performing a rolling update on 5 instances"),
        "{pretend}"
    );
    assert_eq!(converged(&home, "workers", 5), five);

    // The real commit rolls every worker, never below the group's size in healthy members.
    home.ok(&["group", "commit", &v2]);
    let rolled = eventually("every worker runs version 2", WAIT, || {
        let instances = statuses(&home, "workers");
        let healthy = instances.values().filter(|i| i["Health"] == 1).count();
        assert!(healthy >= 5, "never below the group's size: {instances:#?}");
        let ids: BTreeSet<String> = instances.keys().cloned().collect();
        (ids.len() == 5 && ids.is_disjoint(&five)).then_some(ids)
    });
    assert_eq!(converged(&home, "workers", 5), rolled);
    let status = home.ok(&["group", "rollout", "status", "workers"]);
    assert!(status.contains("complete"), "{status}");
    for id in &rolled {
        let log = home
            .path()
            .join("instance-process/instances")
            .join(id)
            .join("stdout.log");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.contains("version 2 started"),
            "{}: {text}",
            log.display()
        );
    }

    // Ages are the instances' own: a restarted `up` does not make old workers look new.
    let aged = eventually("the workers are a few seconds old", WAIT, || {
        let s = statuses(&home, "workers");
        s.values()
            .all(|i| i["AgeSeconds"].as_u64().unwrap() >= 3)
            .then_some(s)
    });
    let (status, rest) = upped.stop(Signal::SIGINT, WAIT);
    assert!(status.success(), "{status}: {rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("The instances keep running")),
        "{rest:?}"
    );
    let mut upped = up(&home, "quickstart.yaml");
    upped.wait_for_line("Committed", WAIT, |l| l.starts_with("Committed workers"));
    // Adopted as they are: the same workers, still of version 2 (quickstart.yaml is v1, so
    // the adopted group rolls back to it afterwards; ages are read before that matters).
    let again = eventually("the restarted controller reports the workers", WAIT, || {
        Some(statuses(&home, "workers")).filter(|s| !s.is_empty())
    });
    for (id, before) in &aged {
        if let Some(now) = again.get(id) {
            assert!(
                now["AgeSeconds"].as_u64() >= before["AgeSeconds"].as_u64(),
                "{id} was {before}, now {now}"
            );
        }
    }
    assert!(
        aged.keys().any(|id| again.contains_key(id)),
        "the restarted controller adopts the running workers: {again:#?}"
    );

    // `down` while `up` runs acts through it: the group goes, `up` keeps running.
    let pids: Vec<i32> = processes(&home).values().map(|(_, p)| *p).collect();
    assert!(!pids.is_empty());
    let out = home.ok(&["down", &example("quickstart.yaml")]);
    assert_eq!(out.trim(), "Destroyed workers");
    for pid in pids {
        eventually("the worker is gone", WAIT, || (!alive(pid)).then_some(()));
    }
    assert!(alive(upped.id() as i32), "up keeps running");
    let (status, _) = upped.stop(Signal::SIGINT, WAIT);
    assert!(status.success());
}

/// A plain HTTP GET on loopback: the status code and body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((code, body))
}

#[test]
fn a_killed_pet_returns_with_its_logical_id_and_its_data() {
    for port in [8081, 8082, 8083] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "examples/pets.yaml serves on 8081-8083, and {port} is taken on this machine"
        );
    }
    let home = Home::new();
    let mut upped = up(&home, "pets.yaml");
    upped.wait_for_line("converged", WAIT, |l| {
        l == "web: 3 desired, 3 running, 3 healthy; converged"
    });
    let before = processes(&home);
    let by_logical = |procs: &BTreeMap<String, (Option<String>, i32)>, lid: &str| {
        procs
            .iter()
            .find(|(_, (l, _))| l.as_deref() == Some(lid))
            .map(|(id, (_, pid))| (id.clone(), *pid))
    };
    let (old_id, pid) = by_logical(&before, "8082").expect("a pet 8082");
    let (code, body) = get(8082, "/started.txt").expect("pet 8082 serves");
    assert_eq!((code, body.lines().count()), (200, 1), "{body}");

    // `pkill -9 -f 'http.server 8082'`
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let new_id = eventually("pet 8082 is replaced and healthy", WAIT, || {
        let (id, _) = by_logical(&processes(&home), "8082")?;
        let healthy = statuses(&home, "web")
            .get(&id)
            .is_some_and(|s| s["Health"] == 1);
        (id != old_id && healthy).then_some(id)
    });
    assert_ne!(new_id, old_id);
    // Its volume survived: the replacement appended a second start to the same file.
    let (code, body) = eventually("8082 serves its data again", WAIT, || {
        get(8082, "/started.txt")
    });
    assert_eq!((code, body.lines().count()), (200, 2), "{body}");
    let file = home
        .path()
        .join("instance-process/volumes/data-8082/started.txt");
    assert_eq!(std::fs::read_to_string(file).unwrap().lines().count(), 2);
    // The other pets were left alone.
    for lid in ["8081", "8083"] {
        assert_eq!(by_logical(&processes(&home), lid), by_logical(&before, lid));
    }

    home.ok(&["down", &example("pets.yaml")]);
    let (status, _) = upped.stop(Signal::SIGINT, WAIT);
    assert!(status.success());
}

#[test]
fn plugin_stop_ends_a_plugin_whose_socket_was_deleted() {
    let home = Home::new();
    home.ok(&["plugin", "start", "flavor-vanilla"]);
    let pid_file = home.path().join("plugins/flavor-vanilla.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::fs::remove_file(home.path().join("plugins/flavor-vanilla")).unwrap();
    let ls = home.ok(&["plugin", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("flavor-vanilla") && l.contains("(socket missing)")),
        "{ls}"
    );
    let out = home.ok(&["plugin", "stop", "--all"]);
    assert_eq!(out.trim(), "stopped flavor-vanilla");
    eventually("the plugin exits", WAIT, || (!alive(pid)).then_some(()));
    assert!(!pid_file.exists());

    // A pid file whose process is gone, or whose pid now belongs to an older process (pid 1,
    // running since boot), is removed and nothing is signalled.
    std::fs::write(&pid_file, "1\n").unwrap();
    let out = home.ok(&["plugin", "stop", "--all"]);
    assert_eq!(out.trim(), "removed stale files of flavor-vanilla");
    assert!(!pid_file.exists());
    assert!(alive(1));
}
