//! An in-memory instance plugin for tests and benchmarks.
//!
//! Instances are entries in a map: nothing is started anywhere. The simulator can delay
//! provisioning and destruction ([`SimulatorConfig`]), fail a share of provisions at random, and
//! kill instances on demand ([`Simulator::kill`], [`Simulator::kill_random`]), publishing an
//! `exited` event for each death as a real plugin would.
//!
//! Each instance has a simulated provider state, reported as `{"State": ...}` by
//! `DescribeInstances` with properties. It starts as the string field `State` of the provisioned
//! spec's properties (`{"State": "dead"}`), [`DEFAULT_STATE`] (`running`) without one, and can be
//! changed at any time with [`Simulator::set_state`] and [`Simulator::set_state_where`], e.g. to
//! make instances unhealthy for the vanilla flavor (`exited`, `dead`, `stopped`, `terminated`).
//!
//! It is built to hold 100,000 instances cheaply: an instance is a numeric ID (`sim-<n>`), a
//! reference to a tag set shared with every other instance carrying exactly the same tags, an
//! optional logical ID and the index of its state name in a table of the names in use.
//! Instances are indexed by their `infrakit.group` tag, so describing one group does not scan the
//! others.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use infrakit_spi::event::{Event, Publisher};
use infrakit_spi::instance::{tags_match, Properties, GROUP_TAG};
use infrakit_spi::{Description, DestroyContext, Error, Instance, Result, Spec, Tags};
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// Prefix of every simulated instance ID.
pub const ID_PREFIX: &str = "sim-";

/// Capacity of the event channel; slow subscribers lose the oldest events beyond this.
pub const EVENT_CAPACITY: usize = 1024;

/// The simulated state of an instance whose spec names none.
pub const DEFAULT_STATE: &str = "running";

/// How the simulated infrastructure behaves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimulatorConfig {
    /// How long `Provision` takes (a `tokio::time::sleep`, so paused-time tests skip it).
    pub provision_latency: Duration,
    /// How long `Destroy` takes.
    pub destroy_latency: Duration,
    /// Probability in `0..=1` that a provision fails (after its latency).
    pub failure_rate: f64,
}

/// One simulated instance: 32 bytes plus its share of a tag set.
#[derive(Debug, Clone)]
struct Entry {
    tags: Arc<Tags>,
    logical_id: Option<Box<str>>,
    /// Index of the instance's state name in [`StateNames`].
    state: u32,
}

/// The distinct state names ever used, each stored once; instances hold an index. Index 0 is
/// [`DEFAULT_STATE`]. Names are few in practice and are kept for the simulator's lifetime.
#[derive(Debug)]
struct StateNames {
    names: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u32>,
}

impl Default for StateNames {
    fn default() -> Self {
        let running: Arc<str> = Arc::from(DEFAULT_STATE);
        StateNames {
            names: vec![running.clone()],
            index: HashMap::from([(running, 0)]),
        }
    }
}

impl StateNames {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = u32::try_from(self.names.len()).expect("fewer than 2^32 state names");
        let name: Arc<str> = Arc::from(name);
        self.names.push(name.clone());
        self.index.insert(name, i);
        i
    }

    fn name(&self, i: u32) -> &str {
        self.names.get(i as usize).map_or(DEFAULT_STATE, |n| n)
    }
}

/// The simulator's keys are its own: a fast hasher.
type Hasher = foldhash::fast::RandomState;

#[derive(Debug, Default)]
struct State {
    instances: HashMap<u64, Entry, Hasher>,
    /// Every distinct tag set in use, shared by the instances that carry it.
    tag_sets: HashSet<Arc<Tags>, Hasher>,
    /// Instance IDs by the value of their `infrakit.group` tag, in order.
    by_group: HashMap<String, BTreeSet<u64>, Hasher>,
    /// Names of simulated states.
    states: StateNames,
}

impl State {
    /// The IDs of the instances carrying every one of `tags`, in order.
    fn matching(&self, tags: &Tags) -> Vec<u64> {
        // The group index answers the controller's usual question alone.
        if let (1, Some(group)) = (tags.len(), tags.get(GROUP_TAG)) {
            return self
                .by_group
                .get(group)
                .map(|ids| ids.iter().copied().collect())
                .unwrap_or_default();
        }
        // Whether each distinct tag set matches, worked out once per set.
        let mut verdicts: HashMap<*const Tags, bool, Hasher> = HashMap::default();
        let mut matches = |e: &Entry| {
            *verdicts
                .entry(Arc::as_ptr(&e.tags))
                .or_insert_with(|| tags_match(&e.tags, tags))
        };
        match tags.get(GROUP_TAG) {
            Some(group) => match self.by_group.get(group) {
                Some(ids) => ids
                    .iter()
                    .filter(|id| self.instances.get(id).is_some_and(&mut matches))
                    .copied()
                    .collect(),
                None => Vec::new(),
            },
            None => {
                let mut ids: Vec<u64> = self
                    .instances
                    .iter()
                    .filter(|(_, e)| matches(e))
                    .map(|(id, _)| *id)
                    .collect();
                ids.sort_unstable();
                ids
            }
        }
    }

    fn intern(&mut self, tags: Tags) -> Arc<Tags> {
        if let Some(shared) = self.tag_sets.get(&tags) {
            return shared.clone();
        }
        let shared = Arc::new(tags);
        self.tag_sets.insert(shared.clone());
        shared
    }

    fn insert(&mut self, id: u64, entry: Entry) {
        if let Some(group) = entry.tags.get(GROUP_TAG) {
            self.by_group
                .entry(group.to_string())
                .or_default()
                .insert(id);
        }
        self.instances.insert(id, entry);
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.instances.remove(&id)?;
        if let Some(group) = entry.tags.get(GROUP_TAG) {
            if let Some(ids) = self.by_group.get_mut(group) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_group.remove(group);
                }
            }
        }
        // Held by the interner and by this entry only: the tag set is no longer in use.
        if Arc::strong_count(&entry.tags) == 2 {
            self.tag_sets.remove(&*entry.tags);
        }
        Some(entry)
    }
}

/// The simulator. Share it with `Arc` to keep a handle for [`Simulator::kill`] while the group
/// controller uses it as an [`Instance`] plugin.
#[derive(Debug)]
pub struct Simulator {
    provision_latency: Duration,
    destroy_latency: Duration,
    /// `f64` bits of the failure rate, changeable at run time.
    failure_rate: AtomicU64,
    next_id: AtomicU64,
    state: Mutex<State>,
    events: broadcast::Sender<Event>,
}

impl Default for Simulator {
    fn default() -> Self {
        Simulator::new(SimulatorConfig::default())
    }
}

fn parse_id(id: &str) -> Option<u64> {
    id.strip_prefix(ID_PREFIX)?.parse().ok()
}

fn format_id(n: u64) -> String {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n);
    let mut id = String::with_capacity(ID_PREFIX.len() + digits.len());
    id.push_str(ID_PREFIX);
    id.push_str(digits);
    id
}

impl Simulator {
    /// A simulator with no instances.
    pub fn new(config: SimulatorConfig) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Simulator {
            provision_latency: config.provision_latency,
            destroy_latency: config.destroy_latency,
            failure_rate: AtomicU64::new(clamp_rate(config.failure_rate).to_bits()),
            next_id: AtomicU64::new(1),
            state: Mutex::new(State::default()),
            events,
        }
    }

    /// The current configuration.
    pub fn config(&self) -> SimulatorConfig {
        SimulatorConfig {
            provision_latency: self.provision_latency,
            destroy_latency: self.destroy_latency,
            failure_rate: self.failure_rate(),
        }
    }

    /// The probability that a provision fails.
    pub fn failure_rate(&self) -> f64 {
        f64::from_bits(self.failure_rate.load(Ordering::Relaxed))
    }

    /// Changes the probability that a provision fails (clamped to `0..=1`; NaN means 0).
    pub fn set_failure_rate(&self, rate: f64) {
        self.failure_rate
            .store(clamp_rate(rate).to_bits(), Ordering::Relaxed);
    }

    /// Number of live instances.
    pub fn len(&self) -> usize {
        self.lock().instances.len()
    }

    /// True when no instance is alive.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of distinct tag sets in use (instances with identical tags share one).
    pub fn tag_set_count(&self) -> usize {
        self.lock().tag_sets.len()
    }

    /// Changes the simulated state of instance `id` (what `DescribeInstances` reports as
    /// `State`), e.g. to `dead` to make it unhealthy, publishing a `changed` event. Returns
    /// false when there is no such instance.
    pub fn set_state(&self, id: &str, state: &str) -> bool {
        let Some(n) = parse_id(id) else {
            return false;
        };
        let tags = {
            let mut guard = self.lock();
            let st = &mut *guard;
            let Some(entry) = st.instances.get_mut(&n) else {
                return false;
            };
            entry.state = st.states.intern(state);
            entry.tags.clone()
        };
        self.publish("changed", n, &tags, state);
        true
    }

    /// Changes the simulated state of every instance carrying all of `tags` (every instance when
    /// `tags` is empty), publishing a `changed` event for each. Returns how many matched.
    pub fn set_state_where(&self, tags: &Tags, state: &str) -> usize {
        let changed: Vec<(u64, Arc<Tags>)> = {
            let mut guard = self.lock();
            let st = &mut *guard;
            let ids = st.matching(tags);
            let index = st.states.intern(state);
            ids.iter()
                .filter_map(|id| {
                    let entry = st.instances.get_mut(id)?;
                    entry.state = index;
                    Some((*id, entry.tags.clone()))
                })
                .collect()
        };
        for (id, tags) in &changed {
            self.publish("changed", *id, tags, state);
        }
        changed.len()
    }

    /// The simulated state of instance `id`, if it exists.
    pub fn state(&self, id: &str) -> Option<String> {
        let n = parse_id(id)?;
        let st = self.lock();
        let entry = st.instances.get(&n)?;
        Some(st.states.name(entry.state).to_string())
    }

    /// Kills instance `id` as if it had died, publishing an `exited` event.
    /// Returns false when there is no such instance.
    pub fn kill(&self, id: &str) -> bool {
        let Some(n) = parse_id(id) else {
            return false;
        };
        let removed = self.lock().remove(n);
        match removed {
            Some(entry) => {
                self.publish_exit(n, &entry);
                true
            }
            None => false,
        }
    }

    /// Kills up to `n` instances chosen at random; returns the IDs of those killed.
    pub fn kill_random(&self, n: usize) -> Vec<String> {
        let killed: Vec<(u64, Entry)> = {
            let mut state = self.lock();
            let ids: Vec<u64> = state.instances.keys().copied().collect();
            let n = n.min(ids.len());
            let picks = rand::seq::index::sample(&mut rand::rng(), ids.len(), n);
            picks
                .into_iter()
                .filter_map(|i| state.remove(ids[i]).map(|e| (ids[i], e)))
                .collect()
        };
        killed
            .iter()
            .map(|(id, entry)| {
                self.publish_exit(*id, entry);
                format_id(*id)
            })
            .collect()
    }

    fn publish_exit(&self, id: u64, entry: &Entry) {
        tracing::debug!(id = %format_id(id), "simulated instance exited");
        self.publish("exited", id, &entry.tags, "simulated instance killed");
    }

    /// Publishes event `kind` (`exited`, `changed`) about instance `id`.
    fn publish(&self, kind: &str, id: u64, tags: &Tags, message: &str) {
        let event = Event::instance(kind, &format_id(id), message, json!({"Tags": tags}));
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The initial state named by spec properties: their string field `State`, if any.
fn initial_state(properties: &Value) -> Result<Option<&str>> {
    match properties.get("State") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s)),
        Some(other) => Err(Error::invalid(
            "Properties.State",
            format!("must be a non-empty string naming the simulated state, got {other}"),
        )),
    }
}

fn clamp_rate(rate: f64) -> f64 {
    if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    }
}

impl Publisher for Simulator {
    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

#[async_trait]
impl Instance for Simulator {
    async fn validate(&self, properties: &Value) -> Result<()> {
        initial_state(properties).map(drop)
    }

    async fn provision(&self, spec: Spec) -> Result<String> {
        let initial = initial_state(&spec.properties)?.map(str::to_string);
        if !self.provision_latency.is_zero() {
            tokio::time::sleep(self.provision_latency).await;
        }
        let rate = self.failure_rate();
        if rate > 0.0 && rand::random::<f64>() < rate {
            return Err(Error::plugin("simulated provision failure"));
        }
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        let tags = state.intern(spec.tags);
        let entry = Entry {
            tags,
            logical_id: spec.logical_id.map(String::into_boxed_str),
            state: initial.map_or(0, |s| state.states.intern(&s)),
        };
        state.insert(n, entry);
        Ok(format_id(n))
    }

    async fn label(&self, id: &str, labels: &Tags) -> Result<()> {
        let n = parse_id(id).ok_or_else(|| Error::instance_not_found(id))?;
        let mut state = self.lock();
        let current = state
            .instances
            .get(&n)
            .ok_or_else(|| Error::instance_not_found(id))?;
        let mut tags = (*current.tags).clone();
        tags.extend(labels);
        if tags == *current.tags {
            return Ok(());
        }
        let old = state.remove(n).expect("present under the same lock");
        let tags = state.intern(tags);
        state.insert(
            n,
            Entry {
                tags,
                logical_id: old.logical_id,
                state: old.state,
            },
        );
        Ok(())
    }

    async fn destroy(&self, id: &str, _context: &DestroyContext) -> Result<()> {
        if !self.destroy_latency.is_zero() {
            tokio::time::sleep(self.destroy_latency).await;
        }
        if let Some(n) = parse_id(id) {
            self.lock().remove(n);
        }
        Ok(())
    }

    async fn describe_instances(&self, tags: &Tags, properties: bool) -> Result<Vec<Description>> {
        let state = self.lock();
        // One properties value per state name, cloned into each description.
        let mut props: HashMap<u32, Properties, Hasher> = HashMap::default();
        let ids = state.matching(tags);
        // Sized exactly: a listing of a large group is large.
        let mut out = Vec::with_capacity(ids.len());
        out.extend(ids.into_iter().filter_map(|id| {
            let e = state.instances.get(&id)?;
            Some(Description {
                id: format_id(id),
                logical_id: e.logical_id.as_deref().map(String::from),
                tags: (*e.tags).clone(),
                properties: properties.then(|| {
                    props
                        .entry(e.state)
                        .or_insert_with(|| {
                            Properties::new(&json!({"State": state.states.name(e.state)}))
                        })
                        .clone()
                }),
                created: None,
            })
        }));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn spec(group: &str) -> Spec {
        Spec {
            tags: tags(&[(GROUP_TAG, group), ("infrakit.config.hash", "abc")]),
            ..Spec::default()
        }
    }

    #[tokio::test]
    async fn provision_describe_label_destroy() {
        let sim = Simulator::default();
        let a = sim.provision(spec("a")).await.unwrap();
        let mut pet = spec("b");
        pet.logical_id = Some("db1".into());
        let b = sim.provision(pet).await.unwrap();
        assert!(a.starts_with(ID_PREFIX) && b.starts_with(ID_PREFIX));
        assert_ne!(a, b);
        assert_eq!(sim.len(), 2);

        let all = sim.describe_instances(&Tags::new(), true).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].id, a);
        assert_eq!(
            all[0].properties.as_ref().map(|p| p.to_value()),
            Some(json!({"State": "running"}))
        );
        assert_eq!(all[1].logical_id.as_deref(), Some("db1"));

        let only_b = sim
            .describe_instances(&tags(&[(GROUP_TAG, "b")]), false)
            .await
            .unwrap();
        assert_eq!(only_b.len(), 1);
        assert_eq!(only_b[0].id, b);
        assert_eq!(only_b[0].properties, None);

        sim.label(&b, &tags(&[(GROUP_TAG, "a"), ("x", "1")]))
            .await
            .unwrap();
        let in_a = sim
            .describe_instances(&tags(&[(GROUP_TAG, "a")]), false)
            .await
            .unwrap();
        assert_eq!(
            in_a.len(),
            2,
            "relabelling moves the instance between groups"
        );
        assert_eq!(in_a[1].tags.get("x"), Some("1"));
        assert!(sim
            .describe_instances(&tags(&[(GROUP_TAG, "b")]), false)
            .await
            .unwrap()
            .is_empty());
        let with_x = sim
            .describe_instances(&tags(&[(GROUP_TAG, "a"), ("x", "1")]), false)
            .await
            .unwrap();
        assert_eq!(with_x.len(), 1);
        assert_eq!(with_x[0].id, b);

        assert!(matches!(
            sim.label("sim-999", &Tags::new()).await,
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            sim.label("nope", &Tags::new()).await,
            Err(Error::NotFound { .. })
        ));

        sim.destroy(&a, &DestroyContext::default()).await.unwrap();
        sim.destroy(&a, &DestroyContext::default()).await.unwrap();
        sim.destroy("garbage", &DestroyContext::default())
            .await
            .unwrap();
        let left = sim.describe_instances(&Tags::new(), false).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, b);
    }

    fn states(descriptions: &[Description]) -> Vec<String> {
        descriptions
            .iter()
            .map(|d| d.properties.as_ref().unwrap().field("State").unwrap())
            .collect()
    }

    #[tokio::test]
    async fn the_spec_names_the_initial_state() {
        let sim = Simulator::default();
        let mut dead = spec("a");
        dead.properties = json!({"State": "dead", "Other": 1});
        let dead = sim.provision(dead).await.unwrap();
        let mut plain = spec("a");
        plain.properties = json!({"Note": "no state"});
        let plain = sim.provision(plain).await.unwrap();
        let mut null = spec("a");
        null.properties = json!({"State": null});
        let null = sim.provision(null).await.unwrap();

        let all = sim.describe_instances(&Tags::new(), true).await.unwrap();
        assert_eq!(
            all.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            [dead.as_str(), plain.as_str(), null.as_str()]
        );
        assert_eq!(states(&all), ["dead", "running", "running"]);
        assert_eq!(
            all[0].properties.as_ref().map(|p| p.to_value()),
            Some(json!({"State": "dead"}))
        );
        assert_eq!(sim.state(&dead).as_deref(), Some("dead"));

        for bad in [
            json!({"State": 3}),
            json!({"State": ""}),
            json!({"State": {}}),
        ] {
            match sim.validate(&bad).await.unwrap_err() {
                Error::Invalid { path, .. } => assert_eq!(path, "Properties.State"),
                other => panic!("unexpected error {other}"),
            }
            let mut s = spec("a");
            s.properties = bad;
            assert!(sim.provision(s).await.is_err());
        }
        sim.validate(&json!({"State": "stopped"})).await.unwrap();
        sim.validate(&Value::Null).await.unwrap();
        assert_eq!(sim.len(), 3);
    }

    #[tokio::test]
    async fn set_state_changes_one_instance_and_says_so() {
        let sim = Simulator::default();
        let mut events = sim.subscribe();
        let a = sim.provision(spec("a")).await.unwrap();
        let b = sim.provision(spec("a")).await.unwrap();

        assert!(sim.set_state(&a, "exited"));
        let e = events.try_recv().unwrap();
        assert_eq!(
            (e.topic.as_str(), e.id.as_str()),
            ("/instance/changed", a.as_str())
        );
        assert_eq!(e.data["Tags"][GROUP_TAG], "a");
        for _ in 0..2 {
            let d = sim.describe_instances(&Tags::new(), true).await.unwrap();
            assert_eq!(states(&d), ["exited", "running"], "the state persists");
        }
        // Relabelling keeps the state.
        sim.label(&a, &tags(&[("x", "1")])).await.unwrap();
        assert_eq!(sim.state(&a).as_deref(), Some("exited"));
        assert!(sim.set_state(&a, "running"));
        assert!(sim.set_state(&b, "stopped"));
        let d = sim.describe_instances(&Tags::new(), true).await.unwrap();
        assert_eq!(states(&d), ["running", "stopped"]);

        assert!(!sim.set_state("sim-999", "dead"));
        assert!(!sim.set_state("bogus", "dead"));
        sim.destroy(&b, &DestroyContext::default()).await.unwrap();
        assert!(!sim.set_state(&b, "dead"));
        assert_eq!(sim.state(&b), None);
        let changed = std::iter::from_fn(|| events.try_recv().ok())
            .filter(|e| e.kind == "changed")
            .count();
        assert_eq!(changed, 2, "one event per change that happened");
    }

    #[tokio::test]
    async fn set_state_where_changes_every_match() {
        let sim = Simulator::default();
        let mut events = sim.subscribe();
        let mut in_a = Vec::new();
        for i in 0..6 {
            let id = sim
                .provision(spec(if i % 2 == 0 { "a" } else { "b" }))
                .await
                .unwrap();
            if i % 2 == 0 {
                in_a.push(id);
            }
        }
        sim.label(&in_a[0], &tags(&[("x", "1")])).await.unwrap();

        assert_eq!(
            sim.set_state_where(&tags(&[(GROUP_TAG, "a"), ("x", "1")]), "dead"),
            1
        );
        assert_eq!(
            sim.set_state_where(&tags(&[(GROUP_TAG, "b")]), "stopped"),
            3
        );
        assert_eq!(sim.set_state_where(&tags(&[(GROUP_TAG, "c")]), "dead"), 0);
        assert_eq!(sim.set_state_where(&tags(&[("x", "2")]), "dead"), 0);
        let d = sim.describe_instances(&Tags::new(), true).await.unwrap();
        assert_eq!(
            states(&d),
            ["dead", "stopped", "running", "stopped", "running", "stopped"]
        );

        assert_eq!(sim.set_state_where(&Tags::new(), "terminated"), 6);
        let d = sim
            .describe_instances(&tags(&[(GROUP_TAG, "a")]), true)
            .await
            .unwrap();
        assert_eq!(states(&d), ["terminated"; 3]);
        let changed: Vec<String> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|e| e.kind)
            .collect();
        assert_eq!(changed, vec!["changed".to_string(); 1 + 3 + 6]);
    }

    #[tokio::test]
    async fn identical_tag_sets_are_shared_and_released() {
        let sim = Simulator::default();
        let mut ids = Vec::new();
        for i in 0..10 {
            ids.push(
                sim.provision(spec(if i % 2 == 0 { "a" } else { "b" }))
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(sim.tag_set_count(), 2);
        sim.label(&ids[0], &tags(&[("x", "1")])).await.unwrap();
        assert_eq!(sim.tag_set_count(), 3);
        for id in &ids {
            sim.destroy(id, &DestroyContext::default()).await.unwrap();
        }
        assert_eq!(sim.tag_set_count(), 0);
        assert!(sim.is_empty());
    }

    #[tokio::test]
    async fn kill_publishes_exited_and_removes_the_instance() {
        let sim = Simulator::default();
        let mut events = sim.subscribe();
        let a = sim.provision(spec("a")).await.unwrap();
        let b = sim.provision(spec("a")).await.unwrap();

        assert!(sim.kill(&a));
        let e = events.try_recv().unwrap();
        assert_eq!(e.kind, "exited");
        assert_eq!(e.topic, "/instance/exited");
        assert_eq!(e.id, a);
        assert_eq!(e.data["Tags"][GROUP_TAG], json!("a"));
        let left = sim.describe_instances(&Tags::new(), false).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, b);

        assert!(!sim.kill(&a));
        assert!(!sim.kill("bogus"));
        assert!(
            events.try_recv().is_err(),
            "no event for a missing instance"
        );

        // Destroy is not a death: no event.
        sim.destroy(&b, &DestroyContext::default()).await.unwrap();
        assert!(events.try_recv().is_err());
    }

    #[tokio::test]
    async fn kill_random_kills_distinct_instances() {
        let sim = Simulator::default();
        for _ in 0..20 {
            sim.provision(spec("a")).await.unwrap();
        }
        let mut events = sim.subscribe();
        let killed = sim.kill_random(5);
        assert_eq!(killed.len(), 5);
        assert_eq!(killed.iter().collect::<HashSet<_>>().len(), 5);
        assert_eq!(sim.len(), 15);
        let left: HashSet<String> = sim
            .describe_instances(&Tags::new(), false)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        for id in &killed {
            assert!(!left.contains(id));
            assert_eq!(&events.try_recv().unwrap().id, id);
        }
        assert_eq!(sim.kill_random(100).len(), 15);
        assert!(sim.is_empty());
        assert!(sim.kill_random(1).is_empty());
    }

    #[tokio::test]
    async fn failure_rate_controls_provision_failures() {
        let sim = Simulator::new(SimulatorConfig {
            failure_rate: 1.0,
            ..SimulatorConfig::default()
        });
        for _ in 0..20 {
            assert!(sim.provision(spec("a")).await.is_err());
        }
        assert!(sim.is_empty());

        sim.set_failure_rate(0.5);
        let mut failures = 0;
        for _ in 0..1000 {
            if sim.provision(spec("a")).await.is_err() {
                failures += 1;
            }
        }
        // Binomial(1000, 0.5): ±150 is more than nine standard deviations.
        assert!((350..=650).contains(&failures), "{failures} failures");
        assert_eq!(sim.len(), 1000 - failures);

        sim.set_failure_rate(f64::NAN);
        assert_eq!(sim.failure_rate(), 0.0);
        sim.set_failure_rate(7.0);
        assert_eq!(sim.config().failure_rate, 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn latency_is_simulated_with_tokio_time() {
        let sim = Simulator::new(SimulatorConfig {
            provision_latency: Duration::from_secs(10),
            destroy_latency: Duration::from_secs(3),
            failure_rate: 0.0,
        });
        let start = Instant::now();
        let (id, seen_midway) = tokio::join!(sim.provision(spec("a")), async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            sim.len()
        });
        let id = id.unwrap();
        assert_eq!(
            seen_midway, 0,
            "the instance appears only after the latency"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert_eq!(sim.len(), 1);

        let start = Instant::now();
        sim.destroy(&id, &DestroyContext::default()).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert!(sim.is_empty());
    }

    #[tokio::test]
    async fn a_hundred_thousand_instances() {
        let sim = Simulator::default();
        for i in 0..100_000 {
            let group = if i % 10 == 0 { "small" } else { "big" };
            sim.provision(spec(group)).await.unwrap();
        }
        assert_eq!(sim.len(), 100_000);
        assert_eq!(sim.tag_set_count(), 2);
        assert!(std::mem::size_of::<Entry>() <= 32);
        assert_eq!(
            sim.set_state_where(&tags(&[(GROUP_TAG, "small")]), "dead"),
            10_000
        );

        let small = sim
            .describe_instances(&tags(&[(GROUP_TAG, "small")]), false)
            .await
            .unwrap();
        assert_eq!(small.len(), 10_000);
        assert!(small
            .windows(2)
            .all(|w| parse_id(&w[0].id) < parse_id(&w[1].id)));
        let small = sim
            .describe_instances(&tags(&[(GROUP_TAG, "small")]), true)
            .await
            .unwrap();
        assert!(states(&small).iter().all(|s| *s == "dead"));
        let big = sim
            .describe_instances(
                &tags(&[(GROUP_TAG, "big"), ("infrakit.config.hash", "abc")]),
                true,
            )
            .await
            .unwrap();
        assert_eq!(big.len(), 90_000);
        assert!(states(&big).iter().all(|s| *s == "running"));
        let none = sim
            .describe_instances(
                &tags(&[(GROUP_TAG, "big"), ("infrakit.config.hash", "new")]),
                false,
            )
            .await
            .unwrap();
        assert!(none.is_empty());
        assert_eq!(
            sim.describe_instances(&tags(&[("infrakit.config.hash", "abc")]), false)
                .await
                .unwrap()
                .len(),
            100_000
        );
    }
}
