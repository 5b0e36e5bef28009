//! Leadership: who among several managers may act.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use infrakit_group::{Fence, Unfenced};

use crate::ManagerError;

/// A term of leadership: what the leader may do, and when it ends.
#[derive(Debug, Clone)]
pub struct Term {
    /// Checked before every mutating action of the group controller.
    pub fence: Arc<dyn Fence>,
    /// Cancelled when leadership is lost (the lease expired, the backend went away, ...).
    pub lost: CancellationToken,
}

/// A way of electing one manager among several.
#[async_trait]
pub trait Leadership: Send + Sync + std::fmt::Debug {
    /// Waits until this manager leads.
    async fn campaign(&self) -> Result<Term, ManagerError>;
    /// Where the current leader can be reached, if one is known.
    async fn leader(&self) -> Result<Option<String>, ManagerError>;
    /// Details for `manager status`.
    fn info(&self) -> Value;
}

/// The embedded backend: a single manager per `INFRAKIT_HOME`, guarded by an exclusive lock on
/// `manager.lock` (released by the kernel when the process dies, even by SIGKILL).
#[derive(Debug)]
pub struct LocalLeadership {
    path: PathBuf,
    location: String,
    _lock: nix::fcntl::Flock<File>,
}

impl LocalLeadership {
    /// Takes the lock in `home`, or fails at once if another manager holds it.
    pub fn acquire(home: &Path, location: &str) -> Result<LocalLeadership, ManagerError> {
        let path = home.join("manager.lock");
        let io = |source| ManagerError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(home).map_err(io)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        let mut lock =
            match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((mut file, _)) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    return Err(ManagerError::Locked {
                        home: home.display().to_string(),
                        lock: path.display().to_string(),
                        pid: holder.trim().to_string(),
                    });
                }
            };
        lock.set_len(0).map_err(io)?;
        lock.rewind().map_err(io)?;
        writeln!(lock, "{}", std::process::id()).map_err(io)?;
        Ok(LocalLeadership {
            path,
            location: location.to_string(),
            _lock: lock,
        })
    }
}

#[async_trait]
impl Leadership for LocalLeadership {
    async fn campaign(&self) -> Result<Term, ManagerError> {
        // Holding the lock is leading; the term ends with the process.
        Ok(Term {
            fence: Arc::new(Unfenced),
            lost: CancellationToken::new(),
        })
    }

    async fn leader(&self) -> Result<Option<String>, ManagerError> {
        Ok(Some(self.location.clone()))
    }

    fn info(&self) -> Value {
        json!({"Backend": "embedded", "Lock": self.path.display().to_string(), "Members": [self.location]})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_manager_on_the_same_home_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let first = LocalLeadership::acquire(home.path(), "/a").unwrap();
        let err = LocalLeadership::acquire(home.path(), "/b")
            .unwrap_err()
            .to_string();
        assert!(err.contains("another manager is already running"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        LocalLeadership::acquire(home.path(), "/b").unwrap();
    }
}
