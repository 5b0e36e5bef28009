//! Serving and calling plugins over TCP, for remote CLIs and plugins on other hosts.
//!
//! A Unix socket is protected by file permissions; a TCP port is reachable by anyone who can route
//! to it, so a TCP listener must authenticate its clients:
//!
//! - **mutual TLS**: [`TlsConfig::client_ca`] set; every client presents a certificate that chains
//!   to that CA and is valid now, or the TLS handshake fails;
//! - **bearer token**: [`TcpListenerConfig::token`] set; every request carries
//!   `Authorization: Bearer <token>` (compared in constant time) or gets HTTP 401. With TLS but
//!   no client CA a token is required.
//!
//! Both may be combined. Without TLS everything, token included, crosses the network in the clear,
//! so a listener without [`TcpListenerConfig::tls`] is refused unless
//! [`TcpListenerConfig::insecure_plaintext`] says that this is what is wanted.
//! [`TcpClientConfig`] is the client side (see [`crate::Client::tcp`]).

use std::path::PathBuf;

use hyper::header::HeaderValue;
use subtle::ConstantTimeEq;

use infrakit_spi::secret::Secret;

/// TLS material of a TCP listener, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The server's certificate chain (leaf first).
    pub cert: PathBuf,
    /// The certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates that client certificates must chain to. When set, a client without a
    /// valid certificate (missing, expired, or from another CA) cannot connect. When unset,
    /// clients are not asked for a certificate and [`TcpListenerConfig::token`] is required.
    pub client_ca: Option<PathBuf>,
}

/// An optional TCP listener of a plugin server, next to its Unix socket, on the same handlers.
///
/// ```
/// use infrakit_rpc::tcp::{TcpListenerConfig, TlsConfig};
/// // Mutual TLS: clients need a certificate signed by ca.pem.
/// let mtls = TcpListenerConfig::tls("0.0.0.0:24864", TlsConfig {
///     cert: "server.pem".into(),
///     key: "server-key.pem".into(),
///     client_ca: Some("ca.pem".into()),
/// });
/// assert!(mtls.validate().is_ok());
/// // TLS plus a bearer token.
/// let token = TcpListenerConfig::tls("0.0.0.0:24864", TlsConfig {
///     cert: "server.pem".into(),
///     key: "server-key.pem".into(),
///     client_ca: None,
/// })
/// .with_token("s3cr3t".into());
/// assert!(token.validate().is_ok());
/// // No TLS: refused unless asked for by name.
/// assert!(TcpListenerConfig::plaintext("127.0.0.1:24864").validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpListenerConfig {
    /// Address to bind, `host:port` (port 0 picks a free one; see
    /// [`crate::PluginServer::tcp_addr`]).
    pub addr: String,
    /// TLS certificate, key and optional client CA. `None` means plaintext, which needs
    /// `insecure_plaintext`.
    pub tls: Option<TlsConfig>,
    /// A bearer token every request must carry (`Authorization: Bearer <token>`).
    pub token: Option<Secret>,
    /// Serve without TLS. Requests, responses and the token cross the network unencrypted: only
    /// for tests, or behind something that already encrypts (a VPN, an SSH tunnel).
    pub insecure_plaintext: bool,
}

impl TcpListenerConfig {
    /// A TLS listener on `addr`.
    pub fn tls(addr: impl Into<String>, tls: TlsConfig) -> Self {
        TcpListenerConfig {
            addr: addr.into(),
            tls: Some(tls),
            token: None,
            insecure_plaintext: false,
        }
    }

    /// A listener on `addr` without TLS (it still needs `insecure_plaintext` set to start).
    pub fn plaintext(addr: impl Into<String>) -> Self {
        TcpListenerConfig {
            addr: addr.into(),
            tls: None,
            token: None,
            insecure_plaintext: false,
        }
    }

    /// The same listener, requiring `token` on every request.
    pub fn with_token(mut self, token: Secret) -> Self {
        self.token = Some(token);
        self
    }

    /// The same listener with `insecure_plaintext` set to `yes`.
    pub fn insecure_plaintext(mut self, yes: bool) -> Self {
        self.insecure_plaintext = yes;
        self
    }

    /// Checks the configuration is consistent and authenticates clients (see the module docs).
    pub fn validate(&self) -> Result<(), String> {
        if self.addr.trim().is_empty() {
            return Err("tcp listener: addr is empty (use host:port)".into());
        }
        if matches!(&self.token, Some(t) if t.is_empty()) {
            return Err("tcp listener: the token is empty".into());
        }
        match &self.tls {
            Some(_) if self.insecure_plaintext => Err(
                "tcp listener: insecure_plaintext is set together with tls; choose one".into(),
            ),
            Some(tls) if tls.client_ca.is_none() && self.token.is_none() => Err(
                "tcp listener: TLS without client_ca authenticates nobody; set client_ca (client certificates) or a token"
                    .into(),
            ),
            Some(_) => Ok(()),
            None if !self.insecure_plaintext => Err(format!(
                "tcp listener on {}: refusing to serve without TLS; configure tls (cert, key, client_ca) or set insecure_plaintext",
                self.addr
            )),
            None => Ok(()),
        }
    }

    /// How clients are authenticated, for the startup log line.
    pub(crate) fn describe(&self) -> &'static str {
        match (&self.tls, &self.token) {
            (Some(t), Some(_)) if t.client_ca.is_some() => "TLS, client certificates and token",
            (Some(t), None) if t.client_ca.is_some() => "TLS with client certificates",
            (Some(_), _) => "TLS and token",
            (None, Some(_)) => "PLAINTEXT with token",
            (None, None) => "PLAINTEXT, NO AUTHENTICATION",
        }
    }
}

/// TLS settings of a client: the CA that signed the server's certificate, and the client's own
/// certificate when the server asks for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsConfig {
    /// CA certificates (PEM) the server's certificate must chain to.
    pub ca: PathBuf,
    /// The client's certificate chain (PEM), for servers that require client certificates.
    pub cert: Option<PathBuf>,
    /// The key of `cert` (PEM).
    pub key: Option<PathBuf>,
    /// The name to check the server's certificate against, when it is not the host of `addr`.
    pub server_name: Option<String>,
}

/// How a [`crate::Client`] reaches a plugin over TCP.
///
/// ```
/// use infrakit_rpc::tcp::{ClientTlsConfig, TcpClientConfig};
/// let remote = TcpClientConfig::tls("manager.example.com:24864", ClientTlsConfig {
///     ca: "ca.pem".into(),
///     cert: Some("client.pem".into()),
///     key: Some("client-key.pem".into()),
///     server_name: None,
/// });
/// assert!(remote.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpClientConfig {
    /// `host:port` of the listener.
    pub addr: String,
    /// TLS settings; `None` means plaintext, which needs `insecure_plaintext`.
    pub tls: Option<ClientTlsConfig>,
    /// A bearer token sent with every request.
    pub token: Option<Secret>,
    /// Talk to a plaintext listener (see [`TcpListenerConfig::insecure_plaintext`]).
    pub insecure_plaintext: bool,
}

impl TcpClientConfig {
    /// A TLS connection to `addr`.
    pub fn tls(addr: impl Into<String>, tls: ClientTlsConfig) -> Self {
        TcpClientConfig {
            addr: addr.into(),
            tls: Some(tls),
            token: None,
            insecure_plaintext: false,
        }
    }

    /// A plaintext connection to `addr` (needs `insecure_plaintext` set to be used).
    pub fn plaintext(addr: impl Into<String>) -> Self {
        TcpClientConfig {
            addr: addr.into(),
            tls: None,
            token: None,
            insecure_plaintext: false,
        }
    }

    /// The same connection, sending `token` with every request.
    pub fn with_token(mut self, token: Secret) -> Self {
        self.token = Some(token);
        self
    }

    /// The same connection with `insecure_plaintext` set to `yes`.
    pub fn insecure_plaintext(mut self, yes: bool) -> Self {
        self.insecure_plaintext = yes;
        self
    }

    /// Checks the configuration is consistent.
    pub fn validate(&self) -> Result<(), String> {
        if self.addr.trim().is_empty() || self.addr.contains('/') {
            return Err(format!("tcp client: addr '{}' is not host:port", self.addr));
        }
        match &self.tls {
            Some(_) if self.insecure_plaintext => {
                Err("tcp client: insecure_plaintext is set together with tls; choose one".into())
            }
            Some(tls) if tls.cert.is_some() != tls.key.is_some() => {
                Err("tcp client: a client certificate needs its key, and a key its certificate".into())
            }
            Some(_) => Ok(()),
            None if !self.insecure_plaintext => Err(format!(
                "tcp client for {}: refusing to connect without TLS; configure tls or set insecure_plaintext",
                self.addr
            )),
            None => Ok(()),
        }
    }

    /// The base URL requests go to.
    pub(crate) fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/", self.addr)
    }
}

/// Whether an `Authorization` header carries `token` as a bearer token. The comparison takes the
/// same time wherever the first difference is.
pub(crate) fn bearer_matches(header: Option<&HeaderValue>, token: &Secret) -> bool {
    let Some(value) = header.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let Some((scheme, presented)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    bool::from(presented.trim().as_bytes().ct_eq(token.expose().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(client_ca: bool) -> TlsConfig {
        TlsConfig {
            cert: "c.pem".into(),
            key: "k.pem".into(),
            client_ca: client_ca.then(|| "ca.pem".into()),
        }
    }

    #[test]
    fn listeners_must_authenticate_and_plaintext_must_be_asked_for() {
        assert!(TcpListenerConfig::tls("a:1", tls(true)).validate().is_ok());
        let err = TcpListenerConfig::tls("a:1", tls(false))
            .validate()
            .unwrap_err();
        assert!(err.contains("client_ca"), "{err}");
        assert!(TcpListenerConfig::tls("a:1", tls(false))
            .with_token("t".into())
            .validate()
            .is_ok());
        let err = TcpListenerConfig::plaintext("a:1").validate().unwrap_err();
        assert!(err.contains("insecure_plaintext"), "{err}");
        assert!(TcpListenerConfig::plaintext("a:1")
            .insecure_plaintext(true)
            .with_token("t".into())
            .validate()
            .is_ok());
        let err = TcpListenerConfig::tls("a:1", tls(true))
            .insecure_plaintext(true)
            .validate()
            .unwrap_err();
        assert!(err.contains("choose one"), "{err}");
        let err = TcpListenerConfig::tls("a:1", tls(true))
            .with_token("".into())
            .validate()
            .unwrap_err();
        assert!(err.contains("empty"), "{err}");
    }

    #[test]
    fn clients_need_tls_or_an_explicit_plaintext() {
        let ctls = ClientTlsConfig {
            ca: "ca.pem".into(),
            cert: Some("c.pem".into()),
            key: None,
            server_name: None,
        };
        let err = TcpClientConfig::tls("h:1", ctls.clone())
            .validate()
            .unwrap_err();
        assert!(err.contains("key"), "{err}");
        assert!(TcpClientConfig::plaintext("h:1").validate().is_err());
        let c = TcpClientConfig::plaintext("h:1").insecure_plaintext(true);
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.url(), "http://h:1/");
        assert!(TcpClientConfig::plaintext("unix:/x")
            .insecure_plaintext(true)
            .validate()
            .is_err());
    }

    #[test]
    fn bearer_tokens_are_matched_exactly() {
        let token = Secret::new("abc123");
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert!(bearer_matches(Some(&h("Bearer abc123")), &token));
        assert!(bearer_matches(Some(&h("bearer abc123")), &token));
        assert!(!bearer_matches(Some(&h("Bearer abc12")), &token));
        assert!(!bearer_matches(Some(&h("Bearer abc1234")), &token));
        assert!(!bearer_matches(Some(&h("Basic abc123")), &token));
        assert!(!bearer_matches(Some(&h("abc123")), &token));
        assert!(!bearer_matches(None, &token));
    }

    #[test]
    fn configs_never_print_the_token() {
        let c = TcpListenerConfig::tls("a:1", tls(false)).with_token("hunter2".into());
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = TcpClientConfig::plaintext("a:1").with_token("hunter2".into());
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
