//! The operator's HTTP listener: what a manager (or `infrakit up`) shows on `--http ADDR`.
//!
//! - `GET /metrics`: the controller's Prometheus metrics (OpenMetrics text format).
//! - `GET /`: a live dashboard (plain HTML, CSS and JavaScript built into the binary).
//! - `GET /api/groups`: every group with its status and instances, as JSON.
//! - `GET /api/events`: server-sent events: the recent lifecycle events, then live ones.
//! - `POST /api/groups/{id}/scale?size=N`, `/pause`, `/resume`: only when started with actions
//!   enabled ([`Options::actions`]); otherwise `403 Forbidden`.
//!
//! Everything the listener shows comes through the Group API and the event publisher it is
//! given, so on a manager that follows it shows what the leader reports.

mod api;
mod assets;
mod config;

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use api::{GroupView, InstanceView};
pub use config::{Options, Sources};

/// Errors of the listener.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A running listener.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `addr` (e.g. `127.0.0.1:9090`; port 0 picks a free one) and serves.
    pub async fn start(
        addr: &str,
        sources: Sources,
        options: Options,
    ) -> Result<HttpServer, HttpError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| HttpError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        let shutdown = CancellationToken::new();
        let state = Arc::new(api::State { sources, options });
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "http: accept failed");
                            continue;
                        }
                    },
                    _ = stop.cancelled() => return,
                };
                let state = state.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| api::route(state.clone(), req));
                    let conn =
                        http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        r = conn => if let Err(e) = r {
                            tracing::debug!(%peer, error = %e, "http: connection ended");
                        },
                        _ = stop.cancelled() => {}
                    }
                });
            }
        });
        tracing::info!(addr = %local, "http listener: /metrics and the dashboard");
        Ok(HttpServer {
            addr: local,
            shutdown,
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening and closes open connections.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}
