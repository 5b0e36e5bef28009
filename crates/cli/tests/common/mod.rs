//! Helpers for tests that drive the built `infrakit` binary in a private `INFRAKIT_HOME`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A private infrakit home with the plugins it started; stops them on drop.
pub struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::Builder::new()
                .prefix("infrakit-test")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_infrakit"));
        c.args(args)
            .env("INFRAKIT_HOME", self.path())
            .env_remove("INFRAKIT_PLUGINS_DIR")
            .env_remove("RUST_LOG")
            .env("INFRAKIT_GROUP_POLL_INTERVAL", "200ms");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "infrakit {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "infrakit {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn lines(&self, args: &[&str]) -> Vec<String> {
        self.ok(args)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// What the process plugin (`instance-process`) describes, with properties: one JSON
    /// object per instance (`ID`, `LogicalID`, `Tags`, `Properties.PID`, ...).
    pub fn process_instances(&self) -> Vec<Value> {
        let v = self.json(&[
            "instance",
            "--name",
            "instance-process",
            "describe",
            "-p",
            "-o",
            "json",
        ]);
        v.as_array().cloned().unwrap_or_default()
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }
}

impl Drop for Home {
    /// Ends everything the test started in this home, even when it failed: the plugins and
    /// managers (through `plugin stop --all`), then every process still working in the home or
    /// told about it: foreground commands such as `up`, and the process plugin's instances,
    /// which outlive their plugin by design.
    fn drop(&mut self) {
        let _ = self.run(&["plugin", "stop", "--all"]);
        infrakit_testkit::process::kill_processes_in(self.path());
    }
}

/// A command running in the background with its standard output read line by line on a
/// thread of its own, so that a test waits for a line with a deadline instead of blocking.
/// Killed when dropped.
pub struct Background {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Background {
    pub fn spawn(mut cmd: Command) -> Background {
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("starting infrakit");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Background {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Reads lines until one satisfies `f`; fails the test after `within` or when output ends.
    pub fn wait_for_line(
        &mut self,
        what: &str,
        within: Duration,
        f: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if f(&line) {
                        return line;
                    }
                }
                Err(e) => panic!("no line {what} ({e:?}); output so far: {:#?}", self.seen),
            }
        }
    }

    /// Waits (at most `within`) for the command to exit by itself; returns its status and the
    /// rest of its output (also added to `seen`).
    pub fn wait_exit(&mut self, within: Duration) -> (std::process::ExitStatus, Vec<String>) {
        let status = eventually("the command exits", within, || {
            self.child.try_wait().unwrap()
        });
        // The reader ends at the end of the output.
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(line.clone());
            rest.push(line);
        }
        (status, rest)
    }

    /// Sends `signal` and waits (at most `within`) for the command to exit; returns its status
    /// and the rest of its output.
    pub fn stop(
        &mut self,
        signal: nix::sys::signal::Signal,
        within: Duration,
    ) -> (std::process::ExitStatus, Vec<String>) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
        self.wait_exit(within)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns `Some`, failing the test after `within`: the tests here run the
/// binary without a runtime of their own, so they wait on their thread.
pub use infrakit_testkit::eventually_blocking as eventually;

/// The repository's `examples/` directory.
pub fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .display()
        .to_string()
}

/// The instance files (`instance-*`) in `dir`, as instance-file writes them.
pub fn instance_files(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("instance-"))
        .collect()
}
