//! The service provider interface (SPI) of infrakit: the data types every plugin exchanges and one
//! async trait per plugin kind.
//!
//! Field names follow InfraKit's wire format exactly (`Properties`, `LogicalID`, ...), so a value
//! serialised here can be sent to, or read from, a plugin written for the original InfraKit.
//! Nothing in this crate does I/O: transports live in `infrakit-rpc`, implementations in the
//! plugin crates.

pub mod error;
pub mod event;
pub mod flavor;
pub mod group;
pub mod instance;
pub mod manager;
pub mod metadata;
pub mod method;
pub mod object;
mod properties;
pub mod secret;
pub mod serde_util;
pub mod tags;

pub use error::{Error, Result};
pub use event::{Event, Publisher};
pub use flavor::{Allocation, Flavor, Health, HealthCadence, HealthChecks, Index};
pub use group::{Group, GroupDescription, GroupProperties, GroupSpec, PluginRef};
pub use instance::{Attachment, Description, DestroyContext, Instance, Spec, Tags};
pub use method::{Interface, Method};

/// An interface a plugin implements, with its API version, e.g. `Instance/0.6.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InterfaceSpec {
    /// The service name used as the JSON-RPC method prefix (`Instance`, `Flavor`, `Group`): an
    /// [`Interface`]'s name.
    pub name: &'static str,
    /// The API version a client of some InfraKit generation requires.
    pub version: &'static str,
}

impl std::fmt::Display for InterfaceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.name, self.version)
    }
}
