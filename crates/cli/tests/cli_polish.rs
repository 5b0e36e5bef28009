//! The command line's manners: completions and man pages, colours only on a terminal and never
//! with NO_COLOR, live views, rollout progress, and `--force` for destructive commits.

mod common;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::{eventually, Home};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// A running command whose stdout is a terminal (a pty); its output arrives on `output`.
struct OnTerminal {
    child: Child,
    output: Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl OnTerminal {
    fn spawn(mut cmd: Command) -> OnTerminal {
        let size = nix::pty::Winsize {
            ws_row: 50,
            ws_col: 200,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(&size, None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Only the child holds the terminal now, so reading ends when it exits.
        drop(slave);
        let mut master = std::fs::File::from(pty.master);
        let (tx, output) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        OnTerminal {
            child,
            output,
            seen: Vec::new(),
        }
    }

    /// Collects output until it contains `needle`; returns everything seen so far.
    fn until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = String::from_utf8_lossy(&self.seen).into_owned();
            if text.contains(needle) {
                return text;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => self.seen.extend(chunk),
                Err(_) => panic!("timed out waiting for {needle:?} in {text:?}"),
            }
        }
    }

    /// Waits for the command to exit; returns its success and all of its output.
    fn finish(mut self) -> (bool, String) {
        let status = self.child.wait().unwrap();
        while let Ok(chunk) = self.output.recv_timeout(Duration::from_secs(5)) {
            self.seen.extend(chunk);
        }
        (
            status.success(),
            String::from_utf8_lossy(&self.seen).into_owned(),
        )
    }

    fn interrupt(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
    }
}

/// True when `text` has a "cursor up" escape (`ESC [ n A`).
fn moves_cursor_up(text: &str) -> bool {
    text.split("\x1b[").skip(1).any(|rest| {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        rest[digits..].starts_with('A')
    })
}

fn start_plugins(home: &Home) {
    let files = home.path().join("files");
    home.ok(&["plugin", "start", "group", "flavor-vanilla"]);
    home.ok(&[
        "plugin",
        "start",
        "instance-file",
        "--dir",
        files.to_str().unwrap(),
    ]);
}

fn spec(size: u64, note: &str, updating: Value) -> String {
    json!({
        "ID": "web",
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "instance-file", "Properties": {"Note": note}},
            "Flavor": {"Plugin": "flavor-vanilla"},
            "Updating": updating,
        }
    })
    .to_string()
}

fn members(home: &Home) -> Vec<String> {
    home.lines(&["group", "describe", "web", "-q"])
}

fn converged(home: &Home, n: usize) {
    eventually(&format!("web converged at {n}"), WAIT, || {
        let out = home.ok(&["group", "describe", "web"]);
        (members(home).len() == n && out.contains("; converged")).then_some(())
    });
}

#[test]
fn completions_and_man_pages_are_generated() {
    let home = Home::new();
    let bash = home.ok(&["completions", "bash"]);
    for word in [
        "infrakit",
        "group",
        "commit",
        "rollout",
        "template",
        "completions",
        "man",
    ] {
        assert!(bash.contains(word), "the bash completion mentions {word}");
    }
    let script = home.write("infrakit.bash", &bash);
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash is needed to check the completion script");
    assert!(check.status.success(), "bash -n: {check:?}");
    assert!(home
        .ok(&["completions", "zsh"])
        .contains("#compdef infrakit"));
    assert!(home
        .ok(&["completions", "fish"])
        .contains("complete -c infrakit"));

    let top = home.ok(&["man"]);
    assert!(top.contains(".TH infrakit 1"), "{top}");
    let dir = home.path().join("man");
    let out = home.ok(&["man", "--dir", dir.to_str().unwrap()]);
    assert!(out.starts_with("wrote "), "{out}");
    for page in [
        "infrakit.1",
        "infrakit-group.1",
        "infrakit-group-commit.1",
        "infrakit-template-render.1",
        "infrakit-up.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page} is a man page");
    }
    let commit = std::fs::read_to_string(dir.join("infrakit-group-commit.1")).unwrap();
    assert!(
        commit.contains("force"),
        "the commit page documents --force"
    );
    assert!(
        !dir.join("infrakit-plugin-run.1").exists(),
        "hidden commands have no page"
    );
}

#[test]
fn colours_only_on_a_terminal_and_never_with_no_color() {
    let home = Home::new();
    start_plugins(&home);
    let v1 = home.write("v1.json", &spec(2, "v1", json!({})));
    home.ok(&["group", "commit", v1.to_str().unwrap()]);
    converged(&home, 2);

    // Not a terminal: no escape codes anywhere, also in the watch views.
    for args in [
        &["group", "describe", "web"][..],
        &["group", "ls"],
        &["plugin", "ls"],
        &["group", "rollout", "status", "web"],
        &["instance", "--name", "instance-file", "describe"],
    ] {
        let out = home.ok(args);
        assert!(!out.contains('\x1b'), "{args:?} printed escapes: {out:?}");
    }
    let mut watch =
        common::Background::spawn(home.command(&["group", "describe", "web", "--watch"]));
    watch.wait_for_line("a converged summary", WAIT, |l| l.contains("; converged"));
    let block = watch.seen.clone();
    let (status, _) = watch.stop(nix::sys::signal::Signal::SIGINT, WAIT);
    assert!(status.success());
    let text = block.join("\n");
    assert!(text.starts_with("ID"), "{text}");
    assert!(!text.contains('\x1b'), "plain watch output: {text:?}");

    // On a terminal with NO_COLOR: still none.
    for args in [
        &["group", "describe", "web"][..],
        &["group", "ls"],
        &["plugin", "ls"],
    ] {
        let mut cmd = home.command(args);
        cmd.env("NO_COLOR", "1");
        let (ok, out) = OnTerminal::spawn(cmd).finish();
        assert!(ok, "{args:?}: {out}");
        assert!(out.contains("ID") || out.contains("NAME"), "{out:?}");
        assert!(!out.contains('\x1b'), "NO_COLOR {args:?}: {out:?}");
    }

    // On a terminal without NO_COLOR: health in colour, columns still aligned.
    let mut cmd = home.command(&["group", "describe", "web"]);
    cmd.env_remove("NO_COLOR").env("TERM", "xterm");
    let (ok, out) = OnTerminal::spawn(cmd).finish();
    assert!(ok, "{out}");
    assert!(out.contains("\x1b["), "colours on a terminal: {out:?}");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("instance-")).collect();
    assert_eq!(rows.len(), 2, "{out:?}");
    home.ok(&["group", "destroy", "web"]);
}

#[test]
fn live_views_redraw_in_place_and_rollouts_show_progress() {
    let home = Home::new();
    start_plugins(&home);
    let v1 = home.write("v1.json", &spec(3, "v1", json!({"Partition": 1})));
    let v2 = home.write("v2.json", &spec(3, "v2", json!({"Partition": 1})));
    home.ok(&["group", "commit", v1.to_str().unwrap()]);
    converged(&home, 3);

    // A live view on a terminal redraws in place: cursor movements, never a cleared screen.
    let mut cmd = home.command(&["group", "describe", "web", "--watch"]);
    cmd.env("NO_COLOR", "1");
    let mut live = OnTerminal::spawn(cmd);
    live.until("; converged");
    home.ok(&["group", "commit", v2.to_str().unwrap()]);
    // The rollout stops at the partition after one instance: a progress bar appears.
    let text = live.until("1/3 updated");
    live.interrupt();
    let (ok, rest) = live.finish();
    assert!(ok, "the watch ends cleanly on Ctrl-C: {rest}");
    assert!(text.contains("web: rollout ["), "{text:?}");
    assert!(!text.contains("\x1b[2J"), "no cleared screens: {text:?}");
    assert!(moves_cursor_up(&text), "redrawn in place: {text:?}");

    // `rollout status --watch` without a terminal: a line per change until it completes.
    let mut watch =
        common::Background::spawn(home.command(&["group", "rollout", "status", "web", "--watch"]));
    let first = watch.wait_for_line("the first line", WAIT, |_| true);
    assert!(
        first.starts_with("web: rollout progressing [######..............] 1/3 updated"),
        "the watch starts at the partition: {first}"
    );
    assert!(home
        .ok(&["group", "rollout", "resume", "web"])
        .contains("resumed"));
    let (status, _) = watch.wait_exit(WAIT);
    assert!(status.success(), "{:?}", watch.seen);
    let rest = &watch.seen[1..];
    assert_eq!(
        rest.last().map(String::as_str),
        Some("web: rollout complete [####################] 3/3 updated"),
        "{rest:?}"
    );
    assert!(rest.iter().all(|l| !l.contains('\x1b')), "{rest:?}");

    // On a terminal, the same watch draws a progress bar and ends on its own.
    let cmd = home.command(&["group", "rollout", "status", "web", "--watch"]);
    let (ok, out) = OnTerminal::spawn(cmd).finish();
    assert!(ok, "{out}");
    assert!(out.contains("web: rollout ["), "{out:?}");
    assert!(out.contains("3/3 updated, "), "{out:?}");
    assert!(out.contains("complete"), "{out:?}");
    home.ok(&["group", "destroy", "web"]);
}

#[test]
fn destructive_commits_need_force() {
    let home = Home::new();
    start_plugins(&home);
    let four = home.write("four.json", &spec(4, "v1", json!({})));
    home.ok(&["group", "commit", four.to_str().unwrap()]);
    converged(&home, 4);
    let before = members(&home);
    let committed = home.ok(&["group", "inspect", "web"]);

    // To 0, and to fewer than half: refused, exit 1, nothing changed.
    for (size, expected) in [
        (
            0,
            "it would scale web to 0 and destroy all 4 of its instances",
        ),
        (
            1,
            "it would destroy 3 of the 4 instances of web (size 4 -> 1)",
        ),
    ] {
        let file = home.write(&format!("size{size}.json"), &spec(size, "v1", json!({})));
        let out = home.run(&["group", "commit", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{err}");
        assert!(err.contains("--force"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        // A pretend commit warns instead.
        let pretend = home.ok(&["group", "commit", file.to_str().unwrap(), "--pretend"]);
        assert!(pretend.contains("committing it needs --force"), "{pretend}");
    }
    assert_eq!(home.ok(&["group", "inspect", "web"]), committed);
    assert_eq!(members(&home), before, "no instance was touched");

    // Half, and a rolling update replacing every instance: no --force needed.
    let two = home.write("two.json", &spec(2, "v1", json!({})));
    home.ok(&["group", "commit", two.to_str().unwrap()]);
    converged(&home, 2);
    let two_v2 = home.write("two-v2.json", &spec(2, "v2", json!({})));
    let out = home.ok(&["group", "commit", two_v2.to_str().unwrap()]);
    assert!(out.starts_with("Committed web"), "{out}");
    eventually("the rolling update finishes", WAIT, || {
        home.ok(&["group", "rollout", "status", "web"])
            .contains("complete")
            .then_some(())
    });

    // With --force it goes through.
    let zero = home.write("zero.json", &spec(0, "v2", json!({})));
    home.ok(&["group", "commit", zero.to_str().unwrap(), "--force"]);
    converged(&home, 0);
    home.ok(&["group", "destroy", "web"]);
}
