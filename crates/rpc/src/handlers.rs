//! What one server exposes: the plugins' trait objects by interface and subtype, and the
//! interface versions they add up to (what `Handshake.Hello` reports).

use std::collections::BTreeMap;
use std::sync::Arc;

use infrakit_spi::event::Publisher;
use infrakit_spi::manager::Manager;
use infrakit_spi::object;
use infrakit_spi::{Flavor, Group, Instance, Interface, InterfaceSpec};

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
            let types: Vec<String> = self.instances.keys().cloned().collect();
            add(infrakit_spi::instance::INTERFACES, types.clone());
            add(&[infrakit_spi::instance::BATCH_EXTENSION], types);
        }
        if !self.flavors.is_empty() {
            let types: Vec<String> = self.flavors.keys().cloned().collect();
            add(infrakit_spi::flavor::INTERFACES, types.clone());
            add(
                &[
                    infrakit_spi::flavor::HEALTH_EXTENSION,
                    infrakit_spi::flavor::HEALTH_WATCH_EXTENSION,
                ],
                types.clone(),
            );
            add(&[infrakit_spi::flavor::BATCH_EXTENSION], types);
        }
        if self.group.is_some() {
            add(infrakit_spi::group::INTERFACES, vec![String::new()]);
            add(&[object::CONTROLLER], vec![String::new()]);
        }
        if self.manager.is_some() {
            add(infrakit_spi::manager::INTERFACES, vec![String::new()]);
            add(&[object::STACK, object::UPDATABLE], vec![String::new()]);
        }
        if self.publisher.is_some() {
            add(
                &[InterfaceSpec {
                    name: Interface::Event.as_str(),
                    version: "0.1.0",
                }],
                vec![String::new()],
            );
        }
        out
    }
}
