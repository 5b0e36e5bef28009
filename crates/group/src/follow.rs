//! Event following: a supervisor reconciles at once when the instance plugin publishes an event
//! about one of its group's instances, and falls back on polling while the plugin has no events.
//! What it sees feeds the group's observed cache ([`crate::listing::Watch`]). Likewise, while a
//! pass wants them, the flavor's health-change events feed the group's
//! [`crate::pushed::HealthFeed`].

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::watch;

use infrakit_spi::event::{HEALTH_TOPIC, INSTANCE_TOPIC};
use infrakit_spi::instance::GROUP_TAG;

use crate::context::Context;
use crate::settings::Settings;
use crate::state::GroupState;

/// Longest wait before subscribing again to a plugin that has no events.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Follows the instance plugin's events and wakes the supervisor on any about this group.
pub(crate) async fn watch_events(
    ctx: Arc<Context>,
    mut settings: watch::Receiver<Arc<Settings>>,
    state: Arc<GroupState>,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let current = settings.borrow_and_update().clone();
        match ctx
            .plugins
            .subscribe(&current.props.instance.plugin, INSTANCE_TOPIC)
            .await
        {
            Ok(stream) => {
                backoff = Duration::from_millis(500);
                // Something may have happened while we were not listening.
                state.watch.subscribed();
                state.wake();
                let mut stream = stream.map(Ok::<_, ()>);
                loop {
                    tokio::select! {
                        event = stream.try_next() => match event {
                            Ok(Some(e)) => {
                                let group = e.data.get("Tags").and_then(|t| t.get(GROUP_TAG)).and_then(|g| g.as_str());
                                if group.is_none() || group == Some(current.id.as_str()) {
                                    tracing::debug!(group = %current.id, event = %e.topic, instance = %e.id, "instance event");
                                    state.watch.changed();
                                    state.wake();
                                }
                            }
                            _ => {
                                state.watch.lost();
                                break;
                            }
                        },
                        changed = settings.changed() => {
                            state.watch.lost();
                            if changed.is_err() { return; }
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                state.watch.lost();
                tracing::debug!(plugin = %current.props.instance.plugin, error = %e, "no instance events; relying on polling");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    changed = settings.changed() => if changed.is_err() { return },
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Follows the flavor's health-change events of this group's watches (`/flavor/health/<group>/`)
/// while the control loop wants them, and wakes the supervisor with each verdict.
pub(crate) async fn follow_health(
    ctx: Arc<Context>,
    mut settings: watch::Receiver<Arc<Settings>>,
    state: Arc<GroupState>,
) {
    let feed = &state.health;
    let mut backoff = Duration::from_millis(500);
    loop {
        tokio::select! {
            _ = feed.wanted() => {}
            changed = settings.changed() => if changed.is_err() { return } else { continue },
        }
        let current = settings.borrow_and_update().clone();
        let plugin = &current.props.flavor.plugin;
        let topic = format!("{HEALTH_TOPIC}{}/", current.id);
        match ctx.plugins.subscribe(plugin, &topic).await {
            Ok(stream) => {
                backoff = Duration::from_millis(500);
                feed.subscribed();
                state.wake();
                let mut stream = stream.map(Ok::<_, ()>);
                loop {
                    tokio::select! {
                        event = stream.try_next() => match event {
                            Ok(Some(e)) => match e.health_verdict() {
                                Some(health) => {
                                    tracing::debug!(group = %current.id, instance = %e.id, %health, "health event");
                                    feed.push(e.id, health);
                                    state.wake();
                                }
                                // A lagging subscriber missed verdicts: all are asked again.
                                None if e.kind == infrakit_rpc::events::LAGGED => {
                                    feed.subscribed();
                                    state.wake();
                                }
                                None => {}
                            },
                            _ => {
                                feed.lost();
                                break;
                            }
                        },
                        changed = settings.changed() => {
                            feed.lost();
                            if changed.is_err() { return; }
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                feed.lost();
                tracing::debug!(plugin = %plugin, error = %e, "no health events from the flavor; asking on its cadence");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    changed = settings.changed() => if changed.is_err() { return },
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
