//! The Terraform plugin through the `infrakit` binary: `plugin start instance-terraform` runs a
//! group of real `terraform_data` resources, and `instance import` adopts an existing resource
//! into a group, which then creates nothing for it.

mod common;

use std::time::Duration;

use common::{eventually, Home};
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(90);

fn spec(id: &str, size: usize) -> Value {
    json!({
        "ID": id,
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {
                "Plugin": "instance-terraform",
                "Properties": {"resource": {"terraform_data": {"node": {"input": "v1"}}}}
            },
            "Flavor": {"Plugin": "flavor-vanilla"},
        }
    })
}

/// Resource addresses in the directory's real state.
fn state(dir: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new("terraform")
        .args(["show", "-json", "-no-color"])
        .current_dir(dir)
        .output()
        .expect("terraform is on PATH (the Terraform plugin's tests need it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["values"]["root_module"]["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|r| r["type"] == "terraform_data")
        .map(|r| r["address"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_group_of_terraform_resources_and_an_adopted_one() {
    let home = Home::new();
    let dir = home.path().join("tf");
    std::fs::create_dir_all(&dir).unwrap();
    // A resource that exists before any group: declared by the user, applied by hand.
    std::fs::write(
        dir.join("legacy.tf.json"),
        json!({"resource": {"terraform_data": {"legacy": {"input": "v1"}}}}).to_string(),
    )
    .unwrap();
    for args in [
        &["init", "-input=false", "-no-color"][..],
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    ] {
        let out = std::process::Command::new("terraform")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("terraform runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(state(&dir), vec!["terraform_data.legacy".to_string()]);

    // Adopt it into group `adopted` before the group exists; then the user drops its declaration.
    let adopted = home.write("adopted.json", &spec("adopted", 1).to_string());
    std::fs::remove_file(dir.join("legacy.tf.json")).unwrap();
    let id = home.ok(&[
        "instance",
        "import",
        "--dir",
        dir.to_str().unwrap(),
        "--address",
        "terraform_data.legacy",
        "--spec",
        adopted.to_str().unwrap(),
    ]);
    let id = id.trim().to_string();
    assert!(!id.is_empty());

    home.ok(&[
        "plugin",
        "start",
        "instance-terraform",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    home.ok(&["plugin", "start", "group", "flavor-vanilla"]);
    home.ok(&["group", "commit", adopted.to_str().unwrap()]);
    let cattle = home.write("cattle.json", &spec("cattle", 2).to_string());
    home.ok(&["group", "commit", cattle.to_str().unwrap()]);

    eventually("both groups to converge", WITHIN, || {
        let a = home.json(&["group", "describe", "adopted", "-o", "json"]);
        let c = home.json(&["group", "describe", "cattle", "-o", "json"]);
        (a["Converged"] == true && c["Converged"] == true && c["Instances"].as_array()?.len() == 2)
            .then_some(())
    });
    // The adopted group kept the imported resource and created nothing.
    let a = home.json(&["group", "describe", "adopted", "-o", "json"]);
    let members: Vec<&str> = a["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["ID"].as_str().unwrap())
        .collect();
    assert_eq!(members, vec![id.as_str()]);
    assert_eq!(state(&dir).len(), 3, "{:?}", state(&dir));

    home.ok(&["group", "destroy", "cattle"]);
    home.ok(&["group", "destroy", "adopted"]);
    eventually("the resources to be destroyed", WITHIN, || {
        state(&dir).is_empty().then_some(())
    });
}
