//! The README's first command: `infrakit up examples/quickstart.yaml`, then `down`.

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::{eventually, example, Home};

#[test]
fn up_runs_the_quickstart_and_down_removes_it() {
    let home = Home::new();
    let quickstart = example("quickstart.yaml");
    let mut up = home
        .command(&["up", &quickstart, "--plain"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let line = lines.next().expect("up kept running").unwrap();
        seen.push(line.clone());
        if line == "workers: 3 desired, 3 running, 3 healthy; converged" {
            break;
        }
    }
    assert_eq!(
        seen.first().map(String::as_str),
        Some("Committed workers: Managing 3 instances"),
        "{seen:?}"
    );
    assert!(
        seen.last().unwrap().ends_with("3 healthy; converged"),
        "{seen:?}"
    );

    // Other commands work against it from another terminal.
    assert_eq!(home.lines(&["group", "describe", "workers", "-q"]).len(), 3);
    let status = home.ok(&["manager", "status"]);
    assert!(status.contains("leader:     yes"), "{status}");
    // A second `up` on the same home is refused with a clear message.
    let err = home.fails(&["up", &quickstart, "--plain"]);
    assert!(err.contains("already running"), "{err}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert!(up.wait().unwrap().success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("The instances keep running")),
        "{rest:?}"
    );

    // The processes outlived `up`; `down` adopts and destroys them.
    let pids: Vec<i32> = std::fs::read_dir(home.path().join("instance-process/instances"))
        .unwrap()
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.ok()?.path().join("instance.json")).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            v["PID"].as_i64().or(v["pid"].as_i64()).map(|p| p as i32)
        })
        .collect();
    assert_eq!(pids.len(), 3, "three instances survive `up`");
    assert_eq!(home.ok(&["down", &quickstart]).trim(), "Destroyed workers");
    for pid in pids {
        eventually("the process is gone", Duration::from_secs(10), || {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                .is_err()
                .then_some(())
        });
    }
}
