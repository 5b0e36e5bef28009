//! Health on its own clock: each instance is checked when its flavor says its verdict may have
//! changed, not on every pass.
//!
//! A flavor says how often its verdict can change ([`HealthCadence`], asked once per flavor
//! and properties): never without a change of the description (no probe), after a probe's
//! interval, or, for a flavor that cannot say (the original's plugins), on every pass. The
//! [`HealthClock`] remembers each instance's last verdict with a fingerprint of the description
//! it was given for and when it was obtained, and says which instances are due
//! ([`HealthClock::plan`]) and when the next one will be ([`HealthClock::next_due`]), so the
//! control loop wakes for it. Only answered verdicts are remembered: a check that failed or
//! timed out is due again on the next pass. The decisions are pure; the asking is in
//! [`crate::observe`].

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use infrakit_spi::{Description, Flavor, Health, HealthCadence, HealthChecks};

/// How long a flavor that could not say its cadence is treated as [`HealthCadence::EveryPass`]
/// before it is asked again.
const ASK_AGAIN: Duration = Duration::from_secs(30);

/// A health check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub health: Health,
    /// Whether the check answered (false: it failed or timed out, and the health is Unknown
    /// for want of an answer).
    pub answered: bool,
}

impl Default for Verdict {
    fn default() -> Self {
        Verdict {
            health: Health::Unknown,
            answered: false,
        }
    }
}

impl Verdict {
    /// An answered check.
    pub fn answered(health: Health) -> Verdict {
        Verdict {
            health,
            answered: true,
        }
    }
}

/// The last verdict on one instance.
#[derive(Debug, Clone, Copy)]
struct Memo {
    fingerprint: u64,
    health: Health,
    at: Instant,
}

/// What a flavor said of its checks, for which plugin and properties.
#[derive(Debug)]
struct Known {
    plugin: String,
    properties: Value,
    checks: HealthChecks,
    /// Set when the flavor could not say: ask again from then on.
    ask_again: Option<Instant>,
}

/// A listing, by identity: the cache hands the same one out while it is reused.
type ListingId = Weak<Vec<Description>>;

/// One group's health verdicts and the flavor's cadence.
#[derive(Debug, Default)]
pub(crate) struct HealthClock {
    known: Option<Known>,
    memo: HashMap<String, Memo>,
    /// The fingerprints of the last listing planned for, kept while the observed cache reuses
    /// that listing (a weak pointer: the listing is not kept alive for them).
    fingerprinted: Option<(ListingId, Arc<Vec<u64>>)>,
    /// The verdicts of the last listing planned for when every one of them was answered: while
    /// that listing is reused and no verdict has expired, a plan is a copy of them.
    settled: Option<(ListingId, Vec<Verdict>)>,
    /// When the earliest remembered verdict expires (under `Every`).
    earliest: Option<Instant>,
}

/// Which instances of an observation need a check, and the verdicts of the others.
#[derive(Debug)]
pub(crate) struct Due {
    /// Indices of the instances to check.
    pub due: Vec<usize>,
    /// A verdict per instance: remembered for those not due, [`Verdict::default`] for the
    /// others until they are checked.
    pub verdicts: Vec<Verdict>,
    /// Each instance's description fingerprint (empty when every instance is checked anyway).
    fingerprints: Arc<Vec<u64>>,
    /// Planned under [`HealthCadence::EveryPass`]: nothing is remembered.
    every_pass: bool,
}

impl HealthClock {
    /// What `flavor` (plugin `plugin`) says of its checks with `properties`: asked when the
    /// plugin or its properties change, and again [`ASK_AGAIN`] after a failed ask (counted as
    /// [`HealthCadence::EveryPass`] meanwhile). A change forgets every verdict.
    pub async fn checks(
        &mut self,
        flavor: &dyn Flavor,
        plugin: &str,
        properties: &Value,
        timeout: Duration,
        now: Instant,
    ) -> HealthChecks {
        if let Some(k) = &self.known {
            let same = k.plugin == plugin && k.properties == *properties;
            if same && k.ask_again.is_none_or(|t| now < t) {
                return k.checks;
            }
        }
        let asked = tokio::time::timeout(timeout, flavor.health_checks(properties)).await;
        let (checks, ask_again) = match asked {
            Ok(Ok(checks)) => (checks, None),
            Ok(Err(e)) => {
                tracing::debug!(plugin, error = %e, "flavor cannot say its health cadence; checking every pass");
                (HealthChecks::default(), Some(now + ASK_AGAIN))
            }
            Err(_) => {
                tracing::debug!(
                    plugin,
                    "flavor did not say its health cadence in time; checking every pass"
                );
                (HealthChecks::default(), Some(now + ASK_AGAIN))
            }
        };
        let changed = self
            .known
            .as_ref()
            .is_none_or(|k| k.checks.cadence != checks.cadence || k.properties != *properties);
        if changed {
            self.memo.clear();
            self.settled = None;
            self.earliest = None;
        }
        self.known = Some(Known {
            plugin: plugin.to_string(),
            properties: properties.clone(),
            checks,
            ask_again,
        });
        checks
    }

    /// Which of `descriptions` are due for a check at `now` under `cadence`.
    pub fn plan(
        &mut self,
        cadence: HealthCadence,
        descriptions: &Arc<Vec<Description>>,
        now: Instant,
    ) -> Due {
        let n = descriptions.len();
        if cadence == HealthCadence::EveryPass {
            return Due {
                due: (0..n).collect(),
                verdicts: vec![Verdict::default(); n],
                fingerprints: Arc::default(),
                every_pass: true,
            };
        }
        let fingerprints = self.fingerprints(descriptions);
        if let Some((listing, verdicts)) = &self.settled {
            let expired = self.next_due(cadence).is_some_and(|t| t <= now);
            if !expired && listing.ptr_eq(&Arc::downgrade(descriptions)) {
                return Due {
                    due: Vec::new(),
                    verdicts: verdicts.clone(),
                    fingerprints,
                    every_pass: false,
                };
            }
        }
        let mut due = Vec::new();
        let mut verdicts = vec![Verdict::default(); n];
        for (i, d) in descriptions.iter().enumerate() {
            match self.memo.get(&d.id) {
                Some(m) if !is_due(cadence, m, fingerprints[i], now) => {
                    verdicts[i] = Verdict::answered(m.health);
                }
                _ => due.push(i),
            }
        }
        Due {
            due,
            verdicts,
            fingerprints,
            every_pass: false,
        }
    }

    /// Forgets every verdict: each instance is due at the next plan.
    pub fn forget(&mut self) {
        self.memo.clear();
        self.settled = None;
        self.earliest = None;
    }

    /// Takes in verdicts a flavor pushed (instance ID → health) for instances it has a verdict
    /// on; answers how many of those verdicts changed.
    pub fn apply(&mut self, pushed: HashMap<String, Health>) -> usize {
        let mut changed = 0;
        for (id, health) in pushed {
            if let Some(m) = self.memo.get_mut(&id) {
                if m.health != health {
                    m.health = health;
                    changed += 1;
                }
            }
        }
        if changed > 0 {
            self.settled = None;
        }
        changed
    }

    /// The fingerprints of `descriptions`, computed once per listing.
    pub fn fingerprints(&mut self, descriptions: &Arc<Vec<Description>>) -> Arc<Vec<u64>> {
        if let Some((listing, prints)) = &self.fingerprinted {
            if listing.ptr_eq(&Arc::downgrade(descriptions)) {
                return prints.clone();
            }
        }
        let prints = Arc::new(descriptions.iter().map(fingerprint).collect::<Vec<u64>>());
        self.fingerprinted = Some((Arc::downgrade(descriptions), prints.clone()));
        prints
    }

    /// Remembers the answered verdicts of `checked` (the `due` of `plan`) and forgets instances
    /// no longer listed.
    pub fn record(&mut self, descriptions: &Arc<Vec<Description>>, plan: &Due, now: Instant) {
        if plan.every_pass {
            self.memo.clear();
            self.settled = None;
            self.earliest = None;
            return;
        }
        let mut changed = !plan.due.is_empty();
        for &i in &plan.due {
            let v = plan.verdicts[i];
            let id = &descriptions[i].id;
            if v.answered {
                let memo = Memo {
                    fingerprint: plan.fingerprints[i],
                    health: v.health,
                    at: now,
                };
                self.memo.insert(id.clone(), memo);
            } else {
                self.memo.remove(id);
            }
        }
        if self.memo.len() > descriptions.len() {
            let listed: std::collections::HashSet<&str> =
                descriptions.iter().map(|d| d.id.as_str()).collect();
            self.memo.retain(|id, _| listed.contains(id.as_str()));
            changed = true;
        }
        if changed {
            self.earliest = self.memo.values().map(|m| m.at).min();
        }
        self.settled = plan
            .verdicts
            .iter()
            .all(|v| v.answered)
            .then(|| (Arc::downgrade(descriptions), plan.verdicts.clone()));
    }

    /// When the next remembered verdict expires under `cadence`, if ever.
    pub fn next_due(&self, cadence: HealthCadence) -> Option<Instant> {
        match cadence {
            HealthCadence::Every(interval) => self.earliest.map(|at| at + interval),
            HealthCadence::EveryPass | HealthCadence::OnChange => None,
        }
    }
}

/// Whether an instance whose last verdict is `memo` needs a check at `now`, its description now
/// having `fingerprint`.
fn is_due(cadence: HealthCadence, memo: &Memo, fingerprint: u64, now: Instant) -> bool {
    if memo.fingerprint != fingerprint {
        return true;
    }
    match cadence {
        HealthCadence::EveryPass => true,
        HealthCadence::OnChange => false,
        HealthCadence::Every(interval) => now >= memo.at + interval,
    }
}

/// A digest of everything a description says (its JSON form).
fn fingerprint(d: &Description) -> u64 {
    struct Hashing(foldhash::fast::FoldHasher);
    impl std::io::Write for Hashing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.write(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = Hashing(foldhash::fast::FixedState::with_seed(0x4ea1).build_hasher());
    // Writing to a hasher cannot fail; a description that cannot be serialised hashes as
    // far as it got, and its next check is then decided by the rest.
    let _ = serde_json::to_writer(&mut h, d);
    h.0.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use infrakit_spi::{Allocation, Index, Result, Spec, Tags};
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn described(id: &str, state: &str) -> Description {
        Description {
            id: id.into(),
            tags: Tags::from([("state".to_string(), state.to_string())]),
            ..Description::default()
        }
    }

    fn all_answered(plan: &mut Due, health: Health) {
        for &i in &plan.due {
            plan.verdicts[i] = Verdict::answered(health);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn on_change_checks_an_instance_again_only_when_its_description_changes() {
        let mut clock = HealthClock::default();
        let cadence = HealthCadence::OnChange;
        let a = Arc::new(vec![described("a", "up"), described("b", "up")]);
        let now = Instant::now();
        let mut plan = clock.plan(cadence, &a, now);
        assert_eq!(plan.due, vec![0, 1]);
        all_answered(&mut plan, Health::Healthy);
        clock.record(&a, &plan, now);

        tokio::time::advance(Duration::from_secs(3600)).await;
        let plan = clock.plan(cadence, &a, Instant::now());
        assert!(plan.due.is_empty(), "nothing changed: nothing is due");
        assert_eq!(plan.verdicts, vec![Verdict::answered(Health::Healthy); 2]);
        assert_eq!(clock.next_due(cadence), None);

        let b = Arc::new(vec![described("a", "up"), described("b", "stopped")]);
        let plan = clock.plan(cadence, &b, Instant::now());
        assert_eq!(plan.due, vec![1], "only the changed description is due");
        assert!(!plan.verdicts[1].answered);
    }

    #[tokio::test(start_paused = true)]
    async fn an_interval_makes_a_verdict_due_when_it_has_passed() {
        let mut clock = HealthClock::default();
        let cadence = HealthCadence::Every(Duration::from_secs(5));
        let list = Arc::new(vec![described("a", "up")]);
        let start = Instant::now();
        let mut plan = clock.plan(cadence, &list, start);
        all_answered(&mut plan, Health::Unhealthy);
        clock.record(&list, &plan, start);
        assert_eq!(
            clock.next_due(cadence),
            Some(start + Duration::from_secs(5))
        );

        tokio::time::advance(Duration::from_millis(4_999)).await;
        assert!(clock.plan(cadence, &list, Instant::now()).due.is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(clock.plan(cadence, &list, Instant::now()).due, vec![0]);
    }

    #[tokio::test(start_paused = true)]
    async fn unanswered_checks_and_vanished_instances_are_not_remembered() {
        let mut clock = HealthClock::default();
        let cadence = HealthCadence::OnChange;
        let list = Arc::new(vec![described("a", "up"), described("b", "up")]);
        let now = Instant::now();
        let mut plan = clock.plan(cadence, &list, now);
        plan.verdicts[0] = Verdict::answered(Health::Healthy); // b's check failed
        clock.record(&list, &plan, now);
        assert_eq!(clock.plan(cadence, &list, now).due, vec![1]);

        let only_b = Arc::new(vec![described("b", "up")]);
        let mut plan = clock.plan(cadence, &only_b, now);
        all_answered(&mut plan, Health::Healthy);
        clock.record(&only_b, &plan, now);
        assert_eq!(clock.memo.len(), 1, "a is gone from the listing");
        assert_eq!(clock.plan(cadence, &list, now).due, vec![0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pushed_change_replaces_the_remembered_verdict() {
        let mut clock = HealthClock::default();
        let cadence = HealthCadence::Every(Duration::from_secs(30));
        let list = Arc::new(vec![described("a", "up"), described("b", "up")]);
        let now = Instant::now();
        let mut plan = clock.plan(cadence, &list, now);
        all_answered(&mut plan, Health::Healthy);
        clock.record(&list, &plan, now);
        assert!(clock.plan(cadence, &list, now).due.is_empty(), "settled");

        let pushed = HashMap::from([
            ("b".to_string(), Health::Unhealthy),
            ("a".to_string(), Health::Healthy),
            ("gone".to_string(), Health::Unhealthy),
        ]);
        assert_eq!(
            clock.apply(pushed),
            1,
            "only b changed; unknown IDs are ignored"
        );
        let plan = clock.plan(cadence, &list, now);
        assert!(plan.due.is_empty(), "a pushed verdict needs no check");
        assert_eq!(
            plan.verdicts,
            vec![
                Verdict::answered(Health::Healthy),
                Verdict::answered(Health::Unhealthy)
            ]
        );

        clock.forget();
        assert_eq!(clock.plan(cadence, &list, now).due, vec![0, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn every_pass_checks_everything_and_remembers_nothing() {
        let mut clock = HealthClock::default();
        let list = Arc::new(vec![described("a", "up")]);
        let now = Instant::now();
        let mut plan = clock.plan(HealthCadence::EveryPass, &list, now);
        all_answered(&mut plan, Health::Healthy);
        clock.record(&list, &plan, now);
        assert!(clock.memo.is_empty());
        assert_eq!(
            clock.plan(HealthCadence::EveryPass, &list, now).due,
            vec![0]
        );
    }

    /// A flavor that says its cadence, or fails to, and counts the asks.
    #[derive(Default)]
    struct Saying {
        fails: bool,
        asked: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Flavor for Saying {
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
        async fn health_cadence(&self, _: &Value) -> Result<HealthCadence> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            if self.fails {
                Err(infrakit_spi::Error::plugin("down"))
            } else {
                Ok(HealthCadence::OnChange)
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_cadence_is_asked_once_per_properties_and_again_after_a_failure() {
        let mut clock = HealthClock::default();
        let flavor = Saying::default();
        let t = Duration::from_secs(1);
        let props = json!({"a": 1});
        for _ in 0..3 {
            let c = clock.checks(&flavor, "f", &props, t, Instant::now()).await;
            assert_eq!(c.cadence, HealthCadence::OnChange);
        }
        assert_eq!(flavor.asked.load(Ordering::SeqCst), 1);
        clock
            .checks(&flavor, "f", &json!({"a": 2}), t, Instant::now())
            .await;
        assert_eq!(flavor.asked.load(Ordering::SeqCst), 2, "new properties");

        let failing = Saying {
            fails: true,
            ..Saying::default()
        };
        let mut clock = HealthClock::default();
        let c = clock.checks(&failing, "f", &props, t, Instant::now()).await;
        assert_eq!(c, HealthChecks::default(), "every pass, not batched");
        clock.checks(&failing, "f", &props, t, Instant::now()).await;
        assert_eq!(failing.asked.load(Ordering::SeqCst), 1);
        tokio::time::advance(ASK_AGAIN).await;
        clock.checks(&failing, "f", &props, t, Instant::now()).await;
        assert_eq!(failing.asked.load(Ordering::SeqCst), 2, "asked again");
    }
}
