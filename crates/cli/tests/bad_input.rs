//! Bad specs are refused with the path of the bad field, and change nothing.

mod common;

use std::time::Duration;

use common::{eventually, Home};
use serde_json::{json, Value};

fn spec(properties: Value) -> String {
    json!({"ID": "web", "Properties": properties}).to_string()
}

#[test]
fn bad_specs_are_refused_and_change_nothing() {
    let home = Home::new();
    let files = home.path().join("files");
    home.ok(&["plugin", "start", "group", "flavor-vanilla"]);
    home.ok(&[
        "plugin",
        "start",
        "instance-file",
        "--dir",
        files.to_str().unwrap(),
    ]);
    let instance = json!({"Plugin": "instance-file", "Properties": {"Note": "v1"}});
    let flavor = json!({"Plugin": "flavor-vanilla"});
    let good = home.write(
        "good.json",
        &spec(json!({"Allocation": {"Size": 2}, "Instance": instance, "Flavor": flavor})),
    );
    home.ok(&["group", "commit", good.to_str().unwrap()]);
    eventually("2 instances", Duration::from_secs(20), || {
        (home.lines(&["group", "describe", "web", "-q"]).len() == 2).then_some(())
    });
    let before_ids = home.lines(&["group", "describe", "web", "-q"]);
    let before_spec = home.ok(&["group", "inspect", "web"]);

    let cases = [
        (
            json!({"Instance": instance, "Flavor": flavor}),
            "Properties.Allocation:",
        ),
        (
            json!({"Allocation": {"Size": 3, "LogicalIDs": ["a"]}, "Instance": instance, "Flavor": flavor}),
            "Properties.Allocation: only one of Size or LogicalIDs",
        ),
        (
            json!({"Allocation": {"Size": 3}, "Instance": {"Plugin": "instance-nope"}, "Flavor": flavor}),
            "Properties.Instance.Plugin:",
        ),
        (
            json!({"Allocation": {"Size": 3}, "Instance": instance, "Flavor": {"Plugin": "flavor-nope"}}),
            "Properties.Flavor.Plugin:",
        ),
        (
            json!({"Allocation": {"Size": "three"}, "Instance": instance, "Flavor": flavor}),
            "Properties.Allocation.Size:",
        ),
        (
            json!({"Allocation": {"Size": 2.5}, "Instance": instance, "Flavor": flavor}),
            "Properties.Allocation.Size:",
        ),
        (
            json!({"Allocation": {"Size": 3}, "Instance": instance, "Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Health": {"TCP": 5}}}}),
            "Properties.Flavor.Properties.Health.TCP",
        ),
    ];
    for (i, (props, expected)) in cases.iter().enumerate() {
        let f = home.write(&format!("bad{i}.json"), &spec(props.clone()));
        let err = home.fails(&["group", "commit", f.to_str().unwrap()]);
        assert!(
            err.contains(expected),
            "case {i}: expected {expected:?} in {err:?}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one-line error: {err:?}");
        let err = home.fails(&["group", "commit", f.to_str().unwrap(), "--pretend"]);
        assert!(err.contains(expected), "pretend case {i}: {err:?}");
    }
    let not_json = home.write("broken.json", "{\"ID\": \"web\", ");
    assert!(home
        .fails(&["group", "commit", not_json.to_str().unwrap()])
        .contains("invalid JSON"));
    assert!(home
        .fails(&["group", "commit", "/nonexistent/spec.json"])
        .contains("/nonexistent/spec.json"));

    assert_eq!(
        home.ok(&["group", "inspect", "web"]),
        before_spec,
        "the committed spec is unchanged"
    );
    assert_eq!(
        home.lines(&["group", "describe", "web", "-q"]),
        before_ids,
        "no instance was touched"
    );
    assert_eq!(home.lines(&["group", "ls", "-q"]), vec!["web".to_string()]);
}

#[test]
fn commands_against_missing_plugins_say_what_to_do() {
    let home = Home::new();
    let err = home.fails(&["group", "ls"]);
    assert!(err.contains("infrakit plugin start group"), "{err}");
    assert_eq!(err.trim().lines().count(), 1);
    let err = home.fails(&["instance", "--name", "instance-file", "describe"]);
    assert!(err.contains("instance-file"), "{err}");
}
