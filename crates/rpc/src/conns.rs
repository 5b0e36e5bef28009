//! The live connections of one listener: admitting newcomers (see [`crate::admission`] for
//! whom a full listener closes), closing the chosen ones, and counting it all in
//! [`ConnectionMetrics`].

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::admission::{Admit, Budget, ConnId, Phase, Table};

/// Labels of a listener's connection gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    server: String,
    listener: &'static str,
}

/// Labels of connections closed or refused.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    server: String,
    listener: &'static str,
    reason: &'static str,
}

/// Why the server closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// It sent no complete request head in time (new or idle keep-alive connection).
    Idle,
    /// A request body or a TLS handshake did not arrive in time.
    Slow,
    /// It made room for a newcomer while the listener was full.
    Evicted,
}

impl Closed {
    fn label(self) -> &'static str {
        match self {
            Closed::Idle => "idle",
            Closed::Slow => "slow",
            Closed::Evicted => "evicted",
        }
    }
}

/// Connection counts of plugin servers, as Prometheus instruments: register them once
/// ([`ConnectionMetrics::register`]) and hand clones to servers
/// ([`crate::ServerOptions::metrics`]); clones share their values.
///
/// - `rpc_connections{server, listener}`: open now (`listener` is `unix` or `tcp`);
/// - `rpc_connections_accepted_total{server, listener}`: kept when they arrived;
/// - `rpc_connections_closed_total{server, listener, reason}`: closed by the server, `reason`
///   `idle` (no request head in time), `slow` (request body or TLS handshake too slow) or
///   `evicted` (made room while the listener was full);
/// - `rpc_connections_refused_total{server, listener, reason}`: newcomers closed at once,
///   `per_peer` or `full` (everything in their budget busy answering requests), or
///   `tls` (failed TLS handshake).
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    open: Family<ListenerLabels, Gauge>,
    accepted: Family<ListenerLabels, Counter>,
    closed: Family<ReasonLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
}

impl ConnectionMetrics {
    /// Adds the instruments to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "rpc_connections",
            "Connections open on a plugin server's listener",
            self.open.clone(),
        );
        registry.register(
            "rpc_connections_accepted",
            "Connections kept when they arrived on a plugin server's listener",
            self.accepted.clone(),
        );
        registry.register(
            "rpc_connections_closed",
            "Connections the server closed: idle (no request head in time), slow (body or TLS handshake too slow), evicted (made room while full)",
            self.closed.clone(),
        );
        registry.register(
            "rpc_connections_refused",
            "Connections closed as soon as accepted: per_peer or full (everything in their budget busy), tls (handshake failed)",
            self.refused.clone(),
        );
    }

    /// Connections open now on `listener` (`unix` or `tcp`) of server `server`.
    pub fn open(&self, server: &str, listener: &'static str) -> i64 {
        self.open.get_or_create(&labels(server, listener)).get()
    }

    /// Connections `server`'s `listener` kept when they arrived.
    pub fn accepted(&self, server: &str, listener: &'static str) -> u64 {
        self.accepted.get_or_create(&labels(server, listener)).get()
    }

    /// Connections of `server`'s `listener` closed for `reason` (`idle`, `slow`, `evicted`).
    pub fn closed(&self, server: &str, listener: &'static str, reason: &'static str) -> u64 {
        self.closed
            .get_or_create(&reason_labels(server, listener, reason))
            .get()
    }

    /// Newcomers of `server`'s `listener` refused for `reason` (`per_peer`, `full`, `tls`).
    pub fn refused(&self, server: &str, listener: &'static str, reason: &'static str) -> u64 {
        self.refused
            .get_or_create(&reason_labels(server, listener, reason))
            .get()
    }
}

fn labels(server: &str, listener: &'static str) -> ListenerLabels {
    ListenerLabels {
        server: server.to_string(),
        listener,
    }
}

fn reason_labels(server: &str, listener: &'static str, reason: &'static str) -> ReasonLabels {
    ReasonLabels {
        server: server.to_string(),
        listener,
        reason,
    }
}

struct State {
    table: Table,
    evictors: std::collections::HashMap<ConnId, CancellationToken>,
}

/// One listener's connections.
pub(crate) struct Listener {
    server: String,
    kind: &'static str,
    state: Mutex<State>,
    metrics: ConnectionMetrics,
}

impl Listener {
    /// A listener of server `server`, `kind` `unix` or `tcp`.
    pub(crate) fn new(
        server: &str,
        kind: &'static str,
        budget: Budget,
        metrics: ConnectionMetrics,
    ) -> Arc<Listener> {
        Arc::new(Listener {
            server: server.to_string(),
            kind,
            state: Mutex::new(State {
                table: Table::new(budget),
                evictors: Default::default(),
            }),
            metrics,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Looks at a newcomer: `None` when it is to be closed at once; otherwise its handle, after
    /// closing the connections that made room for it.
    pub(crate) fn admit(
        self: &Arc<Self>,
        peer: Option<IpAddr>,
        authenticated: bool,
    ) -> Option<Conn> {
        let evicted = CancellationToken::new();
        let (id, victims) = {
            let mut state = self.state();
            match state.table.admit(peer, authenticated, Instant::now()) {
                Admit::Refuse(why) => {
                    drop(state);
                    self.refused(why.label());
                    return None;
                }
                Admit::Accept { id, evict } => {
                    state.evictors.insert(id, evicted.clone());
                    let victims: Vec<_> = evict
                        .iter()
                        .filter_map(|v| state.evictors.remove(v))
                        .collect();
                    (id, victims)
                }
            }
        };
        for victim in &victims {
            victim.cancel();
        }
        if !victims.is_empty() {
            self.metrics
                .closed
                .get_or_create(&reason_labels(
                    &self.server,
                    self.kind,
                    Closed::Evicted.label(),
                ))
                .inc_by(victims.len() as u64);
            tracing::debug!(
                listener = self.kind,
                evicted = victims.len(),
                "listener full: closed the longest-waiting connections"
            );
        }
        let labels = labels(&self.server, self.kind);
        self.metrics.open.get_or_create(&labels).inc();
        self.metrics.accepted.get_or_create(&labels).inc();
        Some(Conn {
            listener: self.clone(),
            id,
            evicted,
            served: AtomicBool::new(false),
            closed: Mutex::new(None),
        })
    }

    /// Counts a newcomer closed at once for `reason`.
    pub(crate) fn refused(&self, reason: &'static str) {
        self.metrics
            .refused
            .get_or_create(&reason_labels(&self.server, self.kind, reason))
            .inc();
    }
}

/// One admitted connection. Dropping it takes it out of its listener.
pub(crate) struct Conn {
    listener: Arc<Listener>,
    id: ConnId,
    evicted: CancellationToken,
    served: AtomicBool,
    closed: Mutex<Option<Closed>>,
}

impl Conn {
    /// Cancelled when the connection must close to make room.
    pub(crate) fn evicted(&self) -> &CancellationToken {
        &self.evicted
    }

    /// The connection is now doing `phase`.
    pub(crate) fn phase(&self, phase: Phase) {
        if phase != Phase::Waiting {
            self.served.store(true, Ordering::Relaxed);
        }
        self.listener
            .state()
            .table
            .set_phase(self.id, phase, Instant::now());
    }

    /// A request head arrived: the connection is waiting for its body.
    pub(crate) fn request_started(&self) {
        self.served.store(true, Ordering::Relaxed);
        self.phase(Phase::Waiting);
    }

    /// Whether a request head ever arrived.
    pub(crate) fn served(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    /// The client proved who it is.
    pub(crate) fn authenticate(&self) {
        self.listener.state().table.authenticate(self.id);
    }

    /// The server is closing the connection for `why` (the first reason given counts).
    pub(crate) fn closing(&self, why: Closed) {
        let mut closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        if closed.is_none() && !self.evicted.is_cancelled() {
            *closed = Some(why);
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        {
            let mut state = self.listener.state();
            state.table.remove(self.id);
            state.evictors.remove(&self.id);
        }
        let l = &self.listener;
        l.metrics
            .open
            .get_or_create(&labels(&l.server, l.kind))
            .dec();
        let closed = *self
            .closed
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(why) = closed {
            l.metrics
                .closed
                .get_or_create(&reason_labels(&l.server, l.kind, why.label()))
                .inc();
        }
    }
}
