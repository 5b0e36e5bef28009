//! Remote CLIs: a manager with a TCP listener that requires a bearer token, and `infrakit
//! --remote` talking to it. The wrong token or none is refused; plaintext must be asked for by
//! name on both sides. (TLS with client certificates is tested in `crates/rpc/tests/security.rs`.)

mod common;

use std::time::Duration;

use common::{eventually, Home};
use infrakit_testkit::free_port;

#[test]
fn a_token_protected_listener_serves_remote_commands() {
    let home = Home::new();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let token = home.write("token", "s3cr3t-token\n");
    let wrong = home.write("wrong", "not-the-token\n");

    // A listener without TLS must say so by name.
    let refused = home.fails(&["manager", "run", "--listen", &addr]);
    assert!(refused.contains("--listen"), "{refused}");

    home.ok(&["plugin", "start", "instance-process", "flavor-vanilla"]);
    home.ok(&[
        "manager",
        "start",
        "--listen",
        &addr,
        "--listen-token-file",
        token.to_str().unwrap(),
        "--listen-insecure-plaintext",
    ]);
    let remote = |token_file: &std::path::Path, args: &[&str]| {
        let mut all = vec![
            "--remote",
            &addr,
            "--insecure-plaintext",
            "--token-file",
            token_file.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        // From a home without the manager's socket: only TCP can reach it.
        let elsewhere = Home::new();
        elsewhere.run(&all)
    };

    let status = eventually(
        "the remote manager to lead",
        Duration::from_secs(20),
        || {
            let out = remote(&token, &["manager", "status", "-o", "json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (v["Leader"] == true).then_some(v)
        },
    );
    assert_eq!(status["Leader"], true);

    let spec = serde_json::json!({
        "ID": "far",
        "Properties": {
            "Allocation": {"Size": 1},
            "Instance": {"Plugin": "instance-process", "Properties": {"Cmd": "sleep", "Args": ["300"]}},
            "Flavor": {"Plugin": "flavor-vanilla"},
        }
    });
    let file = home.write("far.json", &spec.to_string());
    let out = remote(&token, &["group", "commit", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(
        "the remote group to converge",
        Duration::from_secs(20),
        || {
            let d = home.json(&["group", "describe", "far", "-o", "json"]);
            (d["Converged"] == true).then_some(())
        },
    );

    // The lifecycle events come over the listener too (its instance's provisioning among them).
    let events = remote(&token, &["events", "--group", "far", "-o", "json"]);
    assert!(
        events.status.success(),
        "{}",
        String::from_utf8_lossy(&events.stderr)
    );
    let kinds: Vec<String> = String::from_utf8_lossy(&events.stdout)
        .lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).expect("one JSON event per line");
            assert_eq!(e["Data"]["Group"], "far", "{l}");
            e["Type"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert!(kinds.iter().any(|k| k == "provisioned"), "{kinds:?}");
    let no_events = remote(&wrong, &["events"]);
    assert!(!no_events.status.success());
    assert!(
        String::from_utf8_lossy(&no_events.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&no_events.stderr)
    );

    let denied = remote(&wrong, &["group", "ls"]);
    assert!(!denied.status.success());
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(
        err.contains("401") || err.to_lowercase().contains("unauthorized"),
        "{err}"
    );

    let elsewhere = Home::new();
    let plain = elsewhere.run(&[
        "--remote",
        &addr,
        "--token-file",
        token.to_str().unwrap(),
        "group",
        "ls",
    ]);
    assert!(!plain.status.success());
    assert!(String::from_utf8_lossy(&plain.stderr).contains("--insecure-plaintext"));

    home.ok(&["group", "destroy", "far"]);
}
