//! `infrakit events` and the manager's `--http` listener, through the real binary: a manager
//! with the embedded store runs a group of local processes; the events command shows what
//! happened, follows new events, and the listener serves the same group's metrics.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{eventually, Home};
use infrakit_testkit::free_port;

const WITHIN: Duration = Duration::from_secs(30);

fn commit(home: &Home, size: usize) {
    let spec = serde_json::json!({
        "ID": "web",
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "instance-process", "Properties": {"Cmd": "sleep", "Args": ["300"]}},
            "Flavor": {"Plugin": "flavor-vanilla"},
        }
    });
    let file = home.write("web.json", &spec.to_string());
    home.ok(&["group", "commit", file.to_str().unwrap()]);
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw).ok()?;
    raw.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

#[test]
fn events_show_history_follow_new_ones_and_metrics_match() {
    let home = Home::new();
    let port = free_port();
    home.ok(&["plugin", "start", "instance-process", "flavor-vanilla"]);
    home.ok(&["manager", "start", "--http", &format!("127.0.0.1:{port}")]);
    commit(&home, 2);
    eventually("two healthy instances", WITHIN, || {
        let d = home.json(&["group", "describe", "web", "-o", "json"]);
        (d["Status"]["Healthy"] == 2).then_some(())
    });

    // History: the commit, the leadership and two provisions, oldest first; then it exits.
    let history = eventually("the provisions in the history", WITHIN, || {
        let out = home.ok(&["events", "-o", "json"]);
        let events: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let provisioned = events.iter().filter(|e| e["Type"] == "provisioned").count();
        (provisioned == 2).then_some(events)
    });
    let kinds: Vec<&str> = history.iter().filter_map(|e| e["Type"].as_str()).collect();
    let position = |k: &str| kinds.iter().position(|x| *x == k);
    assert!(position("leadership").is_some(), "{kinds:?}");
    assert!(position("committed") < position("provisioned"), "{kinds:?}");
    assert!(history
        .iter()
        .filter(|e| e["Topic"].as_str().unwrap().starts_with("/group/"))
        .all(|e| e["Data"]["Group"] == "web"));
    let table = home.ok(&["events", "--group", "web"]);
    assert!(table.contains("provisioned"), "{table}");
    assert!(
        !table.contains("leadership"),
        "only the group's events: {table}"
    );

    // Follow: a scale-up shows up as it happens.
    let mut follow = common::Background::spawn(
        home.command(&["events", "--follow", "--group", "web", "-o", "json"]),
    );
    let replayed = history
        .iter()
        .filter(|e| e["Topic"].as_str().unwrap().starts_with("/group/"))
        .count();
    for _ in 0..replayed {
        follow.wait_for_line("a replayed event", Duration::from_secs(30), |_| true);
    }
    home.ok(&["group", "scale", "web", "3"]);
    follow.wait_for_line("a provisioned event", Duration::from_secs(60), |l| {
        serde_json::from_str::<serde_json::Value>(l).unwrap()["Type"] == "provisioned"
    });
    drop(follow);

    // The listener's gauges agree with describe.
    eventually("metrics of the scaled group", WITHIN, || {
        let metrics = http_get(port, "/metrics")?;
        let d = home.json(&["group", "describe", "web", "-o", "json"]);
        let want = format!(
            "infrakit_group_healthy_instances{{group=\"web\"}} {}",
            d["Status"]["Healthy"]
        );
        (d["Status"]["Healthy"] == 3 && metrics.contains(&want)).then_some(())
    });
    let page = http_get(port, "/").unwrap();
    assert!(page.contains("<title>infrakit</title>"));
    home.ok(&["group", "destroy", "web"]);
}
