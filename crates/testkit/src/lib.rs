//! Test fixtures shared by infrakit's test suites. Not published; used as a dev-dependency.
//!
//! - [`ports`]: loopback ports reserved race-free across tests and test processes.
//! - [`process`]: children ended with everything they started, even when a test fails.
//! - [`busybox`]: a statically linked busybox for `FROM scratch` images.
//! - [`docker`]: a Docker engine of a test's own, in namespaces of its own.
//! - [`wait`]: polling with a deadline.
//! - `etcd` (feature `etcd`): a real three-member etcd cluster on loopback.

pub mod busybox;
pub mod docker;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod ports;
pub mod process;
pub mod wait;

#[cfg(feature = "etcd")]
pub use etcd::EtcdCluster;
pub use ports::{free_port, free_ports};
pub use process::{ProcessDir, ProcessGroup};
pub use wait::eventually;
