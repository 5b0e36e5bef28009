//! Test fixtures shared by infrakit's test suites. Not published; used as a dev-dependency.

pub mod etcd;

pub use etcd::{eventually, free_port, free_ports, EtcdCluster};
