//! Describe output never shows secrets: provider properties under secret-named keys and user
//! data come out as `***` in `instance describe -p`, whatever the output format.

mod common;

use common::Home;

#[test]
fn describe_masks_secret_properties() {
    let home = Home::new();
    home.ok(&["plugin", "start", "instance-file"]);
    let spec = serde_json::json!({
        "Properties": {"Note": "visible", "Password": "hunter2", "Nested": {"api_token": "tok-123"}},
        "Tags": {"infrakit.group": "s"},
        "Init": "echo join --token SWMTKN-1-secret",
    });
    let file = home.write("spec.json", &spec.to_string());
    home.ok(&[
        "instance",
        "--name",
        "instance-file",
        "provision",
        file.to_str().unwrap(),
    ]);
    for format in ["json", "yaml", "table"] {
        let out = home.ok(&[
            "instance",
            "--name",
            "instance-file",
            "describe",
            "-p",
            "-o",
            format,
        ]);
        assert!(out.contains("visible"), "{format}: {out}");
        for secret in ["hunter2", "tok-123", "SWMTKN-1-secret"] {
            assert!(!out.contains(secret), "{format} shows {secret}: {out}");
        }
    }
}
