//! Process liveness through `/proc`, robust against pid reuse, and process-group signalling.
//!
//! A pid alone does not identify a process: once it exits, the kernel may hand the number to
//! another one. The start time (field 22 of `/proc/<pid>/stat`, in clock ticks since boot) does
//! not change over a process's life, so the pair (pid, start time) does.

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// What `/proc` says about a (pid, start time) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    /// The process exists and has not exited.
    Running,
    /// It has exited but its parent has not reaped it yet.
    Zombie,
    /// No process has this pid.
    Gone,
    /// The pid now belongs to another process (different start time).
    Reused,
}

impl Presence {
    /// True when the process is still alive.
    pub(crate) fn running(self) -> bool {
        self == Presence::Running
    }
}

/// The fields of `/proc/<pid>/stat` this crate needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// Field 3: `R`, `S`, `D`, `Z`, `X`, ...
    pub(crate) state: char,
    /// Field 22: start time in clock ticks after boot.
    pub(crate) start_time: u64,
}

/// Parses the content of a `/proc/<pid>/stat` file.
pub(crate) fn parse_stat(content: &str) -> Option<Stat> {
    // The command name (field 2) is in parentheses and may itself contain spaces and ')'.
    let rest = &content[content.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `fields` now starts at field 4; field 22 is 18 further on.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start_time })
}

/// Reads `/proc/<pid>/stat`.
pub(crate) fn stat(pid: i32) -> Option<Stat> {
    if pid <= 0 {
        return None;
    }
    let content = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&content)
}

/// The start time of `pid`, if it exists.
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|s| s.start_time)
}

/// Whether the process (pid, start time) still runs.
pub(crate) fn presence(pid: i32, start_time: u64) -> Presence {
    if pid <= 0 {
        return Presence::Gone;
    }
    if kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH) {
        return Presence::Gone;
    }
    match stat(pid) {
        None => Presence::Gone,
        Some(s) if s.start_time != start_time => Presence::Reused,
        Some(s) if matches!(s.state, 'Z' | 'X' | 'x') => Presence::Zombie,
        Some(_) => Presence::Running,
    }
}

/// Sends `signal` to the process group led by `pid`. Returns false when there is no such group.
pub(crate) fn signal_group(pid: i32, signal: Signal) -> bool {
    if pid <= 1 {
        return false; // never signal every process, nor init's group
    }
    match killpg(Pid::from_raw(pid), signal) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(e) => {
            tracing::warn!(pid, %signal, error = %e, "cannot signal process group");
            false
        }
    }
}

/// Sends `signal` to the process group of `pid`, or to `pid` alone when it has left that group.
/// Only for a pid whose identity was just checked: the fallback signals the pid itself.
pub(crate) fn signal_process(pid: i32, signal: Signal) -> bool {
    signal_group(pid, signal) || (pid > 1 && kill(Pid::from_raw(pid), signal).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let line = "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000000 100 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) R 1 2"), None);
    }

    #[test]
    fn this_process_is_running_and_a_wrong_start_time_is_reuse() {
        let me = std::process::id() as i32;
        let st = start_time(me).unwrap();
        assert_eq!(presence(me, st), Presence::Running);
        assert_eq!(presence(me, st + 1), Presence::Reused);
        assert_eq!(presence(0, 0), Presence::Gone);
        assert_eq!(presence(i32::MAX, 0), Presence::Gone);
        assert!(!signal_group(1, Signal::SIGTERM));
        assert!(!signal_group(-1, Signal::SIGTERM));
    }
}
