//! InfraKit's plugin protocol: JSON-RPC 2.0 over HTTP/1.1 on Unix sockets.
//!
//! - [`dir`] finds the plugin directory and manages sockets and `.pid` files.
//! - [`server`] exposes any [`infrakit_spi`] trait object on a socket, answering every
//!   generation's handshake and serving server-sent events.
//! - [`client`] implements the same traits by calling a plugin over its socket, so callers cannot
//!   tell an in-process plugin from a remote one.
//! - [`registry`] resolves plugin names (`instance-file`, `flavor-swarm/worker`) to trait objects.

pub mod client;
pub mod dir;
mod dispatch;
pub mod events;
pub mod jsonrpc;
pub mod registry;
pub mod server;

pub use client::{Client, FlavorClient, GroupClient, InstanceClient, ManagerClient};
pub use registry::Plugins;
pub use server::{Handlers, PluginServer};
