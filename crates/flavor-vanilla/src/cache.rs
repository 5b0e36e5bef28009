//! The last probe result of each instance, so that frequent `Healthy` calls probe at most once
//! per interval.
//!
//! The map itself sits behind a short-lived `std` mutex that is never held across an `.await`.
//! Each instance has its own async slot, held while that instance is probed: concurrent calls for
//! the same instance wait for the probe in flight and share its result, while calls for other
//! instances go ahead. Entries nobody asked about for ten intervals (at least
//! [`MIN_IDLE`]) are dropped, and the map never holds more than [`MAX_ENTRIES`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use infrakit_spi::{Description, Health};
use tokio::time::Instant;

use crate::properties::HealthProbe;

/// Shortest time an entry is kept after it was last asked about.
pub(crate) const MIN_IDLE: Duration = Duration::from_secs(30);
/// Most instances remembered at once; past this, the longest-unasked entry goes.
pub(crate) const MAX_ENTRIES: usize = 10_000;
/// Sweeps for idle entries happen at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A probe result and when it was obtained.
#[derive(Debug, Clone)]
struct Cached {
    probe: HealthProbe,
    health: Health,
    at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

#[derive(Debug)]
struct Entry {
    slot: Slot,
    last_asked: Instant,
    keep_for: Duration,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<String, Entry>,
    last_sweep: Option<Instant>,
}

/// Last probe results by instance ID.
#[derive(Debug, Default)]
pub(crate) struct HealthCache {
    entries: Mutex<Entries>,
}

impl HealthCache {
    /// The health of `instance` according to `probe`: the cached result while it is younger than
    /// the probe's interval, otherwise a fresh probe.
    pub(crate) async fn health(&self, probe: &HealthProbe, instance: &Description) -> Health {
        let slot = self.slot(&instance.id, probe.interval);
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref() {
            if c.probe == *probe && c.at.elapsed() < probe.interval {
                return c.health;
            }
        }
        let health = probe.health(instance).await;
        *cached = Some(Cached {
            probe: probe.clone(),
            health,
            at: Instant::now(),
        });
        health
    }

    /// The slot of instance `id`, created if needed; marks it as asked about now.
    fn slot(&self, id: &str, interval: Duration) -> Slot {
        let now = Instant::now();
        let keep_for = interval.saturating_mul(10).max(MIN_IDLE);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let due = entries
            .last_sweep
            .is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY);
        if due {
            entries
                .map
                .retain(|_, e| now.duration_since(e.last_asked) < e.keep_for);
            entries.last_sweep = Some(now);
        }
        if let Some(entry) = entries.map.get_mut(id) {
            entry.last_asked = now;
            entry.keep_for = keep_for;
            return entry.slot.clone();
        }
        if entries.map.len() >= MAX_ENTRIES {
            let oldest = entries
                .map
                .iter()
                .min_by_key(|(_, e)| e.last_asked)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                entries.map.remove(&k);
            }
        }
        let slot = Slot::default();
        entries.map.insert(
            id.to_string(),
            Entry {
                slot: slot.clone(),
                last_asked: now,
                keep_for,
            },
        );
        slot
    }

    /// How many instances are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Probes do real I/O, which paused time would turn into instant timeouts; these tests work
    // on the slots directly.
    #[tokio::test(start_paused = true)]
    async fn idle_entries_are_dropped() {
        let cache = HealthCache::default();
        let second = Duration::from_secs(1);
        cache.slot("a", second);
        cache.slot("b", second);
        assert_eq!(cache.len(), 2);
        tokio::time::advance(MIN_IDLE / 2).await;
        cache.slot("b", second);
        assert_eq!(cache.len(), 2, "nothing is idle long enough yet");
        tokio::time::advance(MIN_IDLE / 2 + second).await;
        cache.slot("b", second);
        assert_eq!(cache.len(), 1, "a was not asked about for MIN_IDLE");
    }

    #[tokio::test(start_paused = true)]
    async fn long_intervals_keep_entries_for_ten_intervals() {
        let cache = HealthCache::default();
        let minute = Duration::from_secs(60);
        cache.slot("a", minute);
        tokio::time::advance(minute * 9).await;
        cache.slot("b", minute);
        assert_eq!(cache.len(), 2);
        tokio::time::advance(minute * 2).await;
        cache.slot("b", minute);
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn asking_again_returns_the_same_slot() {
        let cache = HealthCache::default();
        let a = cache.slot("a", Duration::from_secs(1));
        let again = cache.slot("a", Duration::from_secs(1));
        assert!(Arc::ptr_eq(&a, &again));
    }

    #[tokio::test(start_paused = true)]
    async fn size_is_capped() {
        let cache = HealthCache::default();
        for i in 0..MAX_ENTRIES + 5 {
            cache.slot(&format!("i-{i}"), Duration::from_secs(1));
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
    }
}
