//! A small tmpfs that a test mounts under an infrakit home and remounts read-only for a moment,
//! so every write to it fails with `EROFS` as on a disk gone read-only. Needs `CAP_SYS_ADMIN`
//! (the tests run as root).
//!
//! A remount read-only is refused (`EBUSY`) while a file on the filesystem is open for writing,
//! so mount it where only short writes happen (the embedded store's directory), not where a
//! process keeps a file open (the manager's lock file, instance logs).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// A mounted tmpfs, unmounted when dropped.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
}

fn io_err(what: &str, path: &Path, e: Errno) -> io::Error {
    let hint = if e == Errno::EPERM {
        " (mounting needs CAP_SYS_ADMIN: run the tests as root)"
    } else {
        ""
    };
    io::Error::new(
        io::Error::from(e).kind(),
        format!("{what} {}: {e}{hint}", path.display()),
    )
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_mib` MiB, mode 0700, on `path` (created if missing).
    pub fn mount(path: &Path, size_mib: u32) -> io::Result<Tmpfs> {
        std::fs::create_dir_all(path)?;
        let data = format!("size={size_mib}m,mode=0700");
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(data.as_str()),
        )
        .map_err(|e| io_err("cannot mount a tmpfs on", path, e))?;
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remounts it read-only (`true`) or read-write (`false`). A remount read-only that is
    /// refused because a write is under way is retried for up to 5 s.
    pub async fn set_read_only(&self, read_only: bool) -> io::Result<()> {
        let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        if read_only {
            flags |= MsFlags::MS_RDONLY;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match mount(None::<&str>, &self.path, None::<&str>, flags, None::<&str>) {
                Ok(()) => return Ok(()),
                Err(Errno::EBUSY) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => return Err(io_err("cannot remount", &self.path, e)),
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Err(e) = umount2(&self.path, MntFlags::MNT_DETACH) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot unmount");
        }
    }
}

/// Makes every write to a manager's embedded store fail for a while, by the best means at hand:
/// a tmpfs remounted read-only (`EROFS`, as on a disk gone read-only), or, where mounting is
/// not permitted, the store's directory moved aside and replaced by a file (every write fails
/// with `EEXIST`/`ENOTDIR`; as root, permissions would not stop a write).
#[derive(Debug)]
pub enum WriteBlock {
    /// A tmpfs mounted on the manager's directory (`$INFRAKIT_HOME/<name>`).
    ReadOnly(Tmpfs),
    /// The store directory (`$INFRAKIT_HOME/<name>/groups`) replaced by a file while blocked.
    Replaced {
        /// The store directory.
        dir: PathBuf,
        /// Where it is moved while blocked.
        aside: PathBuf,
    },
}

impl WriteBlock {
    /// Prepares to block writes under `manager_dir` (`$INFRAKIT_HOME/<name>`, before the
    /// manager starts): mounts a tmpfs there, or falls back to replacing the store directory
    /// when mounting is not permitted.
    ///
    /// # Errors
    /// When mounting fails for another reason than a missing permission.
    pub fn prepare(manager_dir: &Path) -> io::Result<WriteBlock> {
        match Tmpfs::mount(manager_dir, 8) {
            Ok(t) => Ok(WriteBlock::ReadOnly(t)),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                tracing::warn!(error = %e, "cannot mount; replacing the store directory by a file instead");
                Ok(WriteBlock::Replaced {
                    dir: manager_dir.join("groups"),
                    aside: manager_dir.join("groups.aside"),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// How writes are blocked, in words.
    pub fn method(&self) -> &'static str {
        match self {
            WriteBlock::ReadOnly(_) => "tmpfs remounted read-only",
            WriteBlock::Replaced { .. } => "store directory replaced by a file",
        }
    }

    /// Blocks (`true`) or unblocks (`false`) every write to the store.
    ///
    /// # Errors
    /// When the remount or the renames fail.
    pub async fn block(&self, blocked: bool) -> io::Result<()> {
        match self {
            WriteBlock::ReadOnly(t) => t.set_read_only(blocked).await,
            WriteBlock::Replaced { dir, aside } if blocked => {
                std::fs::create_dir_all(dir)?;
                std::fs::rename(dir, aside)?;
                std::fs::write(dir, b"writes to the store are blocked\n")
            }
            WriteBlock::Replaced { dir, aside } => {
                std::fs::remove_file(dir)?;
                std::fs::rename(aside, dir)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("record.json"), b"{}")
    }

    #[tokio::test]
    async fn a_tmpfs_turns_read_only_and_back() {
        let home = tempfile::tempdir().unwrap();
        let t = Tmpfs::mount(&home.path().join("group"), 1).unwrap();
        let store = t.path().join("groups");
        write(&store).unwrap();
        t.set_read_only(true).await.unwrap();
        let e = write(&store).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(Errno::EROFS as i32), "{e}");
        t.set_read_only(false).await.unwrap();
        write(&store).unwrap();
        drop(t);
        assert!(!home.path().join("group/groups").exists(), "unmounted");
    }

    #[tokio::test]
    async fn a_replaced_store_directory_refuses_writes_and_comes_back() {
        let home = tempfile::tempdir().unwrap();
        let manager = home.path().join("group");
        let block = WriteBlock::Replaced {
            dir: manager.join("groups"),
            aside: manager.join("groups.aside"),
        };
        write(&manager.join("groups")).unwrap();
        block.block(true).await.unwrap();
        assert!(write(&manager.join("groups")).is_err());
        block.block(false).await.unwrap();
        assert!(manager.join("groups/record.json").is_file(), "records kept");
        write(&manager.join("groups")).unwrap();
    }
}
