//! What the listener is given: the sources it shows ([`Sources`]) and how it behaves
//! ([`Options`]).

use std::sync::Arc;

use infrakit_group::Telemetry;
use infrakit_spi::event::Publisher;
use infrakit_spi::Group;

/// What the listener serves.
#[derive(Clone)]
pub struct Sources {
    /// Groups to show (a manager, a group plugin or a client of one).
    pub groups: Arc<dyn Group>,
    /// Lifecycle events to stream.
    pub events: Arc<dyn Publisher>,
    /// Metrics to expose.
    pub telemetry: Arc<Telemetry>,
}

/// How the listener behaves.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Enables the dashboard's scale, pause and resume buttons and their API. Off by default:
    /// the dashboard is read-only.
    pub actions: bool,
}
