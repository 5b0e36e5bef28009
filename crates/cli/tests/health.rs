//! Health-driven replacement and rollout control with real processes and real probes.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{eventually, Home};

fn members(home: &Home) -> BTreeSet<String> {
    home.lines(&["group", "describe", "web", "-q"])
        .into_iter()
        .collect()
}

#[test]
fn an_instance_whose_probe_fails_is_replaced_after_unhealthy_after() {
    let home = Home::new();
    home.ok(&[
        "plugin",
        "start",
        "group",
        "instance-process",
        "flavor-vanilla",
    ]);
    let marks = home.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let spec = serde_json::json!({
        "ID": "web",
        "Properties": {
            "Allocation": {"Size": 3},
            "Instance": {"Plugin": "instance-process", "Properties": {"Cmd": "sleep", "Args": ["300"]}},
            "Flavor": {"Plugin": "flavor-vanilla", "Properties": {
                "Health": {"Exec": ["sh", "-c", format!("test ! -e {}/sick-$INFRAKIT_INSTANCE_ID", marks.display())], "Interval": "200ms"}
            }},
            "Health": {"UnhealthyAfter": "2s"}
        }
    });
    let file = home.write("web.json", &spec.to_string());
    home.ok(&["group", "commit", file.to_str().unwrap()]);
    let before = eventually("3 healthy", Duration::from_secs(20), || {
        let out = home.ok(&["group", "describe", "web"]);
        out.contains("3 healthy; converged").then(|| members(&home))
    });

    let victim = before.iter().next().unwrap().clone();
    std::fs::write(marks.join(format!("sick-{victim}")), "").unwrap();
    let t0 = Instant::now();
    eventually(
        "the victim is reported unhealthy",
        Duration::from_secs(10),
        || {
            home.ok(&["group", "describe", "web"])
                .lines()
                .any(|l| l.starts_with(&victim) && l.contains("unhealthy"))
                .then_some(())
        },
    );
    let after = eventually("the victim is replaced", Duration::from_secs(20), || {
        let m = members(&home);
        (!m.contains(&victim) && m.len() == 3).then_some(m)
    });
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "replaced before UnhealthyAfter: {:?}",
        t0.elapsed()
    );
    assert_eq!(
        before.intersection(&after).count(),
        2,
        "healthy instances are never replaced"
    );
    home.ok(&["group", "destroy", "web"]);
}

#[test]
fn rollouts_can_be_paused_resumed_and_watched() {
    let home = Home::new();
    home.ok(&[
        "plugin",
        "start",
        "group",
        "instance-process",
        "flavor-vanilla",
    ]);
    let spec = |v: &str| {
        serde_json::json!({
            "ID": "web",
            "Properties": {
                "Allocation": {"Size": 4},
                "Instance": {"Plugin": "instance-process", "Properties": {"Cmd": "sleep", "Args": ["300"], "Env": {"V": v}}},
                "Flavor": {"Plugin": "flavor-vanilla"},
                "Updating": {"Partition": 1}
            }
        })
        .to_string()
    };
    let v1 = home.write("v1.json", &spec("1"));
    let v2 = home.write("v2.json", &spec("2"));
    home.ok(&["group", "commit", v1.to_str().unwrap()]);
    eventually("4 running", Duration::from_secs(20), || {
        (members(&home).len() == 4).then_some(())
    });
    assert!(home
        .ok(&["group", "rollout", "status", "web"])
        .contains("no rollout"));

    home.ok(&["group", "commit", v2.to_str().unwrap()]);
    let held = eventually("held at the partition", Duration::from_secs(20), || {
        let s = home.ok(&["group", "rollout", "status", "web"]);
        s.contains("1/4 updated").then_some(s)
    });
    assert!(
        held.contains("rollout progressing [#####...............] 1/4 updated"),
        "{held}"
    );
    let describe = home.ok(&["group", "describe", "web"]);
    assert!(
        describe.contains("rollout paused at partition: 1 of 4 updated"),
        "{describe}"
    );

    // Watch it live (plain output when not on a terminal) while it resumes.
    let mut watch =
        common::Background::spawn(home.command(&["group", "describe", "web", "--watch"]));
    assert!(home
        .ok(&["group", "rollout", "resume", "web"])
        .contains("Rollout of web resumed"));
    // The watch shows the group converging.
    watch.wait_for_line("the group converging", Duration::from_secs(60), |l| {
        l.contains("; converged")
    });
    let (status, _) = watch.stop(nix::sys::signal::Signal::SIGINT, Duration::from_secs(30));
    assert!(status.success(), "watch exits cleanly on Ctrl-C");
    assert!(home
        .ok(&["group", "rollout", "status", "web"])
        .contains("rollout complete [####################] 4/4 updated"));

    assert!(home
        .ok(&["group", "rollout", "undo", "web"])
        .contains("undone"));
    eventually("back on v1", Duration::from_secs(30), || {
        home.ok(&["group", "inspect", "web"])
            .contains("\"V\": \"1\"")
            .then_some(())
    });
    home.ok(&["group", "destroy", "web"]);
}
