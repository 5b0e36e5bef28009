//! Test fixtures shared by infrakit's test suites. Not published; used as a dev-dependency.
//!
//! - [`wait`]: polling with a deadline.
//! - [`names`]: names no other test uses.
//! - [`instance`]: tags from pairs, instance specs.
//! - [`group`]: group specs for a plugin pair, waits until a group has converged.
//! - [`ports`]: loopback ports reserved race-free across tests and test processes.
//! - [`process`]: children ended with everything they started, even when a test fails.
//! - [`busybox`]: a statically linked busybox for `FROM scratch` images.
//! - [`docker`]: a Docker engine of a test's own, in namespaces of its own.
//! - [`wire`]: raw JSON-RPC over a plugin's socket.
//! - `etcd` (feature `etcd`): a real three-member etcd cluster on loopback.

pub mod busybox;
pub mod docker;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod group;
pub mod instance;
pub mod names;
pub mod ports;
pub mod process;
pub mod wait;
pub mod wire;

#[cfg(feature = "etcd")]
pub use etcd::EtcdCluster;
pub use instance::tags;
pub use names::unique_name;
pub use ports::{free_port, free_ports};
pub use process::{is_running, ProcessDir, ProcessGroup};
pub use wait::{eventually, eventually_blocking, until};
