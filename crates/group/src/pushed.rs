//! Health pushed by the flavor: a flavor with a probe that serves `FlavorHealth.Watch` probes a
//! group's instances on its own clock and publishes only the changes of verdict, so the
//! controller neither asks on every probe interval nor wakes while nothing changes.
//!
//! [`HealthFeed`] is shared with the health follower ([`crate::follow::follow_health`]), which
//! subscribes to the flavor's `/flavor/health/<group>/` events once a pass wants them and puts
//! each verdict it hears in an inbox. [`Watcher`] belongs to the control loop: while the feed
//! is live it keeps the flavor watching the listed instances (in chunks of [`CHUNK`], each
//! watch named `<group>/<chunk>`, renewed before its lease ends and whenever its instances
//! change), and tells the pass to trust remembered verdicts for the resync interval instead of
//! the probe's interval. Anything that could have lost an event (the subscription starting
//! again, a lagging subscriber) forgets every verdict, so the next pass asks for all of them
//! (list, then watch, as informers do). A flavor that cannot watch, or a feed that is not live,
//! leaves the clock as it was: verdicts are asked for on the probe's interval.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

use infrakit_spi::{Description, Flavor, Health};

/// Most instances in one watch.
pub(crate) const CHUNK: usize = 1_000;
/// How long a watch lasts without renewal.
pub(crate) const LEASE: Duration = Duration::from_secs(60);
/// How long after a watch was set it is renewed.
const RENEW: Duration = Duration::from_secs(20);
/// How long a flavor that said it cannot watch is not asked again.
const ASK_AGAIN: Duration = Duration::from_secs(30);

/// What the health follower hears, for the control loop.
#[derive(Debug, Default)]
pub(crate) struct HealthFeed {
    wanted: AtomicBool,
    wanted_changed: Notify,
    live: AtomicBool,
    gap: AtomicBool,
    inbox: Mutex<HashMap<String, Health>>,
}

impl HealthFeed {
    /// Whether the control loop wants the flavor's health events (it does while its flavor
    /// has a probe and has not said it cannot watch).
    pub fn want(&self, yes: bool) {
        if self.wanted.swap(yes, Ordering::SeqCst) != yes {
            self.wanted_changed.notify_waiters();
        }
    }

    /// Waits until the control loop wants health events.
    pub async fn wanted(&self) {
        loop {
            let changed = self.wanted_changed.notified();
            if self.wanted.load(Ordering::SeqCst) {
                return;
            }
            changed.await;
        }
    }

    /// A subscription is live from now on; what happened before it was missed.
    pub fn subscribed(&self) {
        self.gap.store(true, Ordering::SeqCst);
        self.live.store(true, Ordering::SeqCst);
    }

    /// The subscription ended or could not start.
    pub fn lost(&self) {
        self.live.store(false, Ordering::SeqCst);
        self.gap.store(true, Ordering::SeqCst);
    }

    /// The flavor said instance `id` is now `health`.
    pub fn push(&self, id: String, health: Health) {
        self.inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, health);
    }

    /// The verdicts heard since the last call, latest per instance.
    pub fn drain(&self) -> HashMap<String, Health> {
        std::mem::take(&mut *self.inbox.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    fn take_gap(&self) -> bool {
        self.gap.swap(false, Ordering::SeqCst)
    }
}

/// The watches one group keeps on its flavor.
#[derive(Debug, Default)]
pub(crate) struct Watcher {
    /// The flavor plugin and properties the watches are for.
    of: Option<(String, Value)>,
    /// A digest of each watched chunk's instances.
    chunks: Vec<u64>,
    /// When every watch was last renewed.
    renewed: Option<Instant>,
    /// Set when the flavor said it cannot watch: ask again from then on.
    refused_until: Option<Instant>,
}

/// What a pass needs to keep its watches.
pub(crate) struct Keep<'a> {
    pub feed: &'a HealthFeed,
    pub flavor: &'a dyn Flavor,
    pub plugin: &'a str,
    pub properties: &'a Value,
    pub group: &'a str,
    pub timeout: Duration,
}

/// What [`Watcher::keep`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushing {
    /// The flavor watches every listed instance and its events are heard: remembered verdicts
    /// hold until an event or the resync interval.
    Live,
    /// Verdicts are asked for on the flavor's cadence; with `forget`, the remembered ones may
    /// have missed a change and must all be asked for again.
    Asking { forget: bool },
}

impl Watcher {
    /// Keeps the flavor watching `descriptions` (whose fingerprints are `prints`) at `now`.
    pub async fn keep(
        &mut self,
        k: Keep<'_>,
        descriptions: &[Description],
        prints: &[u64],
        now: Instant,
    ) -> Pushing {
        let of = (k.plugin.to_string(), k.properties.clone());
        if self.of.as_ref() != Some(&of) {
            *self = Watcher {
                of: Some(of),
                ..Watcher::default()
            };
        }
        if self.refused_until.is_some_and(|t| now < t) {
            k.feed.want(false);
            return Pushing::Asking { forget: false };
        }
        k.feed.want(true);
        let forget = k.feed.take_gap();
        if forget {
            // Watches set before the gap may have published to nobody: set them again.
            self.chunks.clear();
        }
        if !k.feed.live() {
            return Pushing::Asking { forget };
        }
        let renew = self.renewed.is_none_or(|t| now >= t + RENEW);
        let digests: Vec<u64> = descriptions
            .chunks(CHUNK)
            .zip(prints.chunks(CHUNK))
            .map(|(d, p)| digest(d, p))
            .collect();
        for (i, chunk) in descriptions.chunks(CHUNK).enumerate() {
            if !renew && self.chunks.get(i) == Some(&digests[i]) {
                continue;
            }
            let chunk: Vec<&Description> = chunk.iter().collect();
            match self.set(&k, i, &chunk).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(
                        plugin = k.plugin,
                        "flavor cannot watch health; asking on its cadence"
                    );
                    self.refused_until = Some(now + ASK_AGAIN);
                    self.chunks.clear();
                    k.feed.want(false);
                    return Pushing::Asking { forget };
                }
                Err(e) => {
                    tracing::debug!(plugin = k.plugin, error = %e, "cannot set a health watch; asking on the flavor's cadence");
                    self.chunks.clear();
                    return Pushing::Asking { forget };
                }
            }
        }
        for i in digests.len()..self.chunks.len() {
            // Fewer instances than chunks watched: end the rest (they end anyway with their
            // lease).
            let _ = self.set(&k, i, &[]).await;
        }
        self.chunks = digests;
        if renew {
            self.renewed = Some(now);
        }
        // Verdicts heard before the gap was taken are as good as any: the pass asks for all.
        if forget {
            return Pushing::Asking { forget };
        }
        Pushing::Live
    }

    /// When the watches must be renewed, if any are kept.
    pub fn next_renewal(&self) -> Option<Instant> {
        if self.chunks.is_empty() {
            return None;
        }
        self.renewed.map(|t| t + RENEW)
    }

    /// Sets watch `<group>/<i>` to `chunk`, within the timeout.
    async fn set(
        &self,
        k: &Keep<'_>,
        i: usize,
        chunk: &[&Description],
    ) -> infrakit_spi::Result<bool> {
        let name = format!("{}/{i}", k.group);
        tokio::time::timeout(
            k.timeout,
            k.flavor.watch_health(k.properties, &name, chunk, LEASE),
        )
        .await
        .map_err(|_| {
            infrakit_spi::Error::plugin(format!(
                "flavor plugin '{}' did not set a health watch within {:?}",
                k.plugin, k.timeout
            ))
        })?
    }
}

/// A digest of a chunk: which instances, with which descriptions.
fn digest(descriptions: &[Description], prints: &[u64]) -> u64 {
    use std::hash::BuildHasher;
    let hasher = foldhash::fast::FixedState::with_seed(0x3a7c);
    let ids: Vec<&str> = descriptions.iter().map(|d| d.id.as_str()).collect();
    hasher.hash_one((ids, prints))
}
