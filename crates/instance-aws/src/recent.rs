//! Instances launched moments ago, for `DescribeInstances` to report before EC2 does.
//!
//! EC2's read API is eventually consistent: an instance `RunInstances` just returned may be
//! missing from `DescribeInstances` for a few seconds, and a group controller that looked then
//! would launch its replacement. So the plugin remembers what it launched and adds it to
//! listings that miss it, until EC2 lists it once or [`RECENT_TTL`] passes. Destroying an
//! instance forgets it. No I/O; time is passed in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use infrakit_spi::instance::tags_match;
use infrakit_spi::{Description, Tags};

/// How long a launched instance is reported without EC2 listing it.
pub const RECENT_TTL: Duration = Duration::from_secs(30);

/// Launched instances not yet listed by EC2.
#[derive(Debug, Default)]
pub struct Recent {
    launched: Mutex<HashMap<String, (Description, Instant)>>,
}

impl Recent {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Description, Instant)>> {
        self.launched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers an instance launched at `now`.
    pub fn launched(&self, d: Description, now: Instant) {
        self.lock().insert(d.id.clone(), (d, now));
    }

    /// Merges `labels` into a remembered instance's tags.
    pub fn labelled(&self, id: &str, labels: &Tags) {
        if let Some((d, _)) = self.lock().get_mut(id) {
            d.tags.extend(labels);
        }
    }

    /// Forgets an instance (it was destroyed, or never became one).
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Completes EC2's listing `listed` (instances carrying `tags`) with remembered instances
    /// it misses; forgets those it has and those older than [`RECENT_TTL`].
    pub fn merge(&self, listed: &mut Vec<Description>, tags: &Tags, now: Instant) {
        let mut launched = self.lock();
        launched.retain(|id, (_, at)| {
            now.saturating_duration_since(*at) < RECENT_TTL && !listed.iter().any(|d| d.id == *id)
        });
        let mut missing: Vec<&Description> = launched
            .values()
            .map(|(d, _)| d)
            .filter(|d| tags_match(&d.tags, tags))
            .collect();
        missing.sort_by(|a, b| a.id.cmp(&b.id));
        listed.extend(missing.into_iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: &str, group: &str) -> Description {
        Description {
            id: id.into(),
            tags: Tags::from([("infrakit.group", group)]),
            ..Description::default()
        }
    }

    fn group(g: &str) -> Tags {
        Tags::from([("infrakit.group", g)])
    }

    #[test]
    fn launched_instances_fill_in_until_listed_or_stale() {
        let recent = Recent::default();
        let t0 = Instant::now();
        recent.launched(d("i-1", "a"), t0);
        recent.launched(d("i-2", "b"), t0);

        let mut listed = vec![];
        recent.merge(&mut listed, &group("a"), t0);
        assert_eq!(listed, vec![d("i-1", "a")], "only matching tags");

        // Once EC2 lists it, EC2 is believed.
        let mut listed = vec![d("i-1", "a")];
        recent.merge(&mut listed, &group("a"), t0 + Duration::from_secs(1));
        assert_eq!(listed.len(), 1);
        let mut listed = vec![];
        recent.merge(&mut listed, &group("a"), t0 + Duration::from_secs(2));
        assert!(listed.is_empty(), "listed once, then gone: gone");

        // Not listed for too long: forgotten.
        let mut listed = vec![];
        recent.merge(&mut listed, &Tags::new(), t0 + RECENT_TTL);
        assert!(listed.is_empty());
    }

    #[test]
    fn labels_and_destroys_apply() {
        let recent = Recent::default();
        let t0 = Instant::now();
        recent.launched(d("i-1", "a"), t0);
        recent.labelled("i-1", &Tags::from([("role", "db")]));
        let mut listed = vec![];
        recent.merge(&mut listed, &Tags::from([("role", "db")]), t0);
        assert_eq!(listed.len(), 1);
        recent.forget("i-1");
        let mut listed = vec![];
        recent.merge(&mut listed, &Tags::new(), t0);
        assert!(listed.is_empty());
    }
}
