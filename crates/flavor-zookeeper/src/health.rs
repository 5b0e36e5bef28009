//! Turning `srvr` answers into a health, with grace periods.
//!
//! [`judge`] is the decision, a pure function of the probe and two ages:
//! - serving (leader, follower, observer, standalone): **Healthy**;
//! - not serving, but it served within `ElectionGrace`: still **Healthy**. A member in a leader
//!   election is a whole member of the ensemble a moment later; calling it anything else would
//!   let a rolling update replace it while the ensemble re-forms, and lose the quorum;
//! - not serving and never served, within `StartupGrace` of its start: **Unknown** (the JVM is
//!   starting, or the quorum is forming);
//! - otherwise (refuses, does not answer, or answers but is not in a quorum, past its grace):
//!   **Unhealthy**.
//!
//! [`Tracker`] remembers, per instance ID, when the flavor first saw it and when it last served.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use infrakit_spi::{Description, Health};
use tokio::time::Instant;

use crate::properties::HealthSettings;
use crate::srvr::Probe;

/// Entries not asked about for this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// The health of a member whose probe gave `probe`, that started `since_start` ago and last
/// served `since_served` ago (never: `None`), with a short reason for logs.
pub fn judge(
    probe: &Probe,
    since_start: Duration,
    since_served: Option<Duration>,
    grace: &HealthSettings,
) -> (Health, &'static str) {
    if probe.serving() {
        return (Health::Healthy, "serving");
    }
    match since_served {
        Some(d) if d < grace.election_grace => (Health::Healthy, "electing, within ElectionGrace"),
        Some(_) => (Health::Unhealthy, "not serving past ElectionGrace"),
        None if since_start < grace.startup_grace => {
            (Health::Unknown, "starting, within StartupGrace")
        }
        None => (Health::Unhealthy, "never served within StartupGrace"),
    }
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    first: Instant,
    served: Option<Instant>,
    asked: Instant,
}

/// What the flavor remembers of each instance it was asked about.
#[derive(Debug, Default)]
pub struct Tracker {
    seen: Mutex<HashMap<String, Seen>>,
}

/// When the process instance plugin says the instance started (`Properties.StartedAt`, RFC 3339).
fn started_ago(instance: &Description) -> Option<Duration> {
    let at: String = instance.properties.as_ref()?.field("StartedAt")?;
    let at = humantime::parse_rfc3339_weak(&at).ok()?;
    SystemTime::now().duration_since(at).ok()
}

impl Tracker {
    /// Records `probe` for `instance` and judges it.
    pub fn record(
        &self,
        instance: &Description,
        probe: &Probe,
        grace: &HealthSettings,
    ) -> (Health, &'static str) {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|_, s| now.duration_since(s.asked) < FORGET_AFTER);
        let entry = seen.entry(instance.id.clone()).or_insert(Seen {
            first: now,
            served: None,
            asked: now,
        });
        entry.asked = now;
        if probe.serving() {
            entry.served = Some(now);
        }
        // The provider's start time survives a restart of this flavor; first sight does not.
        let since_start = started_ago(instance)
            .unwrap_or_default()
            .max(now.duration_since(entry.first));
        let since_served = entry.served.map(|s| now.duration_since(s));
        judge(probe, since_start, since_served, grace)
    }

    /// How many instances are remembered.
    pub fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when no instance is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srvr::{Mode, Srvr};
    use serde_json::json;

    fn grace() -> HealthSettings {
        HealthSettings {
            startup_grace: Duration::from_secs(60),
            election_grace: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
        }
    }

    fn serving() -> Probe {
        Probe::Answered(Srvr::Serving {
            mode: Mode::Follower,
            zxid: None,
        })
    }

    fn electing() -> Probe {
        Probe::Answered(Srvr::NotServing("not currently serving requests".into()))
    }

    fn refused() -> Probe {
        Probe::Down("connection refused".into())
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn the_decision_table() {
        let g = grace();
        let h = |p: &Probe, start: u64, served: Option<u64>| {
            judge(p, secs(start), served.map(secs), &g).0
        };
        assert_eq!(h(&serving(), 0, None), Health::Healthy);
        assert_eq!(h(&serving(), 1000, Some(500)), Health::Healthy);
        // Starting.
        assert_eq!(h(&refused(), 5, None), Health::Unknown);
        assert_eq!(h(&electing(), 59, None), Health::Unknown);
        assert_eq!(h(&electing(), 60, None), Health::Unhealthy);
        assert_eq!(h(&refused(), 61, None), Health::Unhealthy);
        // An election after serving.
        assert_eq!(h(&electing(), 600, Some(9)), Health::Healthy);
        assert_eq!(h(&refused(), 600, Some(2)), Health::Healthy);
        assert_eq!(h(&electing(), 600, Some(10)), Health::Unhealthy);
        assert_eq!(h(&refused(), 600, Some(11)), Health::Unhealthy);
    }

    fn instance(id: &str) -> Description {
        Description {
            id: id.into(),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_tracker_measures_from_first_sight_and_last_service() {
        let t = Tracker::default();
        let g = grace();
        let a = instance("a");
        assert_eq!(t.record(&a, &refused(), &g).0, Health::Unknown);
        tokio::time::advance(secs(30)).await;
        assert_eq!(t.record(&a, &electing(), &g).0, Health::Unknown);
        assert_eq!(t.record(&a, &serving(), &g).0, Health::Healthy);
        tokio::time::advance(secs(5)).await;
        assert_eq!(t.record(&a, &electing(), &g).0, Health::Healthy, "electing");
        tokio::time::advance(secs(6)).await;
        assert_eq!(t.record(&a, &electing(), &g).0, Health::Unhealthy);
        assert_eq!(t.record(&a, &serving(), &g).0, Health::Healthy);

        // Another instance has its own clock.
        let b = instance("b");
        assert_eq!(t.record(&b, &refused(), &g).0, Health::Unknown);
        tokio::time::advance(secs(61)).await;
        assert_eq!(t.record(&b, &refused(), &g).0, Health::Unhealthy);
        assert_eq!(t.len(), 2);
        tokio::time::advance(FORGET_AFTER).await;
        assert_eq!(
            t.record(&b, &refused(), &g).0,
            Health::Unknown,
            "forgotten, seen anew"
        );
        assert_eq!(t.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_time_from_the_provider_counts() {
        let t = Tracker::default();
        let mut old = instance("old");
        let started = SystemTime::now() - secs(3600);
        old.properties = Some(
            json!({"StartedAt": humantime::format_rfc3339_seconds(started).to_string()}).into(),
        );
        assert_eq!(t.record(&old, &refused(), &grace()).0, Health::Unhealthy);
        let mut fresh = instance("fresh");
        fresh.properties = Some(
            json!({"StartedAt": humantime::format_rfc3339_seconds(SystemTime::now()).to_string()})
                .into(),
        );
        assert_eq!(t.record(&fresh, &refused(), &grace()).0, Health::Unknown);
    }
}
