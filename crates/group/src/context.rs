//! What every supervisor of one group plugin shares: the controller's knobs ([`ControllerConfig`]),
//! where plugins and records are found, and the fence that says whether this controller may act
//! ([`Context`]).

use std::sync::Arc;
use std::time::Duration;

use infrakit_rpc::Plugins;
use infrakit_spi::{Error, Flavor, Instance, Result};
use infrakit_store::Store;

use crate::fence::Fence;
use crate::instrumented::{TimedFlavor, TimedInstance};
use crate::settings::Settings;
use crate::telemetry::Telemetry;

/// Knobs shared by every supervisor.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Time between reconciles of a converged group.
    pub poll_interval: Duration,
    /// Provisions (and, separately, destroys and health checks) run at most this many at a time.
    pub max_parallel: usize,
    /// A `Flavor.Healthy` call slower than this counts as Unknown.
    pub health_timeout: Duration,
    /// While the instance plugin's events say nothing changed, a group's last listing is
    /// reused; it is listed again at least this often, in case an event was missed.
    pub resync_interval: Duration,
    /// Where events and metrics go. Share one to see several controllers' (e.g. successive
    /// leadership terms) in one place.
    pub telemetry: Arc<Telemetry>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            poll_interval: Duration::from_secs(1),
            max_parallel: 64,
            health_timeout: Duration::from_secs(5),
            resync_interval: Duration::from_secs(30),
            telemetry: Telemetry::new(),
        }
    }
}

/// Shared by the supervisors of one group plugin.
#[derive(Debug)]
pub struct Context {
    /// Where plugins are found.
    pub plugins: Arc<Plugins>,
    /// Controller knobs.
    pub config: ControllerConfig,
    /// Where specs and rollout progress are kept, if anywhere.
    pub store: Option<Arc<dyn Store>>,
    /// Checked before every provision, drain and destroy.
    pub fence: Arc<dyn Fence>,
}

impl Context {
    /// Fails when this controller may not act now.
    pub(crate) fn may_act(&self) -> Result<()> {
        self.fence
            .check()
            .map_err(|why| Error::plugin(format!("not acting: {why}")))
    }
}

/// The instance and flavor plugins a group uses.
pub(crate) fn plugins_of(
    ctx: &Context,
    settings: &Settings,
) -> Result<(Arc<dyn Instance>, Arc<dyn Flavor>)> {
    let metrics = &ctx.config.telemetry.metrics;
    let (instance, flavor) = (
        &settings.props.instance.plugin,
        &settings.props.flavor.plugin,
    );
    Ok((
        Arc::new(TimedInstance::new(
            ctx.plugins.instance(instance)?,
            instance,
            metrics,
        )),
        Arc::new(TimedFlavor::new(
            ctx.plugins.flavor(flavor)?,
            flavor,
            metrics,
        )),
    ))
}
