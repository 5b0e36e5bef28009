//! Real processes: the `infrakit` binary run as plugins and managers that a test kills with
//! SIGKILL and starts again, and a census of the processes a process-plugin group really runs.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use infrakit_rpc::Client;

/// The `infrakit` binary: `$INFRAKIT_BIN`, else `infrakit` in the target directory of the
/// running test (`cargo test --workspace` builds it; for this crate alone, run
/// `cargo build -p infrakit` first).
///
/// # Panics
/// When there is no such file, or when it is older than a source file of the workspace (a
/// stale binary would test old code), with a message that says how to get a fresh one.
pub fn infrakit_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("INFRAKIT_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "INFRAKIT_BIN={} is not a file", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("the test binary knows its path");
    // target/<profile>/deps/<test> -> target/<profile>/infrakit
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("infrakit"))
        .expect("the test binary sits in target/<profile>/deps");
    let build = "build it first (`cargo build -p infrakit`; `cargo test --workspace` does) or set \
                 INFRAKIT_BIN";
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "the infrakit binary is missing at {}: {build}",
                bin.display()
            )
        });
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if let Some((newer, _)) = newest_source(&workspace).filter(|(_, at)| *at > built) {
        panic!(
            "the infrakit binary at {} is older than {}: {build}",
            bin.display(),
            newer.display()
        );
    }
    bin
}

/// The most recently modified source of the workspace (`Cargo.lock`, and every file under
/// `crates/*/src` and `crates/*/Cargo.toml`), with its time.
fn newest_source(workspace: &Path) -> Option<(PathBuf, std::time::SystemTime)> {
    fn walk(path: &Path, newest: &mut Option<(PathBuf, std::time::SystemTime)>) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
                walk(&entry.path(), newest);
            }
        } else if let Ok(at) = meta.modified() {
            if newest.as_ref().is_none_or(|(_, t)| at > *t) {
                *newest = Some((path.to_path_buf(), at));
            }
        }
    }
    let mut newest = None;
    walk(&workspace.join("Cargo.lock"), &mut newest);
    for krate in std::fs::read_dir(workspace.join("crates")).ok()?.flatten() {
        walk(&krate.path().join("src"), &mut newest);
        walk(&krate.path().join("Cargo.toml"), &mut newest);
    }
    newest
}

/// An `infrakit` process (a plugin or a manager) serving a socket in a private home.
///
/// Dropping it kills it (SIGKILL); the processes of process-plugin instances it started live on
/// (see [`Reaper`]).
#[derive(Debug)]
pub struct Daemon {
    args: Vec<String>,
    home: PathBuf,
    env: Vec<(String, String)>,
    socket: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Daemon {
    /// Starts `infrakit <args>` with `INFRAKIT_HOME=home`, serving on `plugins/<socket>`, logging
    /// to `<log_dir>/<socket>.log`, and waits until it answers there.
    pub async fn start(
        home: &Path,
        socket: &str,
        args: &[&str],
        env: &[(&str, &str)],
        log_dir: &Path,
    ) -> Daemon {
        let mut d = Daemon {
            args: args.iter().map(|s| s.to_string()).collect(),
            home: home.to_path_buf(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            socket: home.join("plugins").join(socket),
            log: log_dir.join(format!("{socket}.log")),
            child: None,
            starts: 0,
        };
        d.restart().await;
        d
    }

    /// The socket it serves.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How many times it was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// The end of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Kills it with SIGKILL and reaps it. Its socket file is left behind, as after a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Starts it again (killing it first if it runs) and waits until it answers.
    ///
    /// # Panics
    /// When it exits or does not answer within 20 s, quoting its log.
    pub async fn restart(&mut self) {
        self.kill();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the daemon's log file can be opened");
        let mut cmd = Command::new(infrakit_binary());
        cmd.args(&self.args)
            .env("INFRAKIT_HOME", &self.home)
            .env_remove("INFRAKIT_PLUGINS_DIR")
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        // Its own process group: signals meant for the test do not reach it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("infrakit starts");
        self.child = Some(child);
        self.starts += 1;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let probe = Client::new("probe", &self.socket).with_timeout(Duration::from_secs(2));
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "infrakit {:?} exited ({status}):\n{}",
                    self.args,
                    self.log_tail()
                );
            }
            if self.socket.exists() && probe.hello().await.is_ok() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "infrakit {:?} did not answer on {} within 20s:\n{}",
                self.args,
                self.socket.display(),
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The pids of the processes whose command line is exactly `argv` and whose environment holds
/// `INFRAKIT_GROUP=<group>`: the instances of a process-plugin group that really run (zombies,
/// with no command line, are not counted).
pub fn group_processes(group: &str, argv: &[String]) -> Vec<i32> {
    let marker = format!("INFRAKIT_GROUP={group}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .collect();
        if args.len() != argv.len() || args.iter().zip(argv).any(|(a, b)| *a != b.as_bytes()) {
            continue;
        }
        let Ok(environ) = std::fs::read(dir.join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|v| v == marker.as_bytes()) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

/// Kills, when dropped, every process of a process-plugin group (and its process group), so a
/// failed test leaves nothing running.
#[derive(Debug)]
pub struct Reaper {
    group: String,
    argv: Vec<String>,
}

impl Reaper {
    /// Reaps the processes that [`group_processes`] finds for `group` and `argv`.
    pub fn new(group: &str, argv: &[String]) -> Reaper {
        Reaper {
            group: group.to_string(),
            argv: argv.to_vec(),
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in group_processes(&self.group, &self.argv) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kills the children when the test ends, passed or not.
    struct Children(Vec<Child>);

    impl Drop for Children {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    #[test]
    fn processes_are_found_by_command_line_and_group() {
        let group = format!("census-{}", std::process::id());
        let argv: Vec<String> = ["sleep", "3599"].iter().map(|s| s.to_string()).collect();
        let spawn = |g: &str| {
            Command::new("sleep")
                .arg("3599")
                .env("INFRAKIT_GROUP", g)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let mut children = Children(vec![spawn(&group), spawn("someone-else")]);
        let mine = children.0[0].id() as i32;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while group_processes(&group, &argv) != vec![mine] {
            assert!(
                std::time::Instant::now() < deadline,
                "found {:?}, not [{mine}]",
                group_processes(&group, &argv)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(Reaper::new(&group, &argv));
        children.0[0].wait().unwrap();
        assert!(group_processes(&group, &argv).is_empty());
        let other = children.0[1].id() as i32;
        assert!(
            kill(Pid::from_raw(other), None).is_ok(),
            "only the group's processes are reaped"
        );
    }
}
