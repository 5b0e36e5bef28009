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

#[cfg(test)]
mod tests {
    use super::*;
    use infrakit_spi::{Allocation, Index, Result, Spec};
    use std::sync::Mutex as StdMutex;

    /// A flavor that records the watches it is asked to set, and may refuse them.
    #[derive(Default)]
    struct Watching {
        refuses: bool,
        set: StdMutex<Vec<(String, usize)>>,
    }

    #[async_trait::async_trait]
    impl Flavor for Watching {
        async fn validate(&self, _: &Value, _: &Allocation) -> Result<()> {
            Ok(())
        }
        async fn prepare(&self, _: &Value, s: Spec, _: &Allocation, _: &Index) -> Result<Spec> {
            Ok(s)
        }
        async fn healthy(&self, _: &Value, _: &Description) -> Result<Health> {
            Ok(Health::Healthy)
        }
        async fn drain(&self, _: &Value, _: &Description) -> Result<()> {
            Ok(())
        }
        async fn watch_health(
            &self,
            _: &Value,
            watch: &str,
            instances: &[&Description],
            _: Duration,
        ) -> Result<bool> {
            self.set
                .lock()
                .unwrap()
                .push((watch.to_string(), instances.len()));
            Ok(!self.refuses)
        }
    }

    fn listing(n: usize) -> (Vec<Description>, Vec<u64>) {
        let d: Vec<Description> = (0..n)
            .map(|i| Description {
                id: format!("i-{i}"),
                ..Description::default()
            })
            .collect();
        let prints = (0..n as u64).collect();
        (d, prints)
    }

    fn keep<'a>(feed: &'a HealthFeed, flavor: &'a Watching) -> Keep<'a> {
        Keep {
            feed,
            flavor,
            plugin: "flavor",
            properties: &Value::Null,
            group: "web",
            timeout: Duration::from_secs(1),
        }
    }

    fn taken(f: &Watching) -> Vec<(String, usize)> {
        std::mem::take(&mut *f.set.lock().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn watches_are_set_in_chunks_once_the_feed_is_live_and_renewed_before_their_lease() {
        let (feed, flavor, mut w) = (
            HealthFeed::default(),
            Watching::default(),
            Watcher::default(),
        );
        let (d, p) = listing(2_500);
        let now = Instant::now();
        assert_eq!(
            w.keep(keep(&feed, &flavor), &d, &p, now).await,
            Pushing::Asking { forget: false },
            "nothing is heard yet: ask"
        );
        assert!(
            feed.wanted.load(Ordering::SeqCst),
            "the follower is asked to subscribe"
        );
        assert!(
            taken(&flavor).is_empty(),
            "no watch before the subscription"
        );

        feed.subscribed();
        assert_eq!(
            w.keep(keep(&feed, &flavor), &d, &p, now).await,
            Pushing::Asking { forget: true },
            "a new subscription: every verdict is asked for once more"
        );
        assert_eq!(
            taken(&flavor),
            vec![
                ("web/0".to_string(), 1_000),
                ("web/1".to_string(), 1_000),
                ("web/2".to_string(), 500)
            ]
        );
        assert_eq!(
            w.keep(keep(&feed, &flavor), &d, &p, now).await,
            Pushing::Live
        );
        assert!(
            taken(&flavor).is_empty(),
            "nothing changed: nothing is sent"
        );

        // One instance changes: only its chunk is sent again.
        let mut p2 = p.clone();
        p2[1_500] = 99_999;
        assert_eq!(
            w.keep(keep(&feed, &flavor), &d, &p2, now).await,
            Pushing::Live
        );
        assert_eq!(taken(&flavor), vec![("web/1".to_string(), 1_000)]);

        // Fewer instances: the last chunk's watch ends.
        let (small, sp) = listing(1_200);
        w.keep(keep(&feed, &flavor), &small, &sp, now).await;
        assert_eq!(
            taken(&flavor),
            vec![("web/1".to_string(), 200), ("web/2".to_string(), 0)]
        );

        assert_eq!(w.next_renewal(), Some(now + RENEW));
        tokio::time::advance(RENEW).await;
        w.keep(keep(&feed, &flavor), &small, &sp, Instant::now())
            .await;
        assert_eq!(taken(&flavor).len(), 2, "every watch renewed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_flavor_that_cannot_watch_is_asked_on_its_cadence_and_asked_again_later() {
        let feed = HealthFeed::default();
        let flavor = Watching {
            refuses: true,
            ..Watching::default()
        };
        let mut w = Watcher::default();
        let (d, p) = listing(10);
        feed.subscribed();
        let now = Instant::now();
        assert!(matches!(
            w.keep(keep(&feed, &flavor), &d, &p, now).await,
            Pushing::Asking { .. }
        ));
        assert!(
            !feed.wanted.load(Ordering::SeqCst),
            "no events wanted from it"
        );
        taken(&flavor);
        w.keep(keep(&feed, &flavor), &d, &p, now).await;
        assert!(taken(&flavor).is_empty(), "not asked again at once");
        tokio::time::advance(ASK_AGAIN).await;
        w.keep(keep(&feed, &flavor), &d, &p, Instant::now()).await;
        assert_eq!(taken(&flavor).len(), 1, "asked again after a while");
    }
}
