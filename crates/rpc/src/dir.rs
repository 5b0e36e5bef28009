//! The plugin directory: where sockets and `.pid` files live, and how a name maps to a socket.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `$INFRAKIT_HOME`, else `~/.infrakit`.
pub fn infrakit_home() -> PathBuf {
    if let Some(home) = std::env::var_os("INFRAKIT_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    let user_home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    user_home.join(".infrakit")
}

/// `$INFRAKIT_PLUGINS_DIR`, else `$INFRAKIT_HOME/plugins`, else `~/.infrakit/plugins`.
pub fn plugins_dir() -> PathBuf {
    match std::env::var_os("INFRAKIT_PLUGINS_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => infrakit_home().join("plugins"),
    }
}

/// Creates `dir` (and parents) with mode 0700 if it is missing, and refuses a directory that
/// other users can write to or that another user owns, since anyone who can create a socket there
/// can impersonate a plugin.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let meta = std::fs::metadata(dir)?;
    check_private(dir, &meta, nix::unistd::geteuid().as_raw())
}

/// The decision of [`ensure_private_dir`] for a directory with metadata `meta`, as user `uid`.
fn check_private(dir: &Path, meta: &std::fs::Metadata, uid: u32) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refusing plugin directory {}: {why}", dir.display()),
        ))
    };
    if !meta.is_dir() {
        return refuse("it is not a directory".into());
    }
    if meta.uid() != uid {
        return refuse(format!(
            "it is owned by uid {}, not by us (uid {uid}); use a directory of your own (INFRAKIT_PLUGINS_DIR)",
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        return refuse(format!(
            "it is writable by other users (mode {:o}); run `chmod go-w {}`",
            mode & 0o7777,
            dir.display()
        ));
    }
    Ok(())
}

/// The socket path of plugin `name` (only the lookup part of `name/type` picks the socket).
pub fn socket_path(dir: &Path, name: &str) -> PathBuf {
    let (lookup, _) = infrakit_spi::group::split_plugin_name(name);
    dir.join(lookup)
}

/// The `.pid` file next to a plugin's socket.
pub fn pid_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.pid"))
}

/// One entry of the plugin directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Plugin name (the socket's file name).
    pub name: String,
    /// Socket path.
    pub socket: PathBuf,
    /// Process ID from the `.pid` file, if there is one.
    pub pid: Option<i32>,
}

/// Lists the sockets in `dir`, sorted by name. Files that are not sockets are skipped.
pub fn list(dir: &Path) -> io::Result<Vec<Entry>> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_socket() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = read_pid(&pid_path(dir, &name));
        out.push(Entry {
            socket: entry.path(),
            name,
            pid,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Reads a `.pid` file.
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The names of every `.pid` file in `dir`, sorted: plugins that may still run even when their
/// socket file is gone (deleted by hand, or by a crashed cleanup).
pub fn pid_names(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(plugin) = name.strip_suffix(".pid").filter(|n| !n.is_empty()) {
            names.push(plugin.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// The process a `.pid` file names, if it still runs and is the one that wrote it: an infrakit
/// program (`infrakit`, `infrakit-instance-aws`, ...) started before the file was written. A pid
/// recycled by a newer process, or one that belongs to some other program, is not ours to
/// signal.
pub fn pid_file_process(path: &Path) -> Option<i32> {
    let pid = read_pid(path)?;
    let written = std::fs::metadata(path).ok()?.modified().ok()?;
    let started = process_started(pid)?;
    // Start times are known to a clock tick; allow for it.
    let older = started <= written + std::time::Duration::from_secs(1);
    (older && is_infrakit_program(pid)).then_some(pid)
}

/// Whether process `pid` runs an infrakit program (its executable's or `argv[0]`'s file name is
/// `infrakit` or starts with `infrakit-`).
fn is_infrakit_program(pid: i32) -> bool {
    let named = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n == "infrakit" || n.starts_with("infrakit-"))
    };
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| named(&e));
    let argv0 = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let first = c.split(|b| *b == 0).next().unwrap_or_default();
        named(Path::new(&*String::from_utf8_lossy(first)))
    });
    exe || argv0
}

/// When process `pid` started (Linux `/proc`), or `None` if there is no such process.
pub fn process_started(pid: i32) -> Option<std::time::SystemTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`: comm may hold spaces and parentheses, so fields start after the
    // last ')'. The start time (in clock ticks after boot) is field 22, the 20th after comm.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = after_comm.split_whitespace().nth(19)?.parse().ok()?;
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|hz| *hz > 0)
        .unwrap_or(100) as u64;
    let since_boot = std::time::Duration::from_millis(ticks * 1000 / hz);
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(boot) + since_boot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_files_name_only_live_infrakit_programs_older_than_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let me = std::process::id() as i32;
        let started = process_started(me).expect("our own start time");
        let age = std::time::SystemTime::now()
            .duration_since(started)
            .unwrap();
        assert!(age < std::time::Duration::from_secs(3600), "{age:?}");
        assert_eq!(process_started(i32::MAX), None);

        // This test program is not an infrakit program: its pid file names nothing to signal.
        let file = tmp.path().join("p.pid");
        std::fs::write(&file, format!("{me}\n")).unwrap();
        assert!(!is_infrakit_program(me));
        assert_eq!(pid_file_process(&file), None);

        // A program called infrakit-*: ours while the file is younger than the process.
        let mut child = std::process::Command::new("/bin/bash")
            .args(["-c", "exec -a infrakit-probe sleep 60"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !is_infrakit_program(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "exec -a infrakit-probe"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::fs::write(&file, format!("{pid}\n")).unwrap();
        assert_eq!(pid_file_process(&file), Some(pid));
        // A file written before the process started names a recycled pid.
        let old = std::fs::File::options().write(true).open(&file).unwrap();
        old.set_modified(started - std::time::Duration::from_secs(600))
            .unwrap();
        assert_eq!(pid_file_process(&file), None);
        child.kill().unwrap();
        child.wait().unwrap();

        std::fs::write(tmp.path().join("q.pid"), "1\n").unwrap();
        std::fs::write(tmp.path().join("q"), "").unwrap();
        assert_eq!(pid_names(tmp.path()).unwrap(), ["p", "q"]);
    }

    #[test]
    fn directories_others_can_write_or_own_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("plugins");
        ensure_private_dir(&dir).unwrap();
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        let me = nix::unistd::geteuid().as_raw();
        assert!(check_private(&dir, &meta, me).is_ok());
        let err = check_private(&dir, &meta, me.wrapping_add(1)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("not by us"), "{err}");

        for mode in [0o770, 0o777, 0o1777, 0o702] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = ensure_private_dir(&dir).unwrap_err();
            assert!(
                err.to_string().contains("writable by other users"),
                "{mode:o}: {err}"
            );
        }
        // Readable by others is fine: the socket itself is 0600.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&dir).unwrap();

        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = ensure_private_dir(&file).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
