//! The manager: several may run, exactly one leads and runs the group controller.
//!
//! - [`leadership`]: the [`Leadership`] trait (campaign for a [`Term`], find the leader) and the
//!   embedded implementation, a lock file that lets one manager run per `INFRAKIT_HOME`;
//! - [`manager`]: [`Manager`], which serves the Group API: as leader through its own group
//!   controller (fenced by its term), as follower by forwarding to the leader.
//!
//! The etcd backend (election with a lease, fenced store writes) lives in `infrakit-manager-etcd`
//! so that most binaries never link the etcd client.

pub mod leadership;
pub mod manager;

pub use leadership::{Leadership, LocalLeadership, Term};
pub use manager::{Backend, Manager};

/// What can go wrong in a manager.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// Another manager holds the embedded lock.
    #[error("another manager is already running on {home} (lock {lock} held by pid {pid}); stop it first, or use the etcd store to run several")]
    Locked {
        /// The infrakit home.
        home: String,
        /// The lock file.
        lock: String,
        /// The holder, as written in the lock file.
        pid: String,
    },
    /// The leadership backend failed.
    #[error("leadership: {0}")]
    Backend(String),
    /// The leadership backend failed because of `source` (e.g. etcd's error).
    #[error("leadership: {context}: {source}")]
    BackendCaused {
        /// What was being done.
        context: String,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// I/O on the lock file.
    #[error("lock file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}
