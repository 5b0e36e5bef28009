//! Children that tests start, ended with everything they started when the test ends, even when
//! it fails: a panicking test unwinds, and the guards here kill on drop.
//!
//! - [`ProcessGroup`] owns a child started as the leader of a process group of its own and
//!   SIGKILLs the whole group on drop (the child, and whatever it forked: `dockerd`'s
//!   `containerd`, a shell's `sleep`, chromium's renderers).
//! - [`kill_processes_in`] sweeps up processes that left their group on purpose (the process
//!   plugin's instances, daemons started by `infrakit plugin start`), found by the directory
//!   a test gave them.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// A child leading its own process group; the whole group is killed when this is dropped.
#[derive(Debug)]
pub struct ProcessGroup {
    child: Child,
}

impl ProcessGroup {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command) -> std::io::Result<ProcessGroup> {
        let child = cmd.process_group(0).spawn()?;
        Ok(ProcessGroup { child })
    }

    /// The child's pid (also its process group's ID).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child, e.g. to `try_wait` for it.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// SIGKILLs the group and reaps the child. Idempotent.
    pub fn kill(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A temporary directory that ends every process working in it (or naming it) when dropped,
/// before it is removed: for state directories of the process plugin, whose instances outlive
/// the plugin by design, so that a failing test leaves no `sleep` behind.
#[derive(Debug)]
pub struct ProcessDir(tempfile::TempDir);

impl ProcessDir {
    /// A new empty directory.
    pub fn new() -> ProcessDir {
        ProcessDir(tempfile::tempdir().expect("a temporary directory"))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Default for ProcessDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ProcessDir {
    fn drop(&mut self) {
        // Before the directory is removed: a process's working directory is matched by path.
        kill_processes_in(self.0.path());
    }
}

/// The processes (other than this one) whose working directory is under `dir`, or whose
/// command line or environment mentions it.
pub fn processes_in(dir: &Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    let marker = dir.as_os_str().as_encoded_bytes();
    let mentions = |bytes: &[u8]| bytes.windows(marker.len()).any(|w| w == marker);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            if pid == me {
                return None;
            }
            let proc = e.path();
            let inside = std::fs::read_link(proc.join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
                || std::fs::read(proc.join("cmdline")).is_ok_and(|c| mentions(&c))
                || std::fs::read(proc.join("environ")).is_ok_and(|c| mentions(&c));
            inside.then_some(pid)
        })
        .collect()
}

/// SIGKILLs every process [`processes_in`] finds for `dir`, until none is left (or 10 s pass,
/// for processes that are still being started meanwhile). Returns how many were killed.
pub fn kill_processes_in(dir: &Path) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut killed = std::collections::BTreeSet::new();
    loop {
        let left: Vec<i32> = processes_in(dir)
            .into_iter()
            .filter(|pid| !is_zombie(*pid))
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            return killed.len();
        }
        for pid in left {
            if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                killed.insert(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` runs: it exists and has not exited (an exited process waiting for its
/// parent to reap it, or one being reaped, does not count).
pub fn is_running(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok() && !is_zombie(pid)
}

/// A process that has exited: a zombie waiting for its parent to reap it (`Z`), or one being
/// reaped (`X`).
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rfind(')')
            .and_then(|i| s[i + 1..].split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_and_the_processes_in_a_directory_are_ended() {
        let dir = tempfile::tempdir().unwrap();
        // A shell that forks a sleep: killing the shell alone would leave the sleep running.
        let mut group = ProcessGroup::spawn(
            Command::new("/bin/sh")
                .args(["-c", "sleep 600 & wait"])
                .current_dir(dir.path()),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while processes_in(dir.path()).len() < 2 {
            assert!(Instant::now() < deadline, "the shell and its sleep start");
            std::thread::sleep(Duration::from_millis(10));
        }
        let pids = processes_in(dir.path());
        group.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids
            .iter()
            .any(|p| !is_zombie(*p) && kill(Pid::from_raw(*p), None).is_ok())
        {
            assert!(Instant::now() < deadline, "every process of the group ends");
            std::thread::sleep(Duration::from_millis(10));
        }

        // A process in a group of its own, found by its working directory.
        let mut loner = Command::new("sleep")
            .arg("600")
            .current_dir(dir.path())
            .process_group(0)
            .spawn()
            .unwrap();
        assert_eq!(kill_processes_in(dir.path()), 1);
        assert!(loner.wait().is_ok());
        assert!(processes_in(dir.path()).is_empty());
    }
}
