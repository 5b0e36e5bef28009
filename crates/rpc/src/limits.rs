//! Limits on what one client may make a server hold: body and header sizes, time to send a
//! request, and open connections.
//!
//! They apply to every listener of a [`crate::PluginServer`] (Unix socket and TCP alike). A body
//! over the limit is refused with HTTP 413 as soon as its `Content-Length` is read (a chunked body
//! is cut off once it passes the limit), so a 100 MB upload is neither read nor buffered.

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
    /// How long a connection may take to send a complete request head, counted from the moment
    /// the server starts waiting for one: a new connection, or an idle keep-alive connection
    /// between requests. A connection past it is closed (this is also the slow-loris guard).
    /// Streams being answered (server-sent events) are not idle.
    pub idle_timeout: Duration,
    /// How long the body of one request may take to arrive once its head has; past it the
    /// request gets HTTP 408 and the connection is closed.
    pub body_timeout: Duration,
    /// Most connections open at once on one listener; further clients wait to be accepted.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            max_connections: 1024,
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

    /// Checks the limits can be applied: every size and count positive, timeouts non-zero.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_body_bytes", self.max_body_bytes),
            ("max_headers", self.max_headers),
            ("max_connections", self.max_connections),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("limits.{name} must be positive"));
            }
        }
        if self.max_header_bytes < 1024 {
            return Err("limits.max_header_bytes must be at least 1024".into());
        }
        if self.idle_timeout.is_zero() || self.body_timeout.is_zero() {
            return Err("limits.idle_timeout and limits.body_timeout must be non-zero".into());
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
}
