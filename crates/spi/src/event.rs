//! Events a plugin publishes, in InfraKit's event shape (spec 2.6).
//!
//! A plugin that can tell when an instance dies (a process exited, a container stopped) publishes
//! an [`Event`] so the group controller can react at once instead of waiting for its next poll.
//! Over the wire events travel as server-sent events on `/events?topic=...`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

/// Topic of instance lifecycle events. Subscribers match by prefix (`/instance/`).
pub const INSTANCE_TOPIC: &str = "/instance/";

/// Topic prefix of health-change events: a flavor watching instances for a caller publishes
/// each change of verdict under `/flavor/health/<watch>` (see [`Event::health`]).
pub const HEALTH_TOPIC: &str = "/flavor/health/";

/// The topic of the health-change events of watch `watch`.
pub fn health_topic(watch: &str) -> String {
    format!("{HEALTH_TOPIC}{watch}")
}

/// One event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Slash-separated topic, e.g. `/instance/exited`.
    #[serde(rename = "Topic", default)]
    pub topic: String,
    /// Event type, e.g. `exited`.
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// The subject, e.g. an instance ID.
    #[serde(rename = "ID", default)]
    pub id: String,
    /// Human-readable text.
    #[serde(rename = "Message", default)]
    pub message: String,
    /// RFC 3339 time at which the event happened.
    #[serde(rename = "Timestamp", default)]
    pub timestamp: String,
    /// Extra data (for instance events: `{"Tags": {...}}`).
    #[serde(rename = "Data", default)]
    pub data: Value,
}

impl Event {
    /// An instance event of `kind` about instance `id`, stamped now.
    pub fn instance(kind: &str, id: &str, message: impl Into<String>, data: Value) -> Self {
        Event {
            topic: format!("{INSTANCE_TOPIC}{kind}"),
            kind: kind.to_string(),
            id: id.to_string(),
            message: message.into(),
            timestamp: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            data,
        }
    }

    /// A health-change event of watch `watch`: instance `id` is now `health`. On the wire its
    /// `Data` is `{"Health": 0|1|2}` and its `Type` `health`.
    pub fn health(
        watch: &str,
        id: &str,
        health: crate::Health,
        message: impl Into<String>,
    ) -> Self {
        Event {
            topic: health_topic(watch),
            kind: "health".to_string(),
            id: id.to_string(),
            message: message.into(),
            timestamp: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            data: serde_json::json!({ "Health": health }),
        }
    }

    /// The verdict a health-change event carries, if it is one.
    pub fn health_verdict(&self) -> Option<crate::Health> {
        if !self.topic.starts_with(HEALTH_TOPIC) {
            return None;
        }
        serde_json::from_value(self.data.get("Health")?.clone()).ok()
    }

    /// True when this event falls under `topic` (a trailing `/` matches by prefix).
    pub fn matches(&self, topic: &str) -> bool {
        let topic = if topic.is_empty() { "/" } else { topic };
        if topic.ends_with('/') {
            self.topic.starts_with(topic)
        } else {
            self.topic == topic
        }
    }
}

/// Implemented by plugins that publish events.
pub trait Publisher: Send + Sync {
    /// A receiver of every event published from now on.
    fn subscribe(&self) -> broadcast::Receiver<Event>;

    /// Events published before now that the publisher still keeps, oldest first, for a
    /// newcomer to catch up with (none by default).
    fn recent(&self) -> Vec<Event> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_matching_is_by_prefix_with_trailing_slash() {
        let e = Event::instance("exited", "i-1", "exit status 1", Value::Null);
        assert_eq!(e.topic, "/instance/exited");
        assert!(e.matches("/instance/"));
        assert!(e.matches("/"));
        assert!(e.matches("/instance/exited"));
        assert!(!e.matches("/instance"));
        assert!(!e.matches("/group/"));
    }

    #[test]
    fn a_health_event_carries_its_verdict_under_its_watch() {
        let e = Event::health("web", "i-1", crate::Health::Unhealthy, "refused");
        assert_eq!(e.topic, "/flavor/health/web");
        assert!(e.matches(HEALTH_TOPIC));
        assert_eq!(e.data, serde_json::json!({"Health": 2}));
        assert_eq!(e.health_verdict(), Some(crate::Health::Unhealthy));
        let other = Event::instance("exited", "i-1", "", serde_json::json!({"Health": 2}));
        assert_eq!(other.health_verdict(), None);
    }
}
