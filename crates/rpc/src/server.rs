//! Serving plugins on a Unix socket, and optionally on TCP.
//!
//! [`PluginServer::start`] binds `<dir>/<name>` (mode 0600, in a directory only we can write),
//! writes `<name>.pid`, and answers JSON-RPC `POST`s on any path, `GET /events?topic=...`
//! (server-sent events) and `GET /info/api.json`. Both files are removed when the server stops or
//! is dropped. A socket left behind by a crashed plugin (one that nobody answers on) is replaced;
//! a live one is an error. [`PluginServer::start_with`] takes [`ServerOptions`]: the
//! [`Limits`] of every connection and an optional authenticated TCP listener
//! ([`TcpListenerConfig`]) serving the same handlers.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use infrakit_spi::secret::Secret;

use crate::admission::Budget;
use crate::conns::{self, Closed, ConnectionMetrics};
use crate::dispatch::Caller;
pub use crate::handlers::Handlers;
use crate::limits::Limits;
use crate::serve::{self, ServerInfo};
use crate::tcp::TcpListenerConfig;
use crate::{dir, tls};

/// Largest request body accepted by default (larger ones get HTTP 413); see [`Limits`].
pub const MAX_BODY_BYTES: usize = crate::limits::DEFAULT_MAX_BODY_BYTES;

/// How a [`PluginServer`] serves, beyond its Unix socket.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Size, time and connection limits of every connection.
    pub limits: Limits,
    /// An optional TCP listener on the same handlers (TLS and/or a bearer token).
    pub tcp: Option<TcpListenerConfig>,
    /// Where connections are counted (a clone of instruments registered elsewhere).
    pub metrics: ConnectionMetrics,
}

impl ServerOptions {
    /// The default limits and no TCP listener.
    pub fn new() -> Self {
        Self::default()
    }

    /// The limits the environment sets ([`Limits::from_env`]) and no TCP listener.
    pub fn from_env() -> io::Result<Self> {
        let limits =
            Limits::from_env().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Self::default().limits(limits))
    }

    /// The same options, counting connections in `metrics`.
    pub fn metrics(mut self, metrics: ConnectionMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The same options with other limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The same options with a TCP listener.
    pub fn tcp(mut self, tcp: TcpListenerConfig) -> Self {
        self.tcp = Some(tcp);
        self
    }
}

/// A running plugin server.
pub struct PluginServer {
    name: String,
    socket: PathBuf,
    pid_file: PathBuf,
    tcp_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Waits for SIGTERM or SIGINT: how a plugin program serving until it is told to stop waits
/// (`infrakit plugin stop` sends SIGTERM).
pub async fn shutdown_signal() -> io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

impl PluginServer {
    /// Binds `<dir>/<name>` (creating `dir` with mode 0700), writes `<name>.pid` and starts
    /// serving with the [`Limits`] the environment sets ([`Limits::from_env`]) and no TCP
    /// listener.
    pub async fn start(
        plugin_dir: &Path,
        name: &str,
        handlers: Handlers,
    ) -> io::Result<PluginServer> {
        Self::start_with(plugin_dir, name, handlers, ServerOptions::from_env()?).await
    }

    /// Like [`PluginServer::start`], with limits and an optional TCP listener. Every option is
    /// checked (and TLS files read) before anything is created, so a bad option leaves no trace.
    pub async fn start_with(
        plugin_dir: &Path,
        name: &str,
        handlers: Handlers,
        options: ServerOptions,
    ) -> io::Result<PluginServer> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid plugin name '{name}'"),
            ));
        }
        let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        options.limits.validate().map_err(invalid)?;
        raise_open_files_limit();
        let tcp = match &options.tcp {
            Some(cfg) => Some(bind_tcp(cfg).await?),
            None => None,
        };

        dir::ensure_private_dir(plugin_dir)?;
        let socket = plugin_dir.join(name);
        let pid_file = dir::pid_path(plugin_dir, name);
        if socket.exists() {
            if UnixStream::connect(&socket).await.is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "plugin '{name}' is already running (socket {})",
                        socket.display()
                    ),
                ));
            }
            tracing::info!(socket = %socket.display(), "removing stale socket");
            std::fs::remove_file(&socket)?;
            let _ = std::fs::remove_file(&pid_file);
        }
        let listener = UnixListener::bind(&socket)?;
        // Only our user may connect (connecting needs write permission on the socket).
        if let Err(e) = std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)) {
            let _ = std::fs::remove_file(&socket);
            return Err(e);
        }
        if let Err(e) = std::fs::write(&pid_file, format!("{}\n", std::process::id())) {
            let _ = std::fs::remove_file(&socket);
            return Err(e);
        }
        let (stop, stop_rx) = watch::channel(false);
        let info = Arc::new(ServerInfo {
            name: name.to_string(),
            handlers,
            limits: options.limits.clone(),
        });
        let limits = &options.limits;
        let unix = conns::Listener::new(
            name,
            "unix",
            Budget {
                max_connections: limits.max_connections,
                max_per_peer: None,
                max_unauthenticated: None,
            },
            options.metrics.clone(),
        );
        let mut tasks = vec![tokio::spawn(unix_accept_loop(
            listener,
            unix,
            info.clone(),
            stop_rx.clone(),
        ))];
        let mut tcp_addr = None;
        if let Some(tcp) = tcp {
            tcp_addr = Some(tcp.addr);
            tracing::info!(plugin = name, addr = %tcp.addr, auth = tcp.describe, "serving on TCP");
            if tcp.describe.starts_with("PLAINTEXT") {
                tracing::warn!(plugin = name, addr = %tcp.addr, "TCP listener without TLS: requests cross the network unencrypted");
            }
            let conns = conns::Listener::new(
                name,
                "tcp",
                Budget {
                    max_connections: limits.max_connections,
                    max_per_peer: Some(limits.max_connections_per_peer),
                    max_unauthenticated: Some(limits.max_unauthenticated),
                },
                options.metrics.clone(),
            );
            tasks.push(tokio::spawn(tcp_accept_loop(tcp, conns, info, stop_rx)));
        }
        tracing::debug!(plugin = name, socket = %socket.display(), "plugin server started");
        Ok(PluginServer {
            name: name.to_string(),
            socket,
            pid_file,
            tcp_addr,
            stop,
            tasks,
        })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The address the TCP listener is bound to (with the real port when 0 was asked for).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// Stops accepting, lets requests in flight finish (briefly), removes the socket and pid file.
    pub async fn stop(mut self) {
        self.remove_files();
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }

    fn remove_files(&self) {
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

impl Drop for PluginServer {
    fn drop(&mut self) {
        if !self.tasks.is_empty() {
            self.remove_files();
            let _ = self.stop.send(true);
            for task in self.tasks.drain(..) {
                task.abort();
            }
        }
    }
}

/// A bound TCP listener with what its connections need.
struct Tcp {
    listener: TcpListener,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    token: Option<Arc<Secret>>,
    describe: &'static str,
}

/// Connections the kernel may queue before they are accepted (capped by `net.core.somaxconn`):
/// deep enough that a burst of connections, a flood reconnecting included, does not overflow
/// the queue, where a dropped SYN would cost a legitimate client a 1 s retransmission.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` (`host:port`; the first address it resolves to) with [`LISTEN_BACKLOG`].
async fn listen_tcp(addr: &str) -> io::Result<TcpListener> {
    let addr = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn bind_tcp(cfg: &TcpListenerConfig) -> io::Result<Tcp> {
    cfg.validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let tls = match &cfg.tls {
        Some(t) => Some(TlsAcceptor::from(tls::server_config(t)?)),
        None => None,
    };
    let listener = listen_tcp(&cfg.addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", cfg.addr)))?;
    let addr = listener.local_addr()?;
    Ok(Tcp {
        listener,
        addr,
        tls,
        token: cfg.token.clone().map(Arc::new),
        describe: cfg.describe(),
    })
}

/// Lifts this process's soft limit on open files to its hard limit (as Go programs do), so
/// [`Limits::max_connections`] is what bounds connections, not a soft limit of 1024 hit in the
/// middle of a flood (where `accept` would fail before a full listener could make room).
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
            if soft < hard {
                if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                    tracing::debug!(error = %e, soft, hard, "cannot raise the open files limit");
                }
            }
        }
    });
}

/// Waits a little after a failed `accept` (out of file descriptors, most likely), instead of
/// spinning on it.
async fn accept_failed(e: io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

async fn unix_accept_loop(
    listener: UnixListener,
    conns: Arc<conns::Listener>,
    info: Arc<ServerInfo>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        accept_failed(e).await;
                        continue;
                    }
                };
                let Some(conn) = conns.admit(None, true) else {
                    continue;
                };
                // The caller's pid (SO_PEERCRED), for the audit log of mutating calls.
                let caller = Caller::Local(stream.peer_cred().ok().and_then(|c| c.pid()));
                serve::spawn_connection(stream, info.clone(), caller, None, graceful.watcher(), conn);
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
}

async fn tcp_accept_loop(
    tcp: Tcp,
    conns: Arc<conns::Listener>,
    info: Arc<ServerInfo>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    // Who is authenticated when: with a token, at its first request carrying it; with client
    // certificates alone, at the end of the TLS handshake; with neither (plaintext asked for
    // by name), at once.
    let authenticated_by_tls = tcp.token.is_none();
    let authenticated_at_accept = tcp.token.is_none() && tcp.tls.is_none();
    loop {
        tokio::select! {
            accepted = tcp.listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        accept_failed(e).await;
                        continue;
                    }
                };
                let Some(conn) = conns.admit(Some(peer.ip()), authenticated_at_accept) else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let caller = Caller::Remote(peer);
                let token = tcp.token.clone();
                let Some(acceptor) = &tcp.tls else {
                    serve::spawn_connection(stream, info.clone(), caller, token, graceful.watcher(), conn);
                    continue;
                };
                // The handshake runs in its own task, bounded by the handshake timeout and
                // evictable like any waiting connection, so a slow client holds up nobody; a
                // client without a valid certificate stops here.
                let handshake = acceptor.accept(stream);
                let info = info.clone();
                let watcher = graceful.watcher();
                let conns = conns.clone();
                tokio::spawn(async move {
                    let timeout = info.limits.handshake_timeout;
                    tokio::select! {
                        done = tokio::time::timeout(timeout, handshake) => match done {
                            Ok(Ok(tls)) => {
                                if authenticated_by_tls {
                                    conn.authenticate();
                                }
                                serve::spawn_connection(tls, info, caller, token, watcher, conn);
                            }
                            Ok(Err(e)) => {
                                conns.refused("tls");
                                tracing::info!(peer = %peer, error = %e, "TLS handshake refused");
                            }
                            Err(_) => {
                                conn.closing(Closed::Slow);
                                tracing::info!(peer = %peer, "TLS handshake timed out");
                            }
                        },
                        () = conn.evicted().cancelled() => {}
                    }
                });
            }
            _ = stop.changed() => break,
        }
    }
    drop(tcp);
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
}
