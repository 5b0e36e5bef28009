//! Follows the engine's event stream and republishes what matters as InfraKit instance events.
//!
//! The engine's container events carrying the label `infrakit.plugin=<name>` become
//! [`Event::instance`]s on the plugin's broadcast channel:
//!
//! | Docker action        | event kind  |
//! |----------------------|-------------|
//! | `start`              | `started`   |
//! | `die`                | `exited`    |
//! | `oom`                | `oom`       |
//! | `pause`, `unpause`   | `paused`, `unpaused` |
//! | `destroy`            | `destroyed` |
//! | `health_status: ...` | `health`    |
//!
//! Every change of what `DescribeInstances` reports is an event: the group controller reuses its
//! last listing while no event arrives.
//!
//! The event's ID is the container name (the instance ID) and its data `{"Tags": {...}}` the
//! container's labels (with tags added by `Label`), so the group controller wakes only the group
//! concerned. A `die` of a container the plugin is destroying itself is not published.
//!
//! When the stream breaks (the engine restarted or went away), the watcher pings the engine with
//! a backoff of [`RECONNECT_MIN`] doubling to [`RECONNECT_MAX`], subscribes again from the time
//! the stream broke (so nothing the engine still remembers is lost), and publishes one `resync`
//! event with empty tags: every subscriber should list its instances again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptions;
use futures::StreamExt;
use infrakit_spi::event::Event;
use infrakit_spi::Tags;
use serde_json::json;

use crate::options::PLUGIN_LABEL;
use crate::shared::Shared;

/// First delay before pinging an engine whose event stream broke.
pub const RECONNECT_MIN: Duration = Duration::from_millis(100);
/// Longest delay between pings of an engine that does not answer.
pub const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// Event kind published after the event stream was re-established.
pub const RESYNC: &str = "resync";

/// Event attributes Docker adds next to the container's labels.
const NON_LABEL_ATTRIBUTES: &[&str] = &["name", "image", "exitCode", "signal", "execDuration"];

/// How far back a re-subscription reaches, to cover the clock granularity of `since`.
const SINCE_MARGIN: Duration = Duration::from_secs(1);

fn since_param(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

fn options(plugin: &str, since: SystemTime) -> EventsOptions {
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        (
            "label".to_string(),
            vec![format!("{PLUGIN_LABEL}={plugin}")],
        ),
        (
            "event".to_string(),
            [
                "die",
                "oom",
                "destroy",
                "start",
                "pause",
                "unpause",
                "health_status",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ),
    ]);
    EventsOptions {
        since: Some(since_param(since)),
        until: None,
        filters: Some(filters),
    }
}

/// Runs until aborted (when the plugin is dropped). `since` is when the plugin connected: events
/// from then on are delivered even if the subscription itself lands a little later.
pub(crate) async fn watch(shared: Arc<Shared>, since: SystemTime) {
    let mut since = since;
    loop {
        let mut stream = shared
            .docker
            .events(Some(options(&shared.options.name, since)));
        loop {
            match stream.next().await {
                Some(Ok(msg)) => handle(&shared, msg),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the Docker event stream broke");
                    break;
                }
                None => {
                    tracing::warn!("the Docker event stream ended");
                    break;
                }
            }
        }
        drop(stream);
        since = SystemTime::now()
            .checked_sub(SINCE_MARGIN)
            .unwrap_or(UNIX_EPOCH);
        let mut backoff = RECONNECT_MIN;
        loop {
            tokio::time::sleep(backoff).await;
            match shared.docker.ping().await {
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(error = %e, retry_in = ?backoff, "the Docker engine does not answer yet");
                    backoff = (backoff * 2).min(RECONNECT_MAX);
                }
            }
        }
        tracing::info!("reconnected to the Docker event stream; asking subscribers to re-list");
        shared.publish(Event::instance(
            RESYNC,
            &shared.options.name,
            "the Docker event stream was re-established; instances may have changed meanwhile",
            json!({"Tags": {}}),
        ));
        shared.janitor.notify_one();
    }
}

fn handle(shared: &Shared, msg: EventMessage) {
    let Some(actor) = msg.actor else { return };
    let Some(id) = actor.id else { return };
    let attributes = actor.attributes.unwrap_or_default();
    let name = attributes
        .get("name")
        .cloned()
        .unwrap_or_else(|| id.clone());
    let action = msg.action.unwrap_or_default();
    let mut tags: Tags = attributes
        .iter()
        .filter(|(k, _)| !NON_LABEL_ATTRIBUTES.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(extra) = shared.labels.snapshot().get(&id) {
        tags.extend(extra.clone());
    }
    let data = json!({ "Tags": tags });
    let (kind, message) = match action.as_str() {
        "start" => {
            shared.forget_death(&id);
            ("started", format!("container {name} started"))
        }
        "pause" => ("paused", format!("container {name} was paused")),
        "unpause" => ("unpaused", format!("container {name} was unpaused")),
        "die" => {
            // Recorded before publishing: the engine's container list may still say `running`
            // for a moment, and the subscriber's re-list must not believe it.
            shared.record_death(&id);
            shared.janitor.notify_one();
            if shared.is_destroying(&id) {
                return;
            }
            let code = attributes
                .get("exitCode")
                .map(String::as_str)
                .unwrap_or("?");
            (
                "exited",
                format!("container {name} exited with code {code}"),
            )
        }
        "oom" => ("oom", format!("container {name} ran out of memory")),
        "destroy" => {
            shared.forget_death(&id);
            ("destroyed", format!("container {name} was removed"))
        }
        a if a.starts_with("health_status") => {
            let status = a
                .split_once(':')
                .map(|(_, s)| s.trim())
                .unwrap_or("unknown");
            ("health", format!("container {name} is {status}"))
        }
        _ => return,
    };
    tracing::debug!(container = %name, %kind, "{message}");
    shared.publish(Event::instance(kind, &name, message, data));
}
