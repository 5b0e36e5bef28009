//! A small, stateful Azure Resource Manager contract server for tests.
//!
//! No Azure emulator exists, so clients of ARM (such as an Azure VM instance plugin) are tested
//! against this server. It serves, over HTTPS with a certificate made for each server:
//!
//! * the Microsoft identity platform token endpoint for the client-credentials grant
//!   (`POST /{tenant}/oauth2/v2.0/token`), as `azure_identity`'s `ClientSecretCredential` uses it;
//! * `Microsoft.Network/publicIPAddresses` and `networkInterfaces` (api-version [`NETWORK_API`]),
//!   `Microsoft.Compute/disks` ([`DISK_API`]) and `Microsoft.Compute/virtualMachines`
//!   ([`COMPUTE_API`]): PUT, PATCH, GET, DELETE and paged lists (`nextLink`);
//! * long-running operations with `Azure-AsyncOperation`, `Location` and `Retry-After`, and their
//!   status URLs;
//! * throttling (429 with `Retry-After`) on demand.
//!
//! It refuses what ARM refuses: a missing or unknown bearer token, a missing or other
//! api-version, an unknown subscription or resource group, members a body must not have (with
//! their path, as Compute names them), missing required members, invalid names, references to
//! resources that do not exist, and operations on resources in use. Every error body is
//! `{"error":{"code","message","target"?,"details"?}}`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use infrakit_arm_contract::{ArmOptions, ArmServer};
//! let server = ArmServer::start(ArmOptions::default()).await?;
//! let base = server.endpoint(); // ARM base URL, e.g. https://127.0.0.1:40123
//! let trust = server.ca_pem(); // the CA clients must trust
//! # let _ = (base, trust);
//! server.stop();
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

mod arm;
mod disks;
mod model;
mod network;
mod options;
mod reply;
mod request;
mod state;
mod tls;
mod token;
mod util;
mod validate;
mod vms;

pub use options::{
    ArmOptions, Image, Logged, ResourceGroup, Subnet, COMPUTE_API, DISK_API, NETWORK_API,
};
use reply::Reply;
use request::Req;
use state::State;

/// The largest request body accepted.
const MAX_BODY: usize = 4 * 1024 * 1024;

struct Shared {
    options: ArmOptions,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running contract server. Dropping it (or [`ArmServer::stop`]) stops serving.
pub struct ArmServer {
    shared: Arc<Shared>,
    endpoint: String,
    ca_pem: String,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for ArmServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmServer")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl ArmServer {
    /// Starts a server on `127.0.0.1` (a free port), serving HTTPS with a certificate for
    /// `127.0.0.1` and `localhost` signed by a CA made for this server ([`ArmServer::ca_pem`]).
    /// Must be called within a tokio runtime.
    pub async fn start(options: ArmOptions) -> std::io::Result<ArmServer> {
        let (tls, ca_pem) = tls::server_config()?;
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let port = listener.local_addr()?.port();
        let endpoint = format!("https://127.0.0.1:{port}");
        let shared = Arc::new(Shared {
            options: options.clone(),
            state: Mutex::new(State::new(options, endpoint.clone())),
        });
        let accept = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(tls),
            shared.clone(),
        ));
        Ok(ArmServer {
            shared,
            endpoint,
            ca_pem,
            accept,
        })
    }

    /// The ARM base URL, `https://127.0.0.1:PORT` (no trailing slash).
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// The authority host of the token endpoint (the same server).
    pub fn authority_host(&self) -> String {
        self.endpoint.clone()
    }

    /// The PEM certificate (the CA) clients must trust.
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// The options the server was started with.
    pub fn options(&self) -> &ArmOptions {
        &self.shared.options
    }

    /// The next `requests` ARM requests (not token requests) are answered 429 `TooManyRequests`
    /// with `Retry-After: retry_after_secs`.
    pub fn throttle(&self, requests: u32, retry_after_secs: u32) {
        self.shared.state().throttle = (requests > 0).then_some((requests, retry_after_secs));
    }

    /// The next VM creation's long-running operation ends `Failed` with this error, and the VM
    /// stays with `provisioningState` `Failed`.
    pub fn fail_next_vm(&self, code: &str, message: &str) {
        self.shared.state().fail_next_vm = Some((code.to_string(), message.to_string()));
    }

    /// Every request answered, in order.
    pub fn requests(&self) -> Vec<Logged> {
        self.shared.state().log.clone()
    }

    /// The names of the VMs that exist now in `resource_group`, sorted.
    pub fn vm_names(&self, resource_group: &str) -> Vec<String> {
        self.shared.state().vm_names(resource_group)
    }

    /// Stops serving (as dropping the server does).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for ArmServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, tls: TlsAcceptor, shared: Arc<Shared>) {
    // Dropping the set (when the accept loop is aborted) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let tls = tls.clone();
                let shared = shared.clone();
                connections.spawn(async move {
                    let handshake = tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await;
                    let Ok(Ok(stream)) = handshake else { return };
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(serve(&shared, req).await) }
                    });
                    let served = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "ARM contract connection ended");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let mut request = Req {
        method: parts.method.as_str().to_ascii_uppercase(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: Bytes::new(),
    };
    let reply = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => {
            request.body = collected.to_bytes();
            shared.state().handle(&request)
        }
        Err(_) => {
            let mut st = shared.state();
            let reply = Reply::from(reply::ArmError::new(
                413,
                "RequestEntityTooLarge",
                format!("The request body exceeds {MAX_BODY} bytes."),
            ));
            st.log.push(Logged {
                method: request.method.clone(),
                path: request.path.clone(),
                query: request.query.clone(),
                status: 413,
            });
            reply
        }
    };
    to_response(reply)
}

fn to_response(reply: Reply) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = Response::builder().status(status);
    for (name, value) in &reply.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    if reply.header_value("Cache-Control").is_none() {
        builder = builder.header("Cache-Control", "no-cache");
    }
    builder = builder.header("Pragma", "no-cache");
    let body = match &reply.body {
        Some(json) => {
            builder = builder.header("Content-Type", "application/json; charset=utf-8");
            Bytes::from(serde_json::to_vec(json).unwrap_or_default())
        }
        None => Bytes::new(),
    };
    builder.body(Full::new(body)).unwrap_or_else(|_| {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}
