//! Limits on what one client may make a server hold: body and header sizes, time to send a
//! request, and open connections.
//!
//! They apply to every listener of a [`crate::PluginServer`] (Unix socket and TCP alike; the
//! per-peer and unauthenticated budgets to TCP only). A body over the limit is refused with
//! HTTP 413 as soon as its `Content-Length` is read (a chunked body is cut off once it passes the
//! limit), so a 100 MB upload is neither read nor buffered. A full listener closes the
//! connection that has waited longest to make room for a newcomer (see `admission`).
//!
//! Every limit can be set from the environment of the plugin process ([`Limits::from_env`]):
//!
//! | variable | limit | default |
//! |---|---|---|
//! | `INFRAKIT_SERVER_MAX_CONNECTIONS` | [`Limits::max_connections`] | 1024 |
//! | `INFRAKIT_SERVER_MAX_CONNECTIONS_PER_PEER` | [`Limits::max_connections_per_peer`] | 64 |
//! | `INFRAKIT_SERVER_MAX_UNAUTHENTICATED` | [`Limits::max_unauthenticated`] | 128 |
//! | `INFRAKIT_SERVER_HEAD_TIMEOUT` | [`Limits::head_timeout`] | 10s |
//! | `INFRAKIT_SERVER_IDLE_TIMEOUT` | [`Limits::idle_timeout`] | 60s |
//! | `INFRAKIT_SERVER_BODY_TIMEOUT` | [`Limits::body_timeout`] | 30s |
//! | `INFRAKIT_SERVER_HANDSHAKE_TIMEOUT` | [`Limits::handshake_timeout`] | 5s |
//! | `INFRAKIT_SERVER_MAX_BODY_BYTES` | [`Limits::max_body_bytes`] | 16777216 |

use std::time::Duration;

/// Default largest request body: 16 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Per-connection limits of a plugin server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body accepted; larger ones get HTTP 413 without being read.
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers); larger ones get HTTP 431.
    pub max_header_bytes: usize,
    /// Most headers in one request; more get HTTP 431.
    pub max_headers: usize,
    /// How long a new connection may take to send its first complete request head; past it the
    /// connection is closed.
    pub head_timeout: Duration,
    /// How long a keep-alive connection may wait between requests, including the time to send
    /// the next complete request head (this is also the slow-loris guard). Streams being
    /// answered (server-sent events) are not idle.
    pub idle_timeout: Duration,
    /// How long the body of one request may take to arrive once its head has; past it the
    /// request gets HTTP 408 and the connection is closed.
    pub body_timeout: Duration,
    /// How long a TLS handshake may take on the TCP listener.
    pub handshake_timeout: Duration,
    /// Most connections open at once on one listener. A newcomer beyond it takes the place of
    /// the connection that has waited longest (for a request head, a body or a handshake); it
    /// is refused only when every connection is answering a request or streaming.
    pub max_connections: usize,
    /// TCP: most connections of one peer address; beyond it the peer's own longest-waiting
    /// connection makes room.
    pub max_connections_per_peer: usize,
    /// TCP: most connections not authenticated yet (TLS handshake, or the first request with the
    /// token, still to come). They never take an authenticated connection's place.
    pub max_unauthenticated: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(5),
            max_connections: 1024,
            max_connections_per_peer: 64,
            max_unauthenticated: 128,
        }
    }
}

impl Limits {
    /// The same limits with another body size limit.
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// The same limits with another idle timeout.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The same limits with another body timeout.
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// The defaults, with what the `INFRAKIT_SERVER_*` environment variables set (see the
    /// module docs); a variable that does not parse is an error naming it.
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut limits = Limits::default();
        let count = |name: &str, into: &mut usize| -> Result<(), String> {
            if let Some(v) = var(name) {
                *into = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("{name}={v:?}: expected a whole number"))?;
            }
            Ok(())
        };
        count(
            "INFRAKIT_SERVER_MAX_CONNECTIONS",
            &mut limits.max_connections,
        )?;
        count(
            "INFRAKIT_SERVER_MAX_CONNECTIONS_PER_PEER",
            &mut limits.max_connections_per_peer,
        )?;
        count(
            "INFRAKIT_SERVER_MAX_UNAUTHENTICATED",
            &mut limits.max_unauthenticated,
        )?;
        count("INFRAKIT_SERVER_MAX_BODY_BYTES", &mut limits.max_body_bytes)?;
        let time = |name: &str, into: &mut Duration| -> Result<(), String> {
            if let Some(v) = var(name) {
                *into = humantime::parse_duration(v.trim())
                    .map_err(|e| format!("{name}={v:?}: {e} (e.g. 10s, 500ms)"))?;
            }
            Ok(())
        };
        time("INFRAKIT_SERVER_HEAD_TIMEOUT", &mut limits.head_timeout)?;
        time("INFRAKIT_SERVER_IDLE_TIMEOUT", &mut limits.idle_timeout)?;
        time("INFRAKIT_SERVER_BODY_TIMEOUT", &mut limits.body_timeout)?;
        time(
            "INFRAKIT_SERVER_HANDSHAKE_TIMEOUT",
            &mut limits.handshake_timeout,
        )?;
        limits.validate()?;
        Ok(limits)
    }

    /// Checks the limits can be applied: every size and count positive, timeouts non-zero.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_body_bytes", self.max_body_bytes),
            ("max_headers", self.max_headers),
            ("max_connections", self.max_connections),
            ("max_connections_per_peer", self.max_connections_per_peer),
            ("max_unauthenticated", self.max_unauthenticated),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("limits.{name} must be positive"));
            }
        }
        if self.max_header_bytes < 1024 {
            return Err("limits.max_header_bytes must be at least 1024".into());
        }
        let timeouts = [
            ("head_timeout", self.head_timeout),
            ("idle_timeout", self.idle_timeout),
            ("body_timeout", self.body_timeout),
            ("handshake_timeout", self.handshake_timeout),
        ];
        for (name, t) in timeouts {
            if t.is_zero() {
                return Err(format!("limits.{name} must be non-zero"));
            }
        }
        Ok(())
    }

    /// hyper's read buffer must hold the largest head; it cannot be under 8 KiB.
    pub(crate) fn read_buffer_bytes(&self) -> usize {
        self.max_header_bytes.max(8192) + 8192
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zeroes_are_not() {
        assert_eq!(Limits::default().validate(), Ok(()));
        assert_eq!(Limits::default().max_body_bytes, 16 << 20);
        let err = Limits::default()
            .with_max_body_bytes(0)
            .validate()
            .unwrap_err();
        assert!(err.contains("max_body_bytes"), "{err}");
        let err = Limits::default()
            .with_idle_timeout(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(err.contains("idle_timeout"), "{err}");
    }

    #[test]
    fn the_environment_sets_limits_and_bad_values_name_their_variable() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let l = Limits::from_vars(vars(&[
            ("INFRAKIT_SERVER_MAX_CONNECTIONS", "5000"),
            ("INFRAKIT_SERVER_HEAD_TIMEOUT", "250ms"),
        ]))
        .unwrap();
        assert_eq!(l.max_connections, 5000);
        assert_eq!(l.head_timeout, Duration::from_millis(250));
        assert_eq!(l.idle_timeout, Limits::default().idle_timeout);
        let err = Limits::from_vars(vars(&[("INFRAKIT_SERVER_MAX_UNAUTHENTICATED", "lots")]))
            .unwrap_err();
        assert!(err.contains("INFRAKIT_SERVER_MAX_UNAUTHENTICATED"), "{err}");
        let err = Limits::from_vars(vars(&[("INFRAKIT_SERVER_BODY_TIMEOUT", "soon")])).unwrap_err();
        assert!(err.contains("INFRAKIT_SERVER_BODY_TIMEOUT"), "{err}");
        let err = Limits::from_vars(vars(&[("INFRAKIT_SERVER_MAX_CONNECTIONS_PER_PEER", "0")]))
            .unwrap_err();
        assert!(err.contains("max_connections_per_peer"), "{err}");
    }
}
