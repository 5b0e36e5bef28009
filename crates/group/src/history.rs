//! What a supervisor remembers between observations: when it first saw each instance, how long
//! each has been healthy or unhealthy, which ones it destroyed itself, and which died young.
//! Instances that keep dying within seconds of starting (a bad command, a missing image) put the
//! group in crash-loop back-off, so it does not create instances in a tight loop; deaths of
//! established instances, even many at once, are healed at full speed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use infrakit_spi::group::Wait;
use infrakit_spi::Health;

/// An instance that dies within this time of being first seen died young.
pub const YOUNG: Duration = Duration::from_secs(10);
/// Young deaths are counted over this window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Longest wait between provisions in crash-loop back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A provisioned instance not yet seen in an observation counts as in flight for this long
/// (plugins whose listings lag behind their creations must not cause duplicates).
pub const IN_FLIGHT_GRACE: Duration = Duration::from_secs(10);

/// One instance as remembered: kept small, there is one per member of every group.
#[derive(Debug, Clone, Copy)]
struct Seen {
    first: Instant,
    /// Since when it has been in `health` without interruption.
    since: Instant,
    health: Health,
    ever_healthy: bool,
    streak: u32,
    /// The number of the last observation that listed it.
    observation: u64,
}

impl Seen {
    fn new(now: Instant) -> Seen {
        Seen {
            first: now,
            since: now,
            health: Health::Unknown,
            ever_healthy: false,
            streak: 0,
            observation: 0,
        }
    }

    fn timing(&self, now: Instant) -> Timing {
        let held = now.duration_since(self.since);
        let in_health = |h: Health| {
            if self.health == h {
                held
            } else {
                Duration::ZERO
            }
        };
        Timing {
            age: now.duration_since(self.first),
            healthy_for: in_health(Health::Healthy),
            unhealthy_for: in_health(Health::Unhealthy),
            streak: self.streak,
            ever_healthy: self.ever_healthy,
        }
    }

    fn record(&mut self, health: Health, now: Instant) {
        if health != self.health {
            self.health = health;
            self.since = now;
        }
        if health == Health::Healthy {
            self.streak = self.streak.saturating_add(1);
            self.ever_healthy = true;
        } else {
            self.streak = 0;
        }
    }
}

/// Instance IDs are chosen by plugins, not by whoever could flood a hash table: a fast hasher.
type IdMap<V> = HashMap<Box<str>, V, foldhash::fast::RandomState>;
type IdSet = HashSet<Box<str>, foldhash::fast::RandomState>;

/// Gives back the memory of a table that has shrunk to a fraction of its capacity (hash tables
/// keep their largest size otherwise: a group scaled from 100,000 to 10 would keep it all).
macro_rules! compact {
    ($table:expr) => {
        if $table.capacity() > 64 && $table.len() * 4 < $table.capacity() {
            $table.shrink_to_fit();
        }
    };
}

/// How long an instance has been around and in which health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// Since first seen.
    pub age: Duration,
    /// Continuously Healthy for.
    pub healthy_for: Duration,
    /// Continuously Unhealthy for.
    pub unhealthy_for: Duration,
    /// Consecutive Healthy observations.
    pub streak: u32,
    /// Ever seen Healthy.
    pub ever_healthy: bool,
}

/// Per-group memory of instances.
#[derive(Debug)]
pub struct History {
    seen: IdMap<Seen>,
    destroyed: IdSet,
    young_deaths: VecDeque<Instant>,
    next_allowed: Option<Instant>,
    backoff: Duration,
    provisioned: IdMap<(Option<String>, Instant)>,
    observation: u64,
    /// Instances that disappeared without the controller destroying them, since last taken.
    lost: Vec<String>,
    /// When each loss not yet made good happened (deaths, unhealthy replacements), oldest first.
    losses: VecDeque<Instant>,
}

impl Default for History {
    fn default() -> Self {
        History {
            seen: IdMap::default(),
            destroyed: IdSet::default(),
            young_deaths: VecDeque::new(),
            next_allowed: None,
            backoff: Duration::from_secs(1),
            provisioned: IdMap::default(),
            observation: 0,
            lost: Vec::new(),
            losses: VecDeque::new(),
        }
    }
}

impl History {
    /// Records an observation of the group's members and their health at `now`.
    ///
    /// Runs on every reconcile over every member, so it allocates only for instances seen for
    /// the first time: each entry is stamped with the observation's number, and entries without
    /// the latest stamp are the instances that are gone.
    ///
    /// Calls `each` with each member's [`Timing`] after this observation, once per member in
    /// the order given.
    pub fn observe<'a>(
        &mut self,
        members: impl IntoIterator<Item = (&'a str, Health)>,
        now: Instant,
        mut each: impl FnMut(Timing),
    ) {
        self.observation = self.observation.wrapping_add(1);
        let stamp = self.observation;
        for (id, health) in members {
            if !self.seen.contains_key(id) {
                self.seen.insert(id.into(), Seen::new(now));
            }
            let Some(seen) = self.seen.get_mut(id) else {
                each(Timing::default());
                continue;
            };
            seen.observation = stamp;
            seen.record(health, now);
            each(seen.timing(now));
            if !self.provisioned.is_empty() {
                self.provisioned.remove(id);
            }
        }
        let mut died_young = 0;
        let destroyed = &self.destroyed;
        let lost = &mut self.lost;
        let losses = &mut self.losses;
        self.seen.retain(|id, seen| {
            if seen.observation == stamp {
                return true;
            }
            if !destroyed.contains(id) {
                if now.duration_since(seen.first) < YOUNG {
                    died_young += 1;
                }
                lost.push(id.to_string());
                losses.push_back(now);
            }
            false
        });
        let seen = &self.seen;
        self.destroyed.retain(|id| seen.contains_key(id));
        for _ in 0..died_young {
            self.young_deaths.push_back(now);
        }
        while self
            .young_deaths
            .front()
            .is_some_and(|t| now.duration_since(*t) > WINDOW)
        {
            self.young_deaths.pop_front();
        }
        if self.young_deaths.is_empty() {
            self.backoff = Duration::from_secs(1);
            self.next_allowed = None;
        }
        self.provisioned
            .retain(|_, (_, at)| now.duration_since(*at) < IN_FLIGHT_GRACE);
        compact!(self.seen);
        compact!(self.destroyed);
        compact!(self.provisioned);
    }

    /// How long `id` has been around and healthy or not.
    pub fn timing(&self, id: &str, now: Instant) -> Timing {
        self.seen.get(id).map(|s| s.timing(now)).unwrap_or_default()
    }

    /// Notes that the controller provisioned `id` (with `logical_id`) at `now`.
    pub fn provisioned(&mut self, id: &str, logical_id: Option<String>, now: Instant) {
        self.provisioned.insert(id.into(), (logical_id, now));
    }

    /// Instances provisioned recently that no observation has shown yet.
    pub fn in_flight(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.provisioned
            .iter()
            .map(|(id, (lid, _))| (&**id, lid.as_deref()))
    }

    /// Notes that the controller itself destroyed `id` (so its disappearance is not a death).
    pub fn destroyed(&mut self, id: &str) {
        self.destroyed.insert(id.into());
    }

    /// Notes that an instance is being replaced at `now` (e.g. it was unhealthy too long): its
    /// replacement's creation ends a heal, as for a death.
    pub fn replacing(&mut self, now: Instant) {
        self.losses.push_back(now);
    }

    /// Instances that disappeared without being destroyed by the controller, since the last call.
    pub fn take_lost(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lost)
    }

    /// Notes a replacement created at `now`: how long the oldest loss not yet made good waited
    /// for it, if there is one.
    pub fn healed(&mut self, now: Instant) -> Option<Duration> {
        self.losses.pop_front().map(|t| now.duration_since(t))
    }

    /// Forgets losses not to be made good (the group shrank meanwhile), keeping at most `n`.
    pub fn keep_losses(&mut self, n: usize) {
        while self.losses.len() > n {
            self.losses.pop_back();
        }
    }

    /// Whether crash-loop back-off holds provisions back at `now`, for a group of `desired`
    /// (a query: [`History::spend_backoff`] records that a provision went ahead).
    pub fn throttle(&self, desired: usize, now: Instant) -> Throttle {
        let deaths = self.young_deaths.len();
        if deaths <= desired.max(1) + 2 {
            return Throttle::Free;
        }
        match self.next_allowed {
            Some(t) if now < t => Throttle::Hold {
                deaths,
                wait: t - now,
            },
            _ => Throttle::One {
                deaths,
                wait: self.backoff,
            },
        }
    }

    /// Notes that the one provision [`Throttle::One`] allowed went ahead at `now`: the next
    /// waits the back-off, which doubles (up to [`MAX_BACKOFF`]).
    pub fn spend_backoff(&mut self, now: Instant) {
        self.next_allowed = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

/// What crash-loop back-off allows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// No crash loop: provisions run at full speed.
    Free,
    /// In a crash loop, and the next provision must wait `wait` more.
    Hold {
        /// Young deaths in the window.
        deaths: usize,
        /// Until the next provision.
        wait: Duration,
    },
    /// In a crash loop, and one provision may go now; the next waits `wait`.
    One {
        /// Young deaths in the window.
        deaths: usize,
        /// The back-off after this one.
        wait: Duration,
    },
}

impl Throttle {
    /// How many of `wanted` provisions may run, and why not all.
    pub fn allow(self, wanted: usize) -> (usize, Option<Wait>) {
        let why = |deaths: usize, wait: Duration| Wait::CrashLoop {
            deaths,
            young_secs: YOUNG.as_secs(),
            window_secs: WINDOW.as_secs(),
            next_secs: wait.as_secs().max(1),
        };
        match self {
            _ if wanted == 0 => (0, None),
            Throttle::Free => (wanted, None),
            Throttle::Hold { deaths, wait } => (0, Some(why(deaths, wait))),
            Throttle::One { deaths, wait } => (1, Some(why(deaths, wait))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asks for `wanted` provisions, spending the back-off when one goes ahead (as the
    /// supervisor does).
    fn allow(
        h: &mut History,
        wanted: usize,
        desired: usize,
        now: Instant,
    ) -> (usize, Option<String>) {
        let throttle = h.throttle(desired, now);
        let (n, why) = throttle.allow(wanted);
        if n > 0 && matches!(throttle, Throttle::One { .. }) {
            h.spend_backoff(now);
        }
        (n, why.map(|w| w.to_string()))
    }

    fn ids<'a>(list: &'a [&'a str]) -> impl Iterator<Item = (&'a str, Health)> + 'a {
        list.iter().map(|id| (*id, Health::Healthy))
    }

    #[tokio::test(start_paused = true)]
    async fn young_deaths_trigger_backoff_and_old_ones_do_not() {
        let mut h = History::default();
        let t0 = Instant::now();
        let old: Vec<String> = (0..10).map(|i| format!("old{i}")).collect();
        let old: Vec<&str> = old.iter().map(String::as_str).collect();
        h.observe(ids(&old), t0, drop);
        h.observe(ids(&[]), t0 + Duration::from_secs(30), drop);
        assert_eq!(
            allow(&mut h, 10, 10, t0 + Duration::from_secs(30)),
            (10, None)
        );

        let mut now = t0 + Duration::from_secs(31);
        for i in 0..4 {
            let id = format!("young{i}");
            h.observe(ids(&[id.as_str()]), now, drop);
            now += Duration::from_millis(100);
            h.observe(ids(&[]), now, drop);
        }
        let (n, why) = allow(&mut h, 1, 1, now);
        assert_eq!(n, 1);
        assert!(why.unwrap().starts_with("crash loop: 4 instances"));
        assert_eq!(allow(&mut h, 1, 1, now).0, 0, "waits for the back-off");
        assert_eq!(allow(&mut h, 1, 1, now + Duration::from_secs(1)).0, 1);
        assert_eq!(
            allow(&mut h, 1, 1, now + Duration::from_secs(2)).0,
            0,
            "back-off doubled to 2s"
        );
        assert_eq!(allow(&mut h, 1, 1, now + Duration::from_secs(3)).0, 1);

        let later = now + WINDOW + Duration::from_secs(1);
        h.observe(ids(&[]), later, drop);
        assert_eq!(allow(&mut h, 1, 1, later), (1, None));
    }

    #[tokio::test(start_paused = true)]
    async fn instances_we_destroy_are_not_deaths() {
        let mut h = History::default();
        let t0 = Instant::now();
        for i in 0..10 {
            let id = format!("i{i}");
            h.observe(ids(&[id.as_str()]), t0, drop);
            h.destroyed(&id);
            h.observe(ids(&[]), t0 + Duration::from_millis(10), drop);
        }
        assert_eq!(allow(&mut h, 1, 1, t0 + Duration::from_secs(1)), (1, None));
    }

    #[tokio::test(start_paused = true)]
    async fn provisions_are_in_flight_until_seen_or_expired() {
        let mut h = History::default();
        let t0 = Instant::now();
        h.provisioned("a", None, t0);
        h.provisioned("b", Some("db1".into()), t0);
        h.observe(ids(&["a"]), t0 + Duration::from_secs(1), drop);
        assert_eq!(h.in_flight().collect::<Vec<_>>(), vec![("b", Some("db1"))]);
        h.observe(ids(&["a"]), t0 + IN_FLIGHT_GRACE, drop);
        assert_eq!(h.in_flight().count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn health_durations_and_streaks_are_tracked() {
        let mut h = History::default();
        let t0 = Instant::now();
        h.observe([("a", Health::Unknown)], t0, drop);
        h.observe([("a", Health::Healthy)], t0 + Duration::from_secs(1), drop);
        h.observe([("a", Health::Healthy)], t0 + Duration::from_secs(3), drop);
        let t = h.timing("a", t0 + Duration::from_secs(4));
        assert_eq!(
            (t.age, t.healthy_for, t.streak, t.ever_healthy),
            (Duration::from_secs(4), Duration::from_secs(3), 2, true)
        );
        h.observe(
            [("a", Health::Unhealthy)],
            t0 + Duration::from_secs(5),
            drop,
        );
        let t = h.timing("a", t0 + Duration::from_secs(8));
        assert_eq!(
            (t.healthy_for, t.unhealthy_for, t.streak),
            (Duration::ZERO, Duration::from_secs(3), 0)
        );
    }
}
