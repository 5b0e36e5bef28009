//! When a describe may answer from a `vagrant status` run it did not start itself.
//!
//! A `vagrant status` run takes about a second (Ruby starting up), so waiting for one per
//! instance on every describe makes describes slow. Instead, each describe of an instance may
//! use the result of a run that was *requested no earlier than the previous describe of that
//! instance*, and starts the next run in the background for the describe after it. A machine
//! that died at time `D` was therefore seen dead by every run requested after `D`; a describe
//! that comes after another one that itself started after `D` only accepts such runs. So a dead
//! machine is listed by at most one describe after its death (the first one), and a describe
//! in a steady poll costs no Vagrant run of its own.
//!
//! The rule is [`plan`], a pure function of three instants; the plugin keeps them per instance
//! in [`Freshness`].

use std::time::Instant;

/// What a describe does for one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Answer from the latest finished run; with `refresh`, start the next run in the
    /// background (none is under way).
    Cached {
        /// Start a run for the next describe.
        refresh: bool,
    },
    /// Wait for the run under way: it was requested recently enough.
    Join,
    /// Start a run and wait for it.
    Run,
}

/// The plan for a describe of one instance, given when the previous describe of it started
/// (`prev_ask`), when the latest finished run was requested (`latest`), and when the run
/// under way, if any, was requested (`running`).
///
/// A run is usable when it was requested at or after `prev_ask`; with no previous describe
/// nothing is, so the first describe of an instance always waits for a run of its own.
pub fn plan(prev_ask: Option<Instant>, latest: Option<Instant>, running: Option<Instant>) -> Plan {
    let usable = |requested: Instant| prev_ask.is_some_and(|p| requested >= p);
    if latest.is_some_and(usable) {
        Plan::Cached {
            refresh: running.is_none(),
        }
    } else if running.is_some_and(usable) {
        Plan::Join
    } else {
        Plan::Run
    }
}

/// The instants [`plan`] needs, for one instance, plus the cached result.
#[derive(Debug, Clone)]
pub struct Freshness<T, R> {
    /// When the last describe of the instance started.
    pub last_ask: Option<Instant>,
    /// The latest finished run: when it was requested, and its result.
    pub latest: Option<(Instant, T)>,
    /// The run under way: when it was requested, its number, and a handle to it.
    pub running: Option<(Instant, u64, R)>,
}

impl<T, R> Default for Freshness<T, R> {
    fn default() -> Self {
        Freshness {
            last_ask: None,
            latest: None,
            running: None,
        }
    }
}

impl<T: Clone, R: Clone> Freshness<T, R> {
    /// Records a describe starting at `now` and returns its plan, with the cached result for
    /// [`Plan::Cached`] and the run to join for [`Plan::Join`].
    pub fn ask(&mut self, now: Instant) -> (Plan, Option<T>, Option<R>) {
        let prev = self.last_ask.replace(now);
        let p = plan(
            prev,
            self.latest.as_ref().map(|(at, _)| *at),
            self.running.as_ref().map(|(at, _, _)| *at),
        );
        match p {
            Plan::Cached { .. } => (p, self.latest.as_ref().map(|(_, v)| v.clone()), None),
            Plan::Join => (p, None, self.running.as_ref().map(|(_, _, r)| r.clone())),
            Plan::Run => (p, None, None),
        }
    }

    /// Records the end of run `number`, requested at `requested`: its result (if it is one to
    /// keep) becomes the latest unless a later-requested one is already there.
    pub fn finish(&mut self, requested: Instant, number: u64, result: Option<T>) {
        if self.running.as_ref().is_some_and(|(_, n, _)| *n == number) {
            self.running = None;
        }
        if let Some(value) = result {
            if self.latest.as_ref().is_none_or(|(at, _)| *at <= requested) {
                self.latest = Some((requested, value));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(base: Instant, secs: u64) -> Instant {
        base + Duration::from_secs(secs)
    }

    #[test]
    fn the_first_describe_waits_for_its_own_run() {
        let t = Instant::now();
        assert_eq!(plan(None, None, None), Plan::Run);
        assert_eq!(plan(None, Some(t), None), Plan::Run);
        assert_eq!(plan(None, None, Some(t)), Plan::Run);
    }

    #[test]
    fn runs_requested_since_the_previous_describe_are_used() {
        let t = Instant::now();
        // The previous describe (at 10) started a run; it finished: answer from it, refresh.
        assert_eq!(
            plan(Some(at(t, 10)), Some(at(t, 10)), None),
            Plan::Cached { refresh: true }
        );
        // ... and a refresh is already under way: no second one.
        assert_eq!(
            plan(Some(at(t, 10)), Some(at(t, 10)), Some(at(t, 12))),
            Plan::Cached { refresh: false }
        );
        // The run it started is still going: wait for it.
        assert_eq!(
            plan(Some(at(t, 10)), Some(at(t, 5)), Some(at(t, 10))),
            Plan::Join
        );
        // Only runs from before the previous describe: run anew.
        assert_eq!(
            plan(Some(at(t, 10)), Some(at(t, 9)), Some(at(t, 9))),
            Plan::Run
        );
        assert_eq!(plan(Some(at(t, 10)), None, None), Plan::Run);
    }

    /// A poll every `every` seconds, runs taking `took` seconds, the machine dying at `died`:
    /// which describes still list it?
    fn alive_after_death(every: u64, took: u64, died: u64) -> Vec<u64> {
        let t = Instant::now();
        let mut f: Freshness<bool, ()> = Freshness::default();
        let mut next = 0u64;
        let mut listed = Vec::new();
        let mut pending: Vec<(u64, u64, u64)> = Vec::new(); // (requested, number, done at)
        for k in 0..20 {
            let now_s = k * every;
            let now = at(t, now_s);
            // Finish the runs due by now; a run sees the machine alive if it ran before death.
            pending.retain(|&(req, n, done)| {
                if done <= now_s {
                    f.finish(at(t, req), n, Some(req < died));
                    false
                } else {
                    true
                }
            });
            let start = |f: &mut Freshness<bool, ()>, next: &mut u64, pending: &mut Vec<_>| {
                *next += 1;
                f.running = Some((now, *next, ()));
                pending.push((now_s, *next, now_s + took));
                *next
            };
            let (p, cached, _) = f.ask(now);
            let alive = match p {
                Plan::Cached { refresh } => {
                    if refresh {
                        start(&mut f, &mut next, &mut pending);
                    }
                    cached.unwrap()
                }
                // Waiting for a run requested at `r`: it sees the machine as it was then.
                Plan::Join => f
                    .running
                    .as_ref()
                    .map(|(r, _, _)| *r < at(t, died))
                    .unwrap(),
                Plan::Run => {
                    let n = start(&mut f, &mut next, &mut pending);
                    pending.retain(|&(_, m, _)| m != n);
                    f.finish(now, n, Some(now_s < died));
                    now_s < died
                }
            };
            if alive && now_s >= died {
                listed.push(now_s);
            }
        }
        listed
    }

    #[test]
    fn a_dead_machine_is_listed_by_at_most_one_describe_after_its_death() {
        for every in [1, 2, 5] {
            for took in [0, 1, 2, 7] {
                for died in [0, 1, 3, 11, 12, 13] {
                    let late = alive_after_death(every, took, died);
                    assert!(
                        late.len() <= 1,
                        "poll {every}s, runs {took}s, died at {died}s: listed at {late:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn finish_keeps_the_latest_requested_result() {
        let t = Instant::now();
        let mut f: Freshness<&str, ()> = Freshness {
            running: Some((at(t, 2), 2, ())),
            ..Freshness::default()
        };
        f.finish(at(t, 2), 2, Some("new"));
        assert!(f.running.is_none());
        f.finish(at(t, 1), 1, Some("old"));
        assert_eq!(f.latest.unwrap().1, "new");
        let mut f: Freshness<&str, ()> = Freshness {
            running: Some((at(t, 3), 3, ())),
            ..Freshness::default()
        };
        f.finish(at(t, 1), 1, None);
        assert!(f.running.is_some(), "another run's end leaves it");
    }
}
