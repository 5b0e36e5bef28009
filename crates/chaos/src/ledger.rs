//! The ledger: what a chaos test saw, shared by everything that watches the group.
//!
//! It holds the current limit on the number of instances (desired + MaxSurge, moved by the test
//! around each commit), the destroy [`Policy`], every `Destroy` with its reason and the health
//! the instance had at that moment, the largest count seen, and the violations found.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::rules::{self, Judged, Policy};

/// One `Destroy` the controller sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestroyRecord {
    /// The instance.
    pub id: String,
    /// The `DestroyContext` reason.
    pub reason: String,
    /// Its health according to the judging flavor at that moment.
    pub judged: Judged,
    /// Whether the instance plugin reported success.
    pub ok: bool,
}

/// Counts of what went through the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Instance counts checked (samples and censuses after provisions).
    pub checks: u64,
    /// Samples that could not be taken (the plugin did not answer).
    pub gaps: u64,
    /// The largest number of instances seen.
    pub max_seen: usize,
    /// `Destroy` calls recorded.
    pub destroys: usize,
}

/// What a chaos test saw. Share it with `Arc`.
#[derive(Debug)]
pub struct Ledger {
    limit: AtomicUsize,
    policy: Mutex<Policy>,
    violations: Mutex<Vec<String>>,
    destroys: Mutex<Vec<DestroyRecord>>,
    max_seen: AtomicUsize,
    checks: AtomicU64,
    gaps: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Ledger {
    /// An empty ledger allowing at most `limit` instances.
    pub fn new(limit: usize) -> Arc<Ledger> {
        Arc::new(Ledger {
            limit: AtomicUsize::new(limit),
            policy: Mutex::new(Policy::default()),
            violations: Mutex::new(Vec::new()),
            destroys: Mutex::new(Vec::new()),
            max_seen: AtomicUsize::new(0),
            checks: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
        })
    }

    /// The most instances allowed now.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::SeqCst)
    }

    /// Allows at most `limit` instances from now on. Raise it before committing a larger size;
    /// lower it only once a smaller size has converged.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::SeqCst);
    }

    /// The destroy policy now.
    pub fn policy(&self) -> Policy {
        *lock(&self.policy)
    }

    /// Changes the destroy policy.
    pub fn set_policy(&self, policy: Policy) {
        *lock(&self.policy) = policy;
    }

    /// Records a count of instances seen by `source`, and a violation if it is above the limit.
    pub fn count(&self, count: usize, source: &str) {
        self.checks.fetch_add(1, Ordering::Relaxed);
        self.max_seen.fetch_max(count, Ordering::SeqCst);
        if let Some(v) = rules::count_violation(count, self.limit(), source) {
            self.violation(v);
        }
    }

    /// Records that a count could not be taken.
    pub fn gap(&self) {
        self.gaps.fetch_add(1, Ordering::Relaxed);
    }

    /// Judges and records a `Destroy` under the current policy.
    pub fn destroyed(&self, record: DestroyRecord) {
        if let Some(v) =
            rules::destroy_violation(&record.id, &record.reason, &record.judged, self.policy())
        {
            self.violation(v);
        }
        lock(&self.destroys).push(record);
    }

    /// Records a violation found elsewhere (e.g. a lost spec).
    pub fn violation(&self, what: impl Into<String>) {
        let what = what.into();
        tracing::warn!(violation = %what, "invariant violated");
        lock(&self.violations).push(what);
    }

    /// The violations so far.
    pub fn violations(&self) -> Vec<String> {
        lock(&self.violations).clone()
    }

    /// Every `Destroy` so far.
    pub fn destroys(&self) -> Vec<DestroyRecord> {
        lock(&self.destroys).clone()
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        Counts {
            checks: self.checks.load(Ordering::Relaxed),
            gaps: self.gaps.load(Ordering::Relaxed),
            max_seen: self.max_seen.load(Ordering::SeqCst),
            destroys: lock(&self.destroys).len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infrakit_spi::Health;

    #[test]
    fn counts_and_destroys_are_judged_against_the_current_limit_and_policy() {
        let l = Ledger::new(3);
        l.count(3, "listing");
        assert!(l.violations().is_empty());
        l.count(4, "listing");
        assert_eq!(l.violations().len(), 1);
        l.set_limit(4);
        l.count(4, "listing");
        assert_eq!(l.violations().len(), 1);
        assert_eq!(l.counts().max_seen, 4);

        let healthy = |reason: &str| DestroyRecord {
            id: "i".into(),
            reason: reason.into(),
            judged: Judged::Listed(Health::Healthy),
            ok: true,
        };
        l.destroyed(healthy("scale_down"));
        assert_eq!(l.violations().len(), 1);
        l.set_policy(Policy::NothingHealthy);
        l.destroyed(healthy("scale_down"));
        assert_eq!(l.violations().len(), 2);
        assert_eq!(l.counts().destroys, 2);
    }
}
