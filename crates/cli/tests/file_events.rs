//! instance-file's events through the real binary: the group plugin follows them over the
//! plugin's socket, so an instance file deleted by hand is replaced at once, not at the next
//! poll or resync (both an hour away here).

mod common;

use std::time::Duration;

use common::{eventually, instance_files as files, Home};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn a_deleted_instance_file_is_replaced_through_events_not_polling() {
    let home = Home::new();
    let dir = home.path().join("files");
    home.ok(&[
        "plugin",
        "start",
        "instance-file",
        "group",
        "flavor-vanilla",
        "--dir",
        dir.to_str().unwrap(),
        "--poll-interval",
        "1h",
        "--resync-interval",
        "1h",
    ]);
    let spec = serde_json::json!({
        "ID": "cattle",
        "Properties": {
            "Allocation": {"Size": 3},
            "Instance": {"Plugin": "instance-file", "Properties": {"Note": "v1"}},
            "Flavor": {"Plugin": "flavor-vanilla"},
        }
    });
    let file = home.write("cattle.json", &spec.to_string());
    home.ok(&["group", "commit", file.to_str().unwrap()]);
    let three = eventually("three instances, converged", WAIT, || {
        let out = home.ok(&["group", "describe", "cattle"]);
        let now = files(&dir);
        (now.len() == 3 && out.contains("; converged")).then_some(now)
    });

    let killed = three.iter().next().unwrap().clone();
    std::fs::remove_file(dir.join(&killed)).unwrap();
    let healed = eventually("the deleted instance replaced", WAIT, || {
        let now = files(&dir);
        (now.len() == 3 && !now.contains(&killed)).then_some(now)
    });
    assert_eq!(healed.intersection(&three).count(), 2);
}
