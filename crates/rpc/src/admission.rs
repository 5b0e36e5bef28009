//! Which connections a listener keeps when it is full: the pure bookkeeping behind
//! [`crate::Limits::max_connections`], [`crate::Limits::max_connections_per_peer`] and
//! [`crate::Limits::max_unauthenticated`].
//!
//! A newcomer is always looked at. When a budget it falls under is used up, the connection that
//! has been *waiting* longest in that budget makes room: waiting for a request head (new or idle
//! keep-alive), for the rest of a request body, or for its TLS handshake. A connection whose
//! request is being answered is never chosen, and one streaming events only when nothing waits.
//! So a flood of idle or half-sent connections cycles among itself while a client that sends a
//! request gets answered; the newcomer is refused only when everything in its budget is working.
//!
//! On TCP, connections that have not authenticated yet (TLS handshake or first request with the
//! token still to come) share a small budget of their own, and every peer address has a cap: a
//! stranger can push out other strangers, and its own connections, but never an authenticated
//! operator's. When the unauthenticated budget is full, the peer holding the most of it gives
//! way first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// A connection's number on its listener.
pub(crate) type ConnId = u64;

/// What a connection is doing, for choosing whom to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for a TLS handshake, a request head or a request body.
    Waiting,
    /// A request is being answered.
    Busy,
    /// Events are being streamed to it.
    Streaming,
}

/// The budgets of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    /// Connections open at once.
    pub(crate) max_connections: usize,
    /// Connections of one peer address (TCP).
    pub(crate) max_per_peer: Option<usize>,
    /// Connections not authenticated yet (TCP).
    pub(crate) max_unauthenticated: Option<usize>,
}

/// Why a newcomer was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its peer address has as many connections as allowed, all of them answering requests.
    PerPeer,
    /// The listener (or its unauthenticated budget) is full of connections answering requests.
    Full,
}

impl Refusal {
    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::PerPeer => "per_peer",
            Refusal::Full => "full",
        }
    }
}

/// The answer to a newcomer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Keep it as `id`, after closing `evict` (already out of the table).
    Accept { id: ConnId, evict: Vec<ConnId> },
    /// Close it.
    Refuse(Refusal),
}

#[derive(Debug, Clone)]
struct Entry {
    peer: Option<IpAddr>,
    authenticated: bool,
    phase: Phase,
    since: Instant,
}

impl Entry {
    /// Lower goes first; `None` is never evicted.
    fn eviction_rank(&self) -> Option<(u8, Instant)> {
        let class = match (self.phase, self.authenticated) {
            (Phase::Busy, _) => return None,
            (Phase::Waiting, false) => 0,
            (Phase::Waiting, true) => 1,
            (Phase::Streaming, _) => 2,
        };
        Some((class, self.since))
    }
}

/// The connections of one listener.
#[derive(Debug)]
pub(crate) struct Table {
    budget: Budget,
    next_id: ConnId,
    entries: HashMap<ConnId, Entry>,
}

impl Table {
    pub(crate) fn new(budget: Budget) -> Self {
        Table {
            budget,
            next_id: 0,
            entries: HashMap::new(),
        }
    }

    /// Connections in the table.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Looks at a newcomer from `peer`, already authenticated or not, at `now`.
    pub(crate) fn admit(
        &mut self,
        peer: Option<IpAddr>,
        authenticated: bool,
        now: Instant,
    ) -> Admit {
        let mut evict = Vec::new();
        if let (Some(max), Some(ip)) = (self.budget.max_per_peer, peer) {
            if self.count(|e| e.peer == Some(ip)) >= max {
                match self.victim(|e| e.peer == Some(ip)) {
                    Some(id) => evict.push(self.take(id)),
                    None => return Admit::Refuse(Refusal::PerPeer),
                }
            }
        }
        if let (Some(max), false) = (self.budget.max_unauthenticated, authenticated) {
            if self.count(|e| !e.authenticated) >= max {
                match self.greediest_unauthenticated() {
                    Some(id) => evict.push(self.take(id)),
                    None => return self.refuse(evict, Refusal::Full),
                }
            }
        }
        if self.entries.len() >= self.budget.max_connections {
            match self.victim(|_| true) {
                Some(id) => evict.push(self.take(id)),
                None => return self.refuse(evict, Refusal::Full),
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert(
            id,
            Entry {
                peer,
                authenticated,
                phase: Phase::Waiting,
                since: now,
            },
        );
        Admit::Accept {
            id,
            evict: evict.into_iter().map(|(id, _)| id).collect(),
        }
    }

    /// A connection's phase changed at `now`.
    pub(crate) fn set_phase(&mut self, id: ConnId, phase: Phase, now: Instant) {
        if let Some(e) = self.entries.get_mut(&id) {
            if e.phase != phase {
                e.phase = phase;
                e.since = now;
            }
        }
    }

    /// A connection proved who it is: it leaves the unauthenticated budget.
    pub(crate) fn authenticate(&mut self, id: ConnId) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.authenticated = true;
        }
    }

    /// A connection ended (or was evicted before: then nothing happens).
    pub(crate) fn remove(&mut self, id: ConnId) {
        self.entries.remove(&id);
    }

    /// Nothing was evicted after all: the victims chosen go back (the refusal of a newcomer
    /// must not cost anyone their connection).
    fn refuse(&mut self, evicted: Vec<(ConnId, Entry)>, why: Refusal) -> Admit {
        self.entries.extend(evicted);
        Admit::Refuse(why)
    }

    fn count(&self, pred: impl Fn(&Entry) -> bool) -> usize {
        self.entries.values().filter(|e| pred(e)).count()
    }

    fn victim(&self, pred: impl Fn(&Entry) -> bool) -> Option<ConnId> {
        self.entries
            .iter()
            .filter(|(_, e)| pred(e))
            .filter_map(|(id, e)| Some((e.eviction_rank()?, *id)))
            .min()
            .map(|(_, id)| id)
    }

    /// The longest-waiting unauthenticated connection of the peer holding the most of them.
    fn greediest_unauthenticated(&self) -> Option<ConnId> {
        let mut per_peer: HashMap<Option<IpAddr>, usize> = HashMap::new();
        for e in self.entries.values().filter(|e| !e.authenticated) {
            *per_peer.entry(e.peer).or_default() += 1;
        }
        self.entries
            .iter()
            .filter(|(_, e)| !e.authenticated)
            .filter_map(|(id, e)| {
                let (class, since) = e.eviction_rank()?;
                let held = per_peer.get(&e.peer).copied().unwrap_or(0);
                Some(((class, std::cmp::Reverse(held), since), *id))
            })
            .min()
            .map(|(_, id)| id)
    }

    fn take(&mut self, id: ConnId) -> (ConnId, Entry) {
        let entry = self
            .entries
            .remove(&id)
            .expect("victims come from the table");
        (id, entry)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    fn unix(max: usize) -> Table {
        Table::new(Budget {
            max_connections: max,
            max_per_peer: None,
            max_unauthenticated: None,
        })
    }

    fn tcp(max: usize, per_peer: usize, unauthenticated: usize) -> Table {
        Table::new(Budget {
            max_connections: max,
            max_per_peer: Some(per_peer),
            max_unauthenticated: Some(unauthenticated),
        })
    }

    fn accept(
        t: &mut Table,
        peer: Option<IpAddr>,
        auth: bool,
        at: Instant,
    ) -> (ConnId, Vec<ConnId>) {
        match t.admit(peer, auth, at) {
            Admit::Accept { id, evict } => (id, evict),
            other => panic!("refused: {other:?}"),
        }
    }

    #[test]
    fn at_the_cap_the_longest_waiting_connection_makes_room() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut t = unix(3);
        let (a, _) = accept(&mut t, None, true, t0);
        let (b, _) = accept(&mut t, None, true, t0 + s);
        let (c, _) = accept(&mut t, None, true, t0 + 2 * s);
        // `a` answers a request, `b` went idle after one at t0 + 5 s: `c` waited longest.
        t.set_phase(a, Phase::Busy, t0 + 3 * s);
        t.set_phase(b, Phase::Busy, t0 + 4 * s);
        t.set_phase(b, Phase::Waiting, t0 + 5 * s);
        let (d, evicted) = accept(&mut t, None, true, t0 + 6 * s);
        assert_eq!(evicted, vec![c]);
        assert_eq!(t.len(), 3);
        // Next: `b` (idle since 5 s) before `d` (6 s); `a` is never chosen while busy.
        let (_, evicted) = accept(&mut t, None, true, t0 + 7 * s);
        assert_eq!(evicted, vec![b]);
        let (_, evicted) = accept(&mut t, None, true, t0 + 8 * s);
        assert_eq!(evicted, vec![d]);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn streams_go_after_waiting_connections_and_busy_ones_never() {
        let t0 = Instant::now();
        let mut t = unix(2);
        let (a, _) = accept(&mut t, None, true, t0);
        let (b, _) = accept(&mut t, None, true, t0);
        t.set_phase(a, Phase::Streaming, t0);
        let (c, evicted) = accept(&mut t, None, true, t0 + Duration::from_secs(1));
        assert_eq!(
            evicted,
            vec![b],
            "the waiting one goes, not the older stream"
        );
        t.set_phase(c, Phase::Busy, t0);
        let (d, evicted) = accept(&mut t, None, true, t0 + Duration::from_secs(2));
        assert_eq!(evicted, vec![a], "with nobody waiting, the stream goes");
        t.set_phase(d, Phase::Busy, t0);
        assert_eq!(
            t.admit(None, true, t0 + Duration::from_secs(3)),
            Admit::Refuse(Refusal::Full)
        );
        assert_eq!(t.len(), 2);
        // A connection that ends frees its place.
        t.remove(c);
        accept(&mut t, None, true, t0 + Duration::from_secs(4));
    }

    #[test]
    fn a_peer_at_its_cap_pushes_out_its_own_connections_only() {
        let t0 = Instant::now();
        let mut t = tcp(100, 2, 50);
        let (operator, _) = accept(&mut t, ip(1), false, t0);
        let (x1, _) = accept(&mut t, ip(2), false, t0);
        let (x2, _) = accept(&mut t, ip(2), false, t0);
        for i in 1..10 {
            let (_, evicted) = accept(&mut t, ip(2), false, t0 + Duration::from_secs(i));
            assert_eq!(evicted.len(), 1);
            assert_ne!(evicted[0], operator);
        }
        assert!(t.entries.contains_key(&operator));
        assert!(!t.entries.contains_key(&x1) && !t.entries.contains_key(&x2));
        // When all of a peer's connections are answering requests, its newcomer is refused.
        let ids: Vec<ConnId> = t
            .entries
            .iter()
            .filter(|(_, e)| e.peer == ip(2))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            t.set_phase(id, Phase::Busy, t0);
        }
        assert_eq!(t.admit(ip(2), false, t0), Admit::Refuse(Refusal::PerPeer));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn strangers_never_take_an_authenticated_operators_place() {
        let t0 = Instant::now();
        let mut t = tcp(8, 100, 4);
        let (operator, _) = accept(&mut t, ip(1), false, t0);
        t.authenticate(operator);
        // Four strangers on four addresses fill the unauthenticated budget.
        for peer in 2..6 {
            accept(
                &mut t,
                ip(peer),
                false,
                t0 + Duration::from_secs(u64::from(peer)),
            );
        }
        // More strangers push out strangers, oldest first; the idle operator stays.
        for i in 0..20u64 {
            let (_, evicted) = accept(&mut t, ip(7), false, t0 + Duration::from_secs(10 + i));
            assert_eq!(evicted.len(), 1);
            assert_ne!(evicted[0], operator);
        }
        assert_eq!(t.count(|e| !e.authenticated), 4);
        assert!(t.entries.contains_key(&operator));
    }

    #[test]
    fn the_peer_holding_most_of_the_unauthenticated_budget_gives_way_first() {
        let t0 = Instant::now();
        let mut t = tcp(100, 100, 4);
        let (lone, _) = accept(&mut t, ip(1), false, t0);
        for i in 1..4 {
            accept(&mut t, ip(2), false, t0 + Duration::from_secs(i));
        }
        // `lone` waited longest, but ip(2) holds three of the four places.
        let (_, evicted) = accept(&mut t, ip(3), false, t0 + Duration::from_secs(9));
        assert_eq!(evicted.len(), 1);
        assert_ne!(evicted[0], lone);
        assert!(t.entries.contains_key(&lone));
        assert_eq!(t.count(|e| e.peer == ip(2)), 2);
    }

    #[test]
    fn a_refused_newcomer_costs_nobody_their_connection() {
        let t0 = Instant::now();
        // The per-peer cap finds a victim (`a`, idle), then the unauthenticated budget is full
        // of a connection being answered: the newcomer is refused and `a` keeps its place.
        let mut t = tcp(10, 1, 1);
        let (a, _) = accept(&mut t, ip(1), false, t0);
        t.authenticate(a);
        let (b, _) = accept(&mut t, ip(2), false, t0);
        t.set_phase(b, Phase::Busy, t0);
        assert_eq!(t.admit(ip(1), false, t0), Admit::Refuse(Refusal::Full));
        assert_eq!(t.len(), 2);
        assert!(t.entries.contains_key(&a) && t.entries.contains_key(&b));
    }
}
