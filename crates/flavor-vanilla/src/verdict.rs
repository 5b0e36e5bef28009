//! The verdict on one instance: what its description says (a dead state, the provider's own
//! health check), else what the probe says.

use infrakit_spi::{Description, Health};

use crate::cache::HealthCache;
use crate::properties::HealthProbe;

/// Provider states (the `State` field of an instance's properties) that mean the instance is not
/// running any more, compared without regard to case.
pub const DEAD_STATES: &[&str] = &["exited", "dead", "stopped", "terminated"];

/// The instance's own health check as its provider reports it (`Properties.Health`, e.g. a
/// Docker HEALTHCHECK): `unhealthy` makes it Unhealthy and `starting` Unknown, whatever the probe
/// says; `healthy`, `none` or nothing leave the decision to the probe.
fn provider_health(instance: &Description) -> Option<Health> {
    let health: String = instance.properties.as_ref()?.field("Health")?;
    match health.to_ascii_lowercase().as_str() {
        "unhealthy" => Some(Health::Unhealthy),
        "starting" => Some(Health::Unknown),
        _ => None,
    }
}

/// The verdict on `instance` with `probe`: unhealthy when its provider says it is not running or
/// not healthy, otherwise what the probe says (at most one probe per interval, through `cache`).
pub(crate) async fn judge(
    cache: &HealthCache,
    probe: &HealthProbe,
    instance: &Description,
) -> Health {
    if let Some(health) = described_health(instance) {
        return health;
    }
    cache.health(probe, instance).await
}

/// The verdict the description alone gives, if it gives one: a dead state, or the provider's
/// own health check.
pub(crate) fn described_health(instance: &Description) -> Option<Health> {
    if let Some(state) = dead_state(instance) {
        tracing::debug!(instance = %instance.id, state, "instance is not running");
        return Some(Health::Unhealthy);
    }
    provider_health(instance)
}

/// The provider state the instance plugin reported, if it is one of [`DEAD_STATES`].
fn dead_state(instance: &Description) -> Option<String> {
    let state: String = instance.properties.as_ref()?.field("State")?;
    DEAD_STATES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(&state))
        .then_some(state)
}
