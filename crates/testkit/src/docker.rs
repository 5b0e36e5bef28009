//! A Docker engine of a test's own, for tests about the engine itself (its restart, say): its
//! own socket, data root, exec root, pid file and configuration, in network and mount
//! namespaces of its own so its bridge, iptables rules and mounts never meet the machine's
//! engine. The machine's engine and its containers are never touched.
//!
//! Needs root, `dockerd` (Debian `docker.io`) and `unshare` (util-linux).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::process::{kill_processes_in, ProcessGroup};

/// A private `dockerd`, killed with everything it started when dropped.
pub struct Engine {
    dockerd: Option<ProcessGroup>,
    dir: tempfile::TempDir,
}

impl Engine {
    /// Starts an engine and waits until its socket accepts connections.
    pub async fn start() -> Engine {
        let dir = tempfile::Builder::new()
            .prefix("infrakit-engine-")
            .tempdir()
            .expect("a temporary directory");
        std::fs::write(dir.path().join("daemon.json"), "{}\n").expect("writing daemon.json");
        let mut engine = Engine { dockerd: None, dir };
        engine.start_again().await;
        engine
    }

    /// The engine's directory (data root, exec root, socket, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The engine's API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir().join("docker.sock")
    }

    /// `unix://<socket>`, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The end of the engine's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir().join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops the engine as a service manager would (SIGTERM, then waits for it to exit): its
    /// containers stop, their records stay.
    pub async fn stop(&mut self) {
        let Some(mut dockerd) = self.dockerd.take() else {
            return;
        };
        let pid = Pid::from_raw(dockerd.id() as i32);
        kill(pid, Signal::SIGTERM).expect("signalling dockerd");
        let within = Duration::from_secs(60);
        let deadline = std::time::Instant::now() + within;
        while dockerd
            .child()
            .try_wait()
            .expect("waiting for dockerd")
            .is_none()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "dockerd did not stop within {within:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the engine (again) on the same directories and waits until it answers.
    pub async fn start_again(&mut self) {
        assert!(self.dockerd.is_none(), "the engine is running");
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("dockerd.log"))
            .expect("the engine's log file");
        let mut cmd = Command::new("unshare");
        cmd.args(["--net", "--mount", "--", "dockerd"])
            .arg(format!("--data-root={}", d.join("data").display()))
            .arg(format!("--exec-root={}", d.join("x").display()))
            .arg(format!("--pidfile={}", d.join("docker.pid").display()))
            .arg(format!("--config-file={}", d.join("daemon.json").display()))
            .arg(format!("--host={}", self.host()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the engine's log file"))
            .stderr(log);
        let mut dockerd = ProcessGroup::spawn(&mut cmd).unwrap_or_else(|e| {
            panic!("cannot start dockerd under unshare ({e}); install Debian's docker.io")
        });
        let within = Duration::from_secs(60);
        let deadline = std::time::Instant::now() + within;
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            if let Ok(Some(status)) = dockerd.child().try_wait() {
                panic!("dockerd exited ({status}):\n{}", self.log_tail());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "dockerd did not listen within {within:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.dockerd = Some(dockerd);
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(mut dockerd) = self.dockerd.take() {
            dockerd.kill();
        }
        // containerd's shims and the containers' processes left the engine's process group;
        // they all work under the engine's directory.
        kill_processes_in(self.dir.path());
    }
}
