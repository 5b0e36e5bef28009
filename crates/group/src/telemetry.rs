//! What the controller tells operators while it works: lifecycle events and metrics.
//!
//! Events use InfraKit's event shape ([`Event`]) under the topics `/group/<kind>` (with the
//! group, the instance and the reason in `Data`) and `/manager/<kind>`. They are broadcast to
//! live subscribers and the most recent [`RECENT`] are kept, so a newcomer (`infrakit events`,
//! the dashboard) can see what just happened. Metrics are Prometheus instruments
//! (`prometheus-client`), encoded in the text format by [`Metrics::encode`].
//!
//! One [`Telemetry`] outlives the controllers that report into it: a manager keeps the same one
//! across leadership terms, so the event history and the counters survive a failover inside
//! one process.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use infrakit_spi::event::{Event, Publisher};

/// Topic prefix of group lifecycle events.
pub const GROUP_TOPIC: &str = "/group/";
/// Topic prefix of manager events (leadership).
pub const MANAGER_TOPIC: &str = "/manager/";
/// How many past events are kept for newcomers.
pub const RECENT: usize = 1000;
/// Capacity of the live channel; a subscriber further behind gets a `lagged` event.
const CHANNEL: usize = 4096;

/// Kinds of group events (the last part of the topic).
pub mod kind {
    /// A spec was committed.
    pub const COMMITTED: &str = "committed";
    /// A provision is starting.
    pub const PROVISIONING: &str = "provisioning";
    /// A provision succeeded.
    pub const PROVISIONED: &str = "provisioned";
    /// A provision failed.
    pub const PROVISION_FAILED: &str = "provision-failed";
    /// An instance became unhealthy.
    pub const UNHEALTHY: &str = "unhealthy";
    /// An instance disappeared without the controller destroying it.
    pub const LOST: &str = "lost";
    /// An unhealthy instance is being replaced.
    pub const REPLACED: &str = "replaced";
    /// An instance was drained before being destroyed.
    pub const DRAINED: &str = "drained";
    /// An instance was destroyed.
    pub const DESTROYED: &str = "destroyed";
    /// A destroy failed.
    pub const DESTROY_FAILED: &str = "destroy-failed";
    /// A rollout made progress.
    pub const ROLLOUT_STEP: &str = "rollout-step";
    /// A rollout finished.
    pub const ROLLOUT_COMPLETE: &str = "rollout-complete";
    /// A rollout was paused (by an operator or a failed drain).
    pub const ROLLOUT_PAUSED: &str = "rollout-paused";
    /// A rollout was resumed by an operator.
    pub const ROLLOUT_RESUMED: &str = "rollout-resumed";
    /// A rollout failed and paused.
    pub const ROLLOUT_FAILED: &str = "rollout-failed";
    /// A rollout failed and the previous configuration is coming back.
    pub const ROLLED_BACK: &str = "rollout-rolled-back";
    /// Leadership changed (manager topic).
    pub const LEADERSHIP: &str = "leadership";
}

/// Lifecycle events: broadcast live and kept for a while.
#[derive(Debug)]
pub struct EventLog {
    tx: broadcast::Sender<Event>,
    recent: Mutex<VecDeque<Event>>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            tx: broadcast::channel(CHANNEL).0,
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
        }
    }
}

impl EventLog {
    /// Publishes `event` to subscribers and keeps it.
    pub fn publish(&self, event: Event) {
        {
            let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(event.clone());
        }
        let _ = self.tx.send(event);
    }

    /// A group event: `/group/<kind>`, about `instance` if given (else the group itself).
    pub fn group(
        &self,
        kind: &str,
        group: &str,
        instance: Option<&str>,
        message: impl Into<String>,
    ) {
        self.group_with(kind, group, instance, message, Value::Null);
    }

    /// A group event with extra `data` fields (an object) besides `Group` and `Instance`.
    pub fn group_with(
        &self,
        kind: &str,
        group: &str,
        instance: Option<&str>,
        message: impl Into<String>,
        data: Value,
    ) {
        let mut fields = json!({"Group": group, "Instance": instance});
        if let (Some(all), Value::Object(extra)) = (fields.as_object_mut(), data) {
            all.extend(extra);
        }
        self.publish(stamped(
            format!("{GROUP_TOPIC}{kind}"),
            kind,
            instance.unwrap_or(group),
            message.into(),
            fields,
        ));
    }

    /// A manager event: `/manager/<kind>` about manager `name`.
    pub fn manager(&self, kind: &str, name: &str, message: impl Into<String>) {
        self.publish(stamped(
            format!("{MANAGER_TOPIC}{kind}"),
            kind,
            name,
            message.into(),
            json!({"Manager": name}),
        ));
    }

    /// The events kept, oldest first.
    pub fn recent(&self) -> Vec<Event> {
        self.recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

impl Publisher for EventLog {
    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    fn recent(&self) -> Vec<Event> {
        EventLog::recent(self)
    }
}

fn stamped(topic: String, kind: &str, id: &str, message: String, data: Value) -> Event {
    Event {
        topic,
        kind: kind.to_string(),
        id: id.to_string(),
        message,
        timestamp: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        data,
    }
}

/// Labels of per-group metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    /// The group ID.
    pub group: String,
}

impl GroupLabels {
    fn of(group: &str) -> GroupLabels {
        GroupLabels {
            group: group.to_string(),
        }
    }
}

/// Labels of plugin call metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// The plugin's name.
    pub plugin: String,
    /// The method, e.g. `Instance.Provision`.
    pub method: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds from 0.5 ms to about 16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Seconds from 10 ms to about 80 min.
fn heal_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 19))
}

/// The controller's Prometheus instruments.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    desired: Family<GroupLabels, Gauge>,
    actual: Family<GroupLabels, Gauge>,
    healthy: Family<GroupLabels, Gauge>,
    rollout_updated: Family<GroupLabels, Gauge>,
    rollout_total: Family<GroupLabels, Gauge>,
    reconcile: Histograms<GroupLabels>,
    reconcile_failures: Family<GroupLabels, Counter>,
    calls: Histograms<CallLabels>,
    call_errors: Family<CallLabels, Counter>,
    heal: Histograms<GroupLabels>,
    connections: infrakit_rpc::ConnectionMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("infrakit"),
            desired: Family::default(),
            actual: Family::default(),
            healthy: Family::default(),
            rollout_updated: Family::default(),
            rollout_total: Family::default(),
            reconcile: Family::new_with_constructor(latency_histogram),
            reconcile_failures: Family::default(),
            calls: Family::new_with_constructor(latency_histogram),
            call_errors: Family::default(),
            heal: Family::new_with_constructor(heal_histogram),
            connections: infrakit_rpc::ConnectionMetrics::default(),
        };
        let r = &mut m.registry;
        r.register(
            "group_desired_instances",
            "Instances the group's spec asks for",
            m.desired.clone(),
        );
        r.register(
            "group_instances",
            "Instances of the group found at the last reconcile",
            m.actual.clone(),
        );
        r.register(
            "group_healthy_instances",
            "Instances of the group that were healthy at the last reconcile",
            m.healthy.clone(),
        );
        r.register(
            "group_rollout_updated_instances",
            "Instances already on the configuration being rolled out (while a rollout is shown)",
            m.rollout_updated.clone(),
        );
        r.register(
            "group_rollout_total_instances",
            "Instances the rollout in progress must update (0 when there is none)",
            m.rollout_total.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time of one reconcile pass (observe, plan, act)",
            m.reconcile.clone(),
        );
        r.register(
            "reconcile_failures",
            "Reconcile passes that failed (e.g. a plugin was unavailable)",
            m.reconcile_failures.clone(),
        );
        r.register(
            "plugin_call_duration_seconds",
            "Latency of calls to instance and flavor plugins (Healthy answers given at once are not timed)",
            m.calls.clone(),
        );
        r.register(
            "plugin_call_errors",
            "Calls to instance and flavor plugins that failed or timed out",
            m.call_errors.clone(),
        );
        r.register(
            "heal_duration_seconds",
            "From an instance found dead or replaced as unhealthy to its replacement created",
            m.heal.clone(),
        );
        m.connections.register(r);
        m
    }
}

impl Metrics {
    /// The connection counts of this process's plugin servers (give a clone to
    /// [`infrakit_rpc::ServerOptions::metrics`]).
    pub fn connections(&self) -> infrakit_rpc::ConnectionMetrics {
        self.connections.clone()
    }

    /// Everything in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The value of sample `name` (as encoded, e.g. `infrakit_reconcile_failures_total`) for
    /// group `group`, if it was recorded.
    pub fn group_sample(&self, name: &str, group: &str) -> Option<u64> {
        let prefix = format!("{name}{{group=\"{group}\"}} ");
        self.encode()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
    }

    /// Records what a reconcile of `group` saw.
    pub(crate) fn group_seen(&self, group: &str, desired: usize, actual: usize, healthy: usize) {
        let l = GroupLabels::of(group);
        self.desired.get_or_create(&l).set(desired as i64);
        self.actual.get_or_create(&l).set(actual as i64);
        self.healthy.get_or_create(&l).set(healthy as i64);
    }

    /// Records a rollout's progress (`total` 0 when none is in progress).
    pub(crate) fn rollout(&self, group: &str, updated: usize, total: usize) {
        let l = GroupLabels::of(group);
        self.rollout_updated.get_or_create(&l).set(updated as i64);
        self.rollout_total.get_or_create(&l).set(total as i64);
    }

    /// Records one reconcile pass.
    pub(crate) fn reconciled(&self, group: &str, took: Duration, ok: bool) {
        let l = GroupLabels::of(group);
        self.reconcile.get_or_create(&l).observe(took.as_secs_f64());
        if !ok {
            self.reconcile_failures.get_or_create(&l).inc();
        }
    }

    /// Records a heal.
    pub(crate) fn healed(&self, group: &str, took: Duration) {
        let l = GroupLabels::of(group);
        self.heal.get_or_create(&l).observe(took.as_secs_f64());
    }

    /// The instruments of one plugin method (a [`Method`](infrakit_spi::Method), or its wire
    /// name), resolved once so each call only records.
    pub(crate) fn call(&self, plugin: &str, method: impl AsRef<str>) -> CallMetrics {
        let l = CallLabels {
            plugin: plugin.to_string(),
            method: method.as_ref().to_string(),
        };
        CallMetrics {
            latency: self.calls.get_or_create(&l).clone(),
            errors: self.call_errors.get_or_create(&l).clone(),
        }
    }

    /// Forgets a group's gauges (it was freed or destroyed).
    pub(crate) fn forget(&self, group: &str) {
        let l = GroupLabels::of(group);
        for f in [
            &self.desired,
            &self.actual,
            &self.healthy,
            &self.rollout_updated,
            &self.rollout_total,
        ] {
            f.remove(&l);
        }
    }
}

/// The instruments of one plugin method.
#[derive(Debug, Clone)]
pub(crate) struct CallMetrics {
    latency: Histogram,
    errors: Counter,
}

impl CallMetrics {
    /// Records a call that took `took` and succeeded or not.
    pub(crate) fn record(&self, took: Duration, ok: bool) {
        self.latency.observe(took.as_secs_f64());
        if !ok {
            self.errors.inc();
        }
    }

    /// Times `call`.
    pub(crate) async fn time<T>(
        &self,
        call: impl std::future::Future<Output = infrakit_spi::Result<T>>,
    ) -> infrakit_spi::Result<T> {
        let start = tokio::time::Instant::now();
        let result = call.await;
        self.record(start.elapsed(), result.is_ok());
        result
    }

    /// Times a batch `call` as one call; each item that failed counts as an error.
    pub(crate) async fn time_batch<T>(
        &self,
        call: impl std::future::Future<Output = Vec<infrakit_spi::Result<T>>>,
    ) -> Vec<infrakit_spi::Result<T>> {
        let start = tokio::time::Instant::now();
        let results = call.await;
        self.latency.observe(start.elapsed().as_secs_f64());
        let failed = results.iter().filter(|r| r.is_err()).count();
        self.errors.inc_by(failed as u64);
        results
    }
}

/// Events and metrics, shared by every controller that reports into them.
#[derive(Debug, Default)]
pub struct Telemetry {
    /// Lifecycle events.
    pub events: EventLog,
    /// Prometheus instruments.
    pub metrics: Metrics,
}

impl Telemetry {
    /// A fresh, shareable telemetry.
    pub fn new() -> Arc<Telemetry> {
        Arc::new(Telemetry::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_events_carry_group_instance_and_extra_data() {
        let log = EventLog::default();
        let mut rx = log.subscribe();
        log.group_with(
            kind::DESTROYED,
            "workers",
            Some("i-1"),
            "destroyed (scale_down)",
            json!({"Reason": "scale_down"}),
        );
        let e = rx.try_recv().unwrap();
        assert_eq!(e.topic, "/group/destroyed");
        assert_eq!(e.id, "i-1");
        assert_eq!(e.data["Group"], "workers");
        assert_eq!(e.data["Instance"], "i-1");
        assert_eq!(e.data["Reason"], "scale_down");
        assert!(e.matches(GROUP_TOPIC));
        assert_eq!(log.recent(), vec![e]);
    }

    #[test]
    fn only_the_most_recent_events_are_kept() {
        let log = EventLog::default();
        for i in 0..RECENT + 5 {
            log.group(kind::COMMITTED, &format!("g{i}"), None, "");
        }
        let recent = log.recent();
        assert_eq!(recent.len(), RECENT);
        assert_eq!(recent[0].id, "g5");
        assert_eq!(recent[RECENT - 1].id, format!("g{}", RECENT + 4));
    }

    #[test]
    fn metrics_encode_as_prometheus_text() {
        let m = Metrics::default();
        m.group_seen("web", 3, 2, 1);
        let method = infrakit_spi::Method::InstanceProvision;
        m.call("instance-simulator", method)
            .record(Duration::from_millis(3), false);
        let text = m.encode();
        assert!(text.contains("infrakit_group_desired_instances{group=\"web\"} 3"));
        assert!(text.contains("infrakit_group_healthy_instances{group=\"web\"} 1"));
        assert!(text.contains(&format!(
            "infrakit_plugin_call_errors_total{{plugin=\"instance-simulator\",method=\"{method}\"}} 1"
        )));
        assert!(text.ends_with("# EOF\n"));
        m.forget("web");
        assert!(!m.encode().contains("group=\"web\""));
    }
}
