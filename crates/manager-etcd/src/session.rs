//! One lease and what became of it (a campaign, then perhaps a term), and the election key of a
//! won campaign: what the leadership keeps alive and the store's writes are conditional on.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use etcd_client::LeaderKey;
use tokio_util::sync::CancellationToken;

/// Locks `m`, taking over a poisoned lock (its data stays consistent: every writer sets whole
/// values).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The election key of a won campaign: the store's writes are conditional on it.
#[derive(Debug, Clone)]
pub(crate) struct ElectionKey {
    /// The key, `<cluster>/leader/<lease in hex>`.
    pub(crate) key: Vec<u8>,
    /// Its create revision: it changes if the key is deleted and created again.
    pub(crate) rev: i64,
    /// All of it, as etcd's election API names it (to resign).
    pub(crate) leader: LeaderKey,
}

/// One lease and what became of it: a campaign, then perhaps a term.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) lease: i64,
    /// The TTL the fence assumes (the requested one; etcd may grant more, never less).
    pub(crate) ttl: Duration,
    pub(crate) margin: Duration,
    pub(crate) valid_until: Mutex<Instant>,
    /// Cancelled when the session is over, for whatever reason; ends the keepalive task.
    pub(crate) lost: CancellationToken,
    pub(crate) reason: Mutex<Option<String>>,
    /// Set once the campaign is won.
    pub(crate) elected: Mutex<Option<ElectionKey>>,
}

impl Session {
    pub(crate) fn new(lease: i64, ttl: Duration, margin: Duration, sent: Instant) -> Session {
        Session {
            lease,
            ttl,
            margin,
            valid_until: Mutex::new(sent + ttl - margin),
            lost: CancellationToken::new(),
            reason: Mutex::new(None),
            elected: Mutex::new(None),
        }
    }

    /// Records an acknowledged keepalive that was sent at `sent`, granting `ttl_secs`.
    pub(crate) fn renewed(&self, sent: Instant, ttl_secs: i64) {
        let granted = Duration::from_secs(u64::try_from(ttl_secs).unwrap_or(0));
        let until = sent + granted.min(self.ttl) - self.margin;
        let mut valid = lock(&self.valid_until);
        if until > *valid {
            *valid = until;
        }
    }

    pub(crate) fn valid_until(&self) -> Instant {
        *lock(&self.valid_until)
    }

    /// Ends the session (first reason wins).
    pub(crate) fn lose(&self, why: impl Into<String>) {
        {
            let mut reason = lock(&self.reason);
            if reason.is_none() {
                *reason = Some(why.into());
            }
        }
        self.lost.cancel();
    }

    pub(crate) fn reason(&self) -> String {
        lock(&self.reason)
            .clone()
            .unwrap_or_else(|| "the term ended".to_string())
    }

    pub(crate) fn elected(&self) -> Option<ElectionKey> {
        lock(&self.elected).clone()
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if self.lost.is_cancelled() {
            return Err(format!(
                "leadership lost (lease {:x}): {}",
                self.lease,
                self.reason()
            ));
        }
        let now = Instant::now();
        let until = self.valid_until();
        if now >= until {
            return Err(format!(
                "lease {:x} is not known to be valid: its last acknowledged renewal is {:?} old (TTL {:?}, safety margin {:?})",
                self.lease,
                (now - until) + self.ttl - self.margin,
                self.ttl,
                self.margin
            ));
        }
        Ok(())
    }
}

/// Where the store finds the current term's election key.
pub(crate) type Current = Arc<Mutex<Option<Arc<Session>>>>;
