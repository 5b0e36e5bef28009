//! The shell logic of the wrapper that `Join: Command` puts around an engine, run by `/bin/sh`
//! with stand-ins for `dockerd` and the `docker` client (the real ones are in `swarm.rs`): what
//! the engine and the join get, signal forwarding, and exit statuses.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use infrakit_flavor_swarm::prepare::{
    wrapper, ENV_ADVERTISE_ADDR, ENV_DOCKER, ENV_MANAGERS, ENV_TOKEN, WRAPPER_NAME,
};
use infrakit_testkit::eventually;

/// Records its arguments; answers `version` once the engine is up, says the engine is in no
/// swarm, and fails `swarm join` for the addresses listed in `FAIL_JOIN`.
const FAKE_DOCKER: &str = r#"#!/bin/sh
echo "$*" >> "$FAKE_DIR/docker.log"
case "$*" in
  *" version") [ -e "$FAKE_DIR/up" ] ;;
  *" info "*) echo inactive ;;
  *"swarm join"*)
    for a in ${FAIL_JOIN:-}; do
      case "$*" in *" $a") exit 1 ;; esac
    done
    touch "$FAKE_DIR/joined" ;;
esac
"#;

/// Records its arguments, is "up" unless `NEVER_UP`, notes SIGTERM, exits with `ENGINE_EXIT`
/// once `$FAKE_DIR/stop` exists.
const FAKE_DOCKERD: &str = r#"#!/bin/sh
echo "$*" > "$FAKE_DIR/engine-args"
trap 'touch "$FAKE_DIR/engine-term"; exit 0' TERM
[ -n "${NEVER_UP:-}" ] && exit "${ENGINE_EXIT:-0}"
touch "$FAKE_DIR/up"
until [ -e "$FAKE_DIR/stop" ]; do sleep 0.05; done
exit "${ENGINE_EXIT:-0}"
"#;

struct Run {
    dir: tempfile::TempDir,
    child: Child,
}

impl Drop for Run {
    fn drop(&mut self) {
        // The wrapper and its engine share a process group.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}

fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Starts the wrapper around the fake engine with `engine_args`, with `env` on top of the join
/// settings.
fn start(engine_args: &[&str], env: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let docker = script(dir.path(), "docker", FAKE_DOCKER);
    let dockerd = script(dir.path(), "dockerd", FAKE_DOCKERD);
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(wrapper())
        .arg(WRAPPER_NAME)
        .arg(&dockerd)
        .args(engine_args)
        .current_dir(dir.path())
        .env("FAKE_DIR", dir.path())
        .env("INFRAKIT_INSTANCE_ID", "proc-test")
        .env(ENV_DOCKER, &docker)
        .env(ENV_TOKEN, "SWMTKN-1-x")
        .env(ENV_MANAGERS, "10.0.0.1:2377 10.0.0.2:2377")
        .envs(env.iter().copied())
        .process_group(0)
        .spawn()
        .unwrap();
    Run { dir, child }
}

impl Run {
    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    async fn file(&self, name: &str) {
        let path = self.dir.path().join(name);
        eventually(
            &format!("{name} exists"),
            Duration::from_secs(20),
            || async { path.exists().then_some(()) },
        )
        .await
    }

    async fn exit(&mut self) -> ExitStatus {
        let child = std::sync::Mutex::new(&mut self.child);
        eventually("the wrapper exits", Duration::from_secs(20), || async {
            child.lock().unwrap().try_wait().unwrap()
        })
        .await
    }

    fn socket(&self) -> String {
        format!("unix://{}/swarm-proc-test.sock", self.dir.path().display())
    }
}

#[tokio::test]
async fn the_engine_gets_the_labels_and_a_socket_and_joins_through_it() {
    let mut run = start(&["--debug", "--label", "infrakit-link=abc"], &[]);
    run.file("joined").await;
    assert_eq!(
        run.read("engine-args").trim(),
        format!("--debug --label infrakit-link=abc -H {}", run.socket())
    );
    let log = run.read("docker.log");
    let join = log.lines().find(|l| l.contains("swarm join")).unwrap();
    assert_eq!(
        join,
        format!(
            "-H {} swarm join --token SWMTKN-1-x 10.0.0.1:2377",
            run.socket()
        )
    );
    assert!(
        log.contains("info --format {{.Swarm.LocalNodeState}}"),
        "{log}"
    );

    // SIGTERM to the wrapper (what Destroy sends) reaches the engine; the wrapper exits with it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    run.file("engine-term").await;
    assert_eq!(run.exit().await.code(), Some(0));
}

#[tokio::test]
async fn managers_advertise_and_the_next_address_is_tried() {
    let mut run = start(
        &[],
        &[
            (ENV_ADVERTISE_ADDR, "10.0.0.5"),
            ("FAIL_JOIN", "10.0.0.1:2377"),
            ("ENGINE_EXIT", "3"),
        ],
    );
    run.file("joined").await;
    let joins: Vec<String> = run
        .read("docker.log")
        .lines()
        .filter(|l| l.contains("swarm join"))
        .map(|l| l.split(" swarm join ").nth(1).unwrap().to_string())
        .collect();
    assert_eq!(
        joins,
        [
            "--token SWMTKN-1-x --advertise-addr 10.0.0.5 10.0.0.1:2377",
            "--token SWMTKN-1-x --advertise-addr 10.0.0.5 10.0.0.2:2377"
        ]
    );
    // The engine stops by itself: the wrapper exits with its status.
    std::fs::write(run.dir.path().join("stop"), "").unwrap();
    assert_eq!(run.exit().await.code(), Some(3));
}

#[tokio::test]
async fn an_engine_that_dies_before_answering_fails_the_instance() {
    let mut run = start(&[], &[("NEVER_UP", "1")]);
    assert_eq!(run.exit().await.code(), Some(1));
    assert!(!run.read("docker.log").contains("swarm join"));
}
