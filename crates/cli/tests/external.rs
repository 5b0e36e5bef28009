//! `infrakit plugin start` of a plugin shipped as a program of its own (`infrakit-<kind>` on
//! `PATH`, as `infrakit-instance-aws` is): started in the background with `--name`, listed, and
//! stopped like a built-in one.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{eventually, Home};

#[test]
fn programs_named_infrakit_kind_are_started_listed_and_stopped() {
    let home = Home::new();
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // A plugin program: here the file plugin, behind a program name of its own.
    let program = bin.join("infrakit-instance-mine");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\n[ \"$1\" = --name ] || exit 64\nexec {} plugin run instance-file --name \"$2\" --dir \"$INFRAKIT_HOME/mine\"\n",
            env!("CARGO_BIN_EXE_infrakit")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let out = home
        .command(&["plugin", "start", "instance-mine:mine2"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = eventually(
        "the program's plugin to answer",
        Duration::from_secs(10),
        || {
            let ls = home.ok(&["plugin", "ls"]);
            ls.lines()
                .any(|l| l.starts_with("mine2") && l.contains("Instance"))
                .then_some(ls)
        },
    );
    assert!(!listed.contains("(not answering)"), "{listed}");

    let unknown = home
        .command(&["plugin", "start", "instance-nothing"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        err.contains("infrakit-instance-nothing"),
        "the error names the program it looked for: {err}"
    );

    home.ok(&["plugin", "stop", "mine2"]);
    eventually("the plugin to stop", Duration::from_secs(10), || {
        (!home.ok(&["plugin", "ls", "-q"]).contains("mine2")).then_some(())
    });
}
