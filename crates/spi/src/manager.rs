//! The Manager plugin kind: leadership among several managers (InfraKit's `Manager.IsLeader`,
//! `Manager.LeaderLocation`, plus infrakit's `Manager.Status`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Interface, InterfaceSpec, Result};

/// The versions of the Manager API that clients of each InfraKit generation require.
pub const INTERFACES: &[InterfaceSpec] = &[
    InterfaceSpec {
        name: Interface::Manager.as_str(),
        version: "0.1.1",
    },
    InterfaceSpec {
        name: Interface::Manager.as_str(),
        version: "0.1.0",
    },
];

/// What `infrakit manager status` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ManagerStatus {
    /// This manager's name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Whether this manager leads.
    #[serde(rename = "Leader")]
    pub leader: bool,
    /// Where the leader can be reached (a socket path), if known.
    #[serde(rename = "LeaderLocation", default)]
    pub leader_location: Option<String>,
    /// Where this manager can be reached.
    #[serde(rename = "Location")]
    pub location: String,
    /// The store backend and its details (`embedded` + path, or `etcd` + endpoints).
    #[serde(rename = "Store")]
    pub store: Value,
    /// The leadership backend's details (members, lease TTL, lease validity).
    #[serde(rename = "Leadership")]
    pub leadership: Value,
}

/// A manager.
#[async_trait]
pub trait Manager: Send + Sync {
    /// Whether this manager leads now.
    async fn is_leader(&self) -> Result<bool>;
    /// Where the leader can be reached, if one is known.
    async fn leader_location(&self) -> Result<Option<String>>;
    /// Everything `manager status` shows.
    async fn status(&self) -> Result<ManagerStatus>;

    /// The operator's variables (the `vars` metadata tree of InfraKit's last version): a JSON
    /// object, empty until something is committed.
    async fn vars(&self) -> Result<Value> {
        Ok(Value::Object(Default::default()))
    }

    /// Replaces the variables with `proposed` if `cas` is the hash of the variables now and
    /// `proposed` (see [`crate::metadata::check_cas`]), durably.
    async fn commit_vars(&self, cas: &str, proposed: Value) -> Result<()> {
        let _ = (cas, proposed);
        Err(crate::Error::plugin("readonly"))
    }
}
