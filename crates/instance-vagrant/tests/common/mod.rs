//! Shared by the integration tests: checks that Vagrant and Docker are there, the locally built
//! test image, a plugin in temporary directories with its own `VAGRANT_HOME`, Docker helpers and
//! cleanup of the containers a test leaves behind.

#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use infrakit_instance_vagrant::{VagrantOptions, VagrantPlugin};
use infrakit_testkit::{eventually, unique_name};
use serde_json::{json, Value};

/// The test image: busybox on `scratch`, built from the host's static busybox.
pub const IMAGE: &str = "infrakit-test/busybox:latest";

const DOCKERFILE: &str = r#"FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
"#;

static READY: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Fails the test at once, with what to install, unless `vagrant` and a Docker engine work;
/// builds the test image (once per test binary; never pulled: no registry is used).
pub async fn ready() -> &'static str {
    READY
        .get_or_init(|| async {
            tokio::task::spawn_blocking(|| {
                if let Err(e) = run("vagrant", &["--version"]) {
                    panic!("these tests need Vagrant (Debian package `vagrant`): {e}");
                }
                if let Err(e) = run("docker", &["info", "--format", "{{.ServerVersion}}"]) {
                    panic!("these tests need a running Docker engine and the docker CLI (Debian `docker.io`, dockerd started): {e}");
                }
                build_image();
            })
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        })
        .await;
    IMAGE
}

fn build_image() {
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("busybox"),
        infrakit_testkit::busybox::static_busybox(),
    )
    .unwrap();
    std::fs::set_permissions(
        context.path().join("busybox"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(context.path().join("Dockerfile"), DOCKERFILE).unwrap();
    let dir = context.path().to_str().unwrap();
    run("docker", &["build", "-q", "-t", IMAGE, dir])
        .unwrap_or_else(|e| panic!("building {IMAGE}: {e}"));
}

/// A plugin named `name` with its machines and its `VAGRANT_HOME` in temporary directories;
/// its containers are removed when it is dropped, also when the test fails.
pub struct TestPlugin {
    pub plugin: VagrantPlugin,
    pub name: String,
    pub image: &'static str,
    pub root: tempfile::TempDir,
}

impl TestPlugin {
    /// A plugin whose name starts with `prefix`.
    pub async fn new(prefix: &str) -> TestPlugin {
        let image = ready().await;
        let name = unique_name(prefix);
        let root = tempfile::tempdir().unwrap();
        let plugin = VagrantPlugin::open(VagrantOptions {
            vagrant_home: Some(root.path().join("vagrant.d")),
            command_timeout: Duration::from_secs(120),
            up_timeout: Duration::from_secs(120),
            ..VagrantOptions::new(&name, root.path().join("instances"))
        })
        .unwrap();
        TestPlugin {
            plugin,
            name,
            image,
            root,
        }
    }

    /// The label every container of this plugin carries.
    pub fn label(&self) -> String {
        format!("infrakit.plugin={}", self.name)
    }

    /// The state `vagrant status --machine-readable` reports in the directory of `id`, run as
    /// this plugin runs it (again while the plugin's own run holds the machine's lock); `None`
    /// once the directory is gone.
    pub async fn vagrant_state(&self, id: &str) -> Option<String> {
        let dir = self.plugin.instance_dir(id);
        let home = self.root.path().join("vagrant.d");
        eventually(
            &format!("vagrant status in {} reports a state", dir.display()),
            Duration::from_secs(30),
            || async {
                if !dir.exists() {
                    return Some(None);
                }
                let out = tokio::process::Command::new("vagrant")
                    .args(["status", "--machine-readable"])
                    .current_dir(&dir)
                    .env("VAGRANT_HOME", &home)
                    .env("VAGRANT_CHECKPOINT_DISABLE", "1")
                    .output()
                    .await
                    .expect("vagrant status");
                let stdout = String::from_utf8_lossy(&out.stdout);
                let state = stdout.lines().find_map(|l| {
                    let f: Vec<&str> = l.split(',').collect();
                    (f.len() >= 4 && f[2] == "state").then(|| f[3].to_string())
                });
                // No state yet: the machine is locked by a command in progress, or being
                // destroyed (only its metadata is printed meanwhile); ask again.
                state.map(Some)
            },
        )
        .await
    }
}

impl Drop for TestPlugin {
    fn drop(&mut self) {
        let script = format!(
            "ids=$(docker ps -aq --filter label={}); [ -z \"$ids\" ] || docker rm -f -v $ids >/dev/null; true",
            self.label()
        );
        let _ = Command::new("sh").arg("-c").arg(script).status();
    }
}

/// Properties of a docker machine running `image` with a command that sleeps and exits at once
/// on SIGTERM.
pub fn sleeper(image: &str) -> Value {
    json!({
        "Image": image,
        "Cmd": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
    })
}

/// `docker inspect -f <format> <container>`, `None` if there is no such container.
pub fn inspect(container: &str, format: &str) -> Option<String> {
    run("docker", &["inspect", "-f", format, container])
        .ok()
        .map(|s| s.trim().to_string())
}

/// True when container `name` exists and runs.
pub fn container_running(name: &str) -> bool {
    inspect(name, "{{.State.Running}}").as_deref() == Some("true")
}

/// SIGKILLs container `name`.
pub fn kill(name: &str) {
    run("docker", &["kill", name]).unwrap_or_else(|e| panic!("docker kill {name}: {e}"));
}

/// Runs `cmd` in container `name`; its standard output.
pub fn exec(name: &str, cmd: &[&str]) -> Result<String, String> {
    let mut args = vec!["exec", name];
    args.extend_from_slice(cmd);
    run("docker", &args)
}

/// Names of the containers with label `label`, in any state.
pub fn containers(label: &str) -> Vec<String> {
    let out = run(
        "docker",
        &[
            "ps",
            "-a",
            "--filter",
            &format!("label={label}"),
            "--format",
            "{{.Names}}",
        ],
    )
    .unwrap();
    let mut names: Vec<String> = out.lines().map(str::to_string).collect();
    names.sort();
    names
}
