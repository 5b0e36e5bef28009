//! The error type shared by every plugin trait.

/// What can go wrong when a plugin is asked to do something.
///
/// Remote plugins only carry a message on the wire (JSON-RPC code -32000), so errors coming back
/// over the protocol arrive as [`Error::Plugin`]; the other variants are produced locally and
/// keep enough structure for callers to decide what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The plugin reported a failure; the text is the plugin's own message.
    #[error("{0}")]
    Plugin(String),
    /// Input was rejected; `path` names the offending field (e.g. `Properties.Allocation.Size`).
    #[error("{path}: {message}")]
    Invalid {
        /// Dotted path of the bad field.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The named object (instance, group) does not exist.
    #[error("{kind} '{id}' not found")]
    NotFound {
        /// What kind of object was looked up (`instance`, `group`).
        kind: &'static str,
        /// Its identifier.
        id: String,
    },
    /// The plugin could not be reached.
    #[error("plugin '{name}' is not reachable at {socket}: {reason}")]
    Unavailable {
        /// Plugin name, e.g. `instance-file`.
        name: String,
        /// Socket path that was tried.
        socket: String,
        /// Why the connection failed.
        reason: String,
    },
    /// The plugin did not answer in time.
    #[error("plugin '{name}' did not answer {method} within {timeout_ms} ms")]
    Timeout {
        /// Plugin name.
        name: String,
        /// The JSON-RPC method, e.g. `Flavor.Healthy`.
        method: String,
        /// The timeout that expired.
        timeout_ms: u64,
    },
}

impl Error {
    /// A plugin-side failure with a message.
    pub fn plugin(msg: impl Into<String>) -> Self {
        Error::Plugin(msg.into())
    }

    /// Invalid input at `path`.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A missing instance.
    pub fn instance_not_found(id: impl Into<String>) -> Self {
        Error::NotFound {
            kind: "instance",
            id: id.into(),
        }
    }
}

/// Result alias used across the SPI.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Decodes JSON `value` into `T`, reporting the path of the first bad field under `prefix`.
pub fn decode_at<T: serde::de::DeserializeOwned>(
    prefix: &str,
    value: &serde_json::Value,
) -> Result<T> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (prefix.is_empty(), inner.as_str()) {
            (true, _) => inner.clone(),
            (false, ".") => prefix.to_string(),
            (false, _) => format!("{prefix}.{inner}"),
        };
        Error::invalid(path, e.into_inner().to_string())
    })
}
