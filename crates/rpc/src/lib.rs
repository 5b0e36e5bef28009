//! InfraKit's plugin protocol: JSON-RPC 2.0 over HTTP/1.1 on Unix sockets.
//!
//! - [`dir`] finds the plugin directory and manages sockets and `.pid` files.
//! - [`server`] exposes any [`infrakit_spi`] trait object on a socket, answering every
//!   generation's handshake and serving server-sent events.
//! - [`client`] implements the same traits by calling a plugin over its socket, so callers cannot
//!   tell an in-process plugin from a remote one.
//! - [`registry`] resolves plugin names (`instance-file`, `flavor-swarm/worker`) to trait objects.
//! - [`limits`] bounds what one client can make a server hold (body and header sizes, idle time,
//!   connections); a full listener closes the connection that waited longest to make room.
//! - [`tcp`] configures the optional TCP listener (TLS with client certificates, or a bearer
//!   token) and TCP clients, for remote CLIs and plugins.
//! - [`dispatch`] turns a request body into a typed call (a [`infrakit_spi::Method`] and its
//!   decoded params) and makes it; [`dispatch::handle_bytes`] is the socket-free
//!   entry point the fuzz targets use.
//!
//! See `docs/security.md` for the threat model.

mod admission;
mod call;
pub mod client;
mod conns;
mod controller;
pub mod dir;
pub mod dispatch;
pub mod events;
mod failure;
mod handlers;
pub mod jsonrpc;
mod keyed;
pub mod limits;
pub mod registry;
mod serve;
pub mod server;
pub mod tcp;
mod tls;
mod updatable;

pub use client::{Client, FlavorClient, GroupClient, InstanceClient, ManagerClient};
pub use conns::ConnectionMetrics;
pub use limits::Limits;
pub use registry::Plugins;
pub use server::{shutdown_signal, Handlers, PluginServer, ServerOptions};
pub use tcp::{ClientTlsConfig, TcpClientConfig, TcpListenerConfig, TlsConfig};
