//! Health watches: the flavor probes the instances a caller gave it on the probe's own clock and
//! publishes only the changes of verdict (`FlavorHealth.Watch`).
//!
//! Each watch has a name chosen by the caller (our group controller uses `<group>/<chunk>`), the
//! instances to watch, their properties and a lease. One task per watch probes every instance
//! once per interval (through the same [`HealthCache`] as `Healthy`, so a probe is never run
//! twice in an interval) and publishes an [`Event::health`] for each instance whose verdict
//! differs from the last one published, the first verdict included. Calling again replaces the
//! instances and renews the lease; a watch not renewed within its lease, or given no
//! instances, ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use infrakit_spi::{Description, Event, Health};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::cache::HealthCache;
use crate::properties::VanillaProperties;

/// Probes run at once by one watch.
const PROBES_AT_ONCE: usize = 64;
/// Events kept for subscribers that fall behind.
const EVENTS_BUFFERED: usize = 4096;

/// What one watch watches.
#[derive(Debug)]
struct Watched {
    instances: Arc<Vec<Description>>,
    properties: Arc<VanillaProperties>,
    expires: Instant,
    /// Changes each time the watch is replaced, so a task left from an ended watch of the
    /// same name stops.
    generation: u64,
}

/// The watches of one flavor and where their events go.
#[derive(Debug)]
pub(crate) struct Watches {
    watches: Mutex<HashMap<String, Watched>>,
    events: broadcast::Sender<Event>,
    next_generation: std::sync::atomic::AtomicU64,
}

impl Default for Watches {
    fn default() -> Self {
        Watches {
            watches: Mutex::default(),
            events: broadcast::channel(EVENTS_BUFFERED).0,
            next_generation: Default::default(),
        }
    }
}

impl Watches {
    /// A receiver of every health event published from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Starts, replaces or (with no instances) ends watch `name`. `judge` is the flavor's
    /// verdict on one instance.
    pub(crate) fn set(
        self: &Arc<Self>,
        cache: &Arc<HealthCache>,
        name: &str,
        properties: Arc<VanillaProperties>,
        instances: Vec<Description>,
        lease: Duration,
    ) {
        let mut watches = self.lock();
        if instances.is_empty() {
            watches.remove(name);
            return;
        }
        let running = watches.get(name).map(|w| w.generation);
        let generation = match running {
            Some(g) => g,
            None => self
                .next_generation
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        watches.insert(
            name.to_string(),
            Watched {
                instances: Arc::new(instances),
                properties,
                expires: Instant::now() + lease,
                generation,
            },
        );
        if running.is_none() {
            tokio::spawn(run(
                self.clone(),
                cache.clone(),
                name.to_string(),
                generation,
            ));
        }
    }

    /// How many watches are running.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Watched>> {
        self.watches.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What watch `name` of `generation` watches now, or `None` when it has ended (expired
    /// watches are removed here).
    fn current(
        &self,
        name: &str,
        generation: u64,
    ) -> Option<(Arc<Vec<Description>>, Arc<VanillaProperties>)> {
        let mut watches = self.lock();
        let w = watches.get(name).filter(|w| w.generation == generation)?;
        if Instant::now() >= w.expires {
            tracing::debug!(watch = name, "health watch not renewed; ending it");
            watches.remove(name);
            return None;
        }
        Some((w.instances.clone(), w.properties.clone()))
    }
}

/// One watch's probing loop: a round of probes per interval until the watch ends.
async fn run(watches: Arc<Watches>, cache: Arc<HealthCache>, name: String, generation: u64) {
    let mut published: HashMap<String, Health> = HashMap::new();
    while let Some((instances, properties)) = watches.current(&name, generation) {
        let Some(probe) = properties.health.as_ref() else {
            // Nothing to probe: verdicts change only with descriptions, which the caller sees.
            watches.lock().remove(&name);
            return;
        };
        let started = Instant::now();
        let verdicts: Vec<(usize, Health)> = futures::stream::iter(0..instances.len())
            .map(|i| {
                let (cache, instances, properties) =
                    (cache.clone(), instances.clone(), properties.clone());
                async move {
                    let probe = properties.health.as_ref().expect("checked above");
                    (i, crate::verdict::judge(&cache, probe, &instances[i]).await)
                }
            })
            .buffer_unordered(PROBES_AT_ONCE)
            .collect()
            .await;
        let mut seen = HashMap::with_capacity(instances.len());
        for (i, health) in verdicts {
            let id = &instances[i].id;
            if published.get(id) != Some(&health) {
                let message = format!("instance {id} is {health}");
                // Nobody listening is not an error: the caller asks when it subscribes.
                let _ = watches
                    .events
                    .send(Event::health(&name, id, health, message));
            }
            seen.insert(id.clone(), health);
        }
        published = seen;
        tokio::time::sleep_until(started + probe.interval).await;
    }
}
