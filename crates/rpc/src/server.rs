//! Serving plugins on a Unix socket.
//!
//! [`PluginServer::start`] binds `<dir>/<name>`, writes `<name>.pid`, and answers JSON-RPC `POST`s
//! on any path, `GET /events?topic=...` (server-sent events) and `GET /info/api.json`. Both files
//! are removed when the server stops or is dropped. A socket left behind by a crashed plugin (one
//! that nobody answers on) is replaced; a live one is an error.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use infrakit_spi::event::Publisher;
use infrakit_spi::manager::Manager;
use infrakit_spi::{Flavor, Group, Instance, InterfaceSpec};

use crate::{dir, dispatch, events};

/// Largest request body accepted (larger ones get HTTP 413).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The trait objects one server exposes, keyed by subtype (`""` is the default plugin).
#[derive(Default, Clone)]
pub struct Handlers {
    pub(crate) instances: BTreeMap<String, Arc<dyn Instance>>,
    pub(crate) flavors: BTreeMap<String, Arc<dyn Flavor>>,
    pub(crate) group: Option<Arc<dyn Group>>,
    pub(crate) publisher: Option<Arc<dyn Publisher>>,
    pub(crate) manager: Option<Arc<dyn Manager>>,
}

impl Handlers {
    /// No handlers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves an Instance plugin of subtype `kind` (`""` for the default).
    pub fn instance(mut self, kind: &str, plugin: Arc<dyn Instance>) -> Self {
        self.instances.insert(kind.to_string(), plugin);
        self
    }

    /// Serves a Flavor plugin of subtype `kind` (`""` for the default).
    pub fn flavor(mut self, kind: &str, plugin: Arc<dyn Flavor>) -> Self {
        self.flavors.insert(kind.to_string(), plugin);
        self
    }

    /// Serves the Group API.
    pub fn group(mut self, plugin: Arc<dyn Group>) -> Self {
        self.group = Some(plugin);
        self
    }

    /// Serves the Manager API.
    pub fn manager(mut self, manager: Arc<dyn Manager>) -> Self {
        self.manager = Some(manager);
        self
    }

    /// Publishes events on `/events`.
    pub fn publisher(mut self, publisher: Arc<dyn Publisher>) -> Self {
        self.publisher = Some(publisher);
        self
    }

    /// Every interface version served, with the subtypes served under it.
    pub(crate) fn interfaces(&self) -> Vec<(InterfaceSpec, Vec<String>)> {
        let mut out = Vec::new();
        let mut add = |ifaces: &[InterfaceSpec], types: Vec<String>| {
            for i in ifaces {
                out.push((*i, types.clone()));
            }
        };
        if !self.instances.is_empty() {
            add(
                infrakit_spi::instance::INTERFACES,
                self.instances.keys().cloned().collect(),
            );
        }
        if !self.flavors.is_empty() {
            add(
                infrakit_spi::flavor::INTERFACES,
                self.flavors.keys().cloned().collect(),
            );
        }
        if self.group.is_some() {
            add(infrakit_spi::group::INTERFACES, vec![String::new()]);
        }
        if self.manager.is_some() {
            add(infrakit_spi::manager::INTERFACES, vec![String::new()]);
        }
        if self.publisher.is_some() {
            add(
                &[InterfaceSpec {
                    name: "Event",
                    version: "0.1.0",
                }],
                vec![String::new()],
            );
        }
        out
    }
}

/// A running plugin server.
pub struct PluginServer {
    name: String,
    socket: PathBuf,
    pid_file: PathBuf,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl PluginServer {
    /// Binds `<dir>/<name>` (creating `dir` with mode 0700), writes `<name>.pid` and starts serving.
    pub async fn start(
        plugin_dir: &Path,
        name: &str,
        handlers: Handlers,
    ) -> io::Result<PluginServer> {
        if name.is_empty() || name.contains('/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid plugin name '{name}'"),
            ));
        }
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
        std::fs::write(&pid_file, format!("{}\n", std::process::id()))?;
        let (stop, stop_rx) = watch::channel(false);
        let info = Arc::new(ServerInfo {
            name: name.to_string(),
            handlers,
        });
        let task = tokio::spawn(accept_loop(listener, info, stop_rx));
        tracing::debug!(plugin = name, socket = %socket.display(), "plugin server started");
        Ok(PluginServer {
            name: name.to_string(),
            socket,
            pid_file,
            stop,
            task: Some(task),
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

    /// Stops accepting, lets requests in flight finish (briefly), removes the socket and pid file.
    pub async fn stop(mut self) {
        self.remove_files();
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
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
        if let Some(task) = self.task.take() {
            self.remove_files();
            let _ = self.stop.send(true);
            task.abort();
        }
    }
}

struct ServerInfo {
    name: String,
    handlers: Handlers,
}

async fn accept_loop(
    listener: UnixListener,
    info: Arc<ServerInfo>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                // The caller's pid (SO_PEERCRED), for the audit log of mutating calls.
                let caller = stream.peer_cred().ok().and_then(|c| c.pid());
                let info = info.clone();
                let service = hyper::service::service_fn(move |req| {
                    let info = info.clone();
                    async move { Ok::<_, Infallible>(route(&info, req, caller).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
}

type Body = BoxBody<Bytes, io::Error>;

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(
            Full::new(body.into())
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("static response parts are valid")
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    full(status, "text/plain; charset=utf-8", format!("{msg}\n"))
}

async fn route(info: &ServerInfo, req: Request<Incoming>, caller: Option<i32>) -> Response<Body> {
    match *req.method() {
        Method::POST => rpc(info, req, caller).await,
        Method::GET if req.uri().path() == "/events" => {
            let Some(publisher) = &info.handlers.publisher else {
                return text(StatusCode::NOT_FOUND, "this plugin publishes no events");
            };
            let topic = events::topic_from_query(req.uri().query());
            events::sse_response(publisher.subscribe(), topic)
        }
        Method::GET if req.uri().path() == "/info/api.json" => {
            let implements: Vec<_> = info
                .handlers
                .interfaces()
                .iter()
                .map(|(i, types)| serde_json::json!({"Name": i.name, "Version": i.version, "Types": types}))
                .collect();
            let body = serde_json::json!({"Name": info.name, "Implements": implements});
            full(StatusCode::OK, "application/json", body.to_string())
        }
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed"),
    }
}

async fn rpc(info: &ServerInfo, req: Request<Incoming>, caller: Option<i32>) -> Response<Body> {
    if let Some(ct) = req.headers().get(hyper::header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
        if !ct.starts_with("application/json") {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "rpc: unrecognized Content-Type: use application/json",
            );
        }
    }
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body rejected: {e} (limit {MAX_BODY_BYTES} bytes)"),
            )
        }
    };
    match dispatch::handle(&info.handlers, &body, &info.name, caller).await {
        Some(out) => full(StatusCode::OK, "application/json; charset=utf-8", out),
        None => full(
            StatusCode::OK,
            "application/json; charset=utf-8",
            Bytes::new(),
        ),
    }
}
