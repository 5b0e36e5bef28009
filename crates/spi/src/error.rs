//! The error type shared by every plugin trait.

use std::sync::Arc;

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
    /// A failure caused by another error (a store, etcd, an engine's or a cloud's API, I/O),
    /// kept as its [`source`](std::error::Error::source). On the wire it is a plugin failure
    /// with the whole text.
    #[error("{context}: {source}")]
    Caused {
        /// What was being done, e.g. `cannot save group web`.
        context: String,
        /// The error that caused it.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
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

    /// No group `id` is managed here (the original's text: `Group 'id' is not being watched`).
    pub fn group_not_watched(id: &str) -> Self {
        Error::Plugin(format!("Group '{id}' is not being watched"))
    }

    /// A failure while doing `context`, caused by `source`.
    pub fn caused(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Caused {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// The error that caused this one, as its own type (for
    /// [`downcast_ref`](std::error::Error::downcast_ref); `source()` gives the same error behind
    /// the `Arc` that lets `Error` be cloned).
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self {
            Error::Caused { source, .. } => Some(&**source),
            _ => None,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_caused_error_keeps_its_source() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = Error::caused("cannot save group web", io);
        assert_eq!(e.to_string(), "cannot save group web: denied");
        assert_eq!(
            e.source().map(ToString::to_string).as_deref(),
            Some("denied")
        );
        assert_eq!(
            e.cause()
                .and_then(|c| c.downcast_ref::<std::io::Error>())
                .map(|e| e.kind()),
            Some(std::io::ErrorKind::PermissionDenied)
        );
        assert!(e.clone().cause().is_some(), "a clone keeps it");
    }
}
