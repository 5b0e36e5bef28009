//! [`EtcdLeadership`]: an election on an etcd lease, and the fence of each term.
//!
//! A campaign grants a lease of the configured TTL, keeps it alive from a background task
//! (a keepalive every TTL/3), and campaigns on the election `<cluster>/leader` with this manager's
//! location as value. Once elected, the term's fence holds while the lease is known valid:
//! `valid_until = sent + TTL − margin`, where `sent` is when the last *acknowledged* keepalive
//! request was sent (the lease cannot expire in etcd before that), measured on the monotonic
//! clock, which keeps running while the process is stopped. The term is lost when etcd says the
//! lease is gone (TTL 0), when `valid_until` passes without a newer acknowledgement (etcd
//! unreachable, no quorum, this process paused), or when observing the election shows another
//! leader. A failed keepalive stream alone does not end the term: the stream is reopened (the
//! client balances over every endpoint) as long as the lease is still known valid.
//!
//! When a term ends (its fence is dropped, or it is lost) the keepalive task resigns and revokes
//! the lease, best effort, so that another manager takes over at once rather than after the TTL.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use etcd_client::{
    Client, ConnectOptions, LeaderKey, LeaseKeepAliveStream, LeaseKeeper, ResignOptions,
};
use serde_json::{json, Value};

use infrakit_group::Fence;
use infrakit_manager::{Leadership, ManagerError, Term};

use crate::call::{call, transient, CallError, REQUEST_TIMEOUT};
use crate::endpoints_list;
use crate::session::{lock, Current, ElectionKey, Session};
use crate::store::EtcdStore;

/// The lease TTL when none is configured.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3);

/// How long `connect` waits for the cluster to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the member list shown by `info` is refreshed.
const MEMBERS_REFRESH: Duration = Duration::from_secs(5);
/// Pause before reopening an election observation that failed.
const OBSERVE_RETRY: Duration = Duration::from_millis(200);
/// Pause before campaigning again after the request failed on its way.
const CAMPAIGN_RETRY: Duration = Duration::from_millis(50);

fn backend(message: impl Into<String>) -> ManagerError {
    ManagerError::Backend(message.into())
}

/// A backend failure while doing `context`, caused by `source`.
fn caused(
    context: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> ManagerError {
    ManagerError::BackendCaused {
        context: context.into(),
        source: Box::new(source),
    }
}

/// The fence of one term; dropping its last reference ends the term.
#[derive(Debug)]
struct LeaseFence {
    session: Arc<Session>,
    current: Current,
}

impl Fence for LeaseFence {
    fn check(&self) -> Result<(), String> {
        self.session.check()
    }
}

impl Drop for LeaseFence {
    fn drop(&mut self) {
        {
            let mut current = lock(&self.current);
            if current
                .as_ref()
                .is_some_and(|s| Arc::ptr_eq(s, &self.session))
            {
                *current = None;
            }
        }
        self.session.lose("the term ended");
    }
}

/// Ends a session when a campaign is abandoned (error or cancellation) before it became a term.
struct LoseOnDrop(Option<Arc<Session>>);

impl Drop for LoseOnDrop {
    fn drop(&mut self) {
        if let Some(session) = self.0.take() {
            session.lose("the campaign was abandoned");
        }
    }
}

struct Inner {
    client: Client,
    endpoints: Vec<String>,
    cluster: String,
    election: String,
    location: String,
    ttl: Duration,
    margin: Duration,
    paused: Arc<AtomicBool>,
    /// The latest session: campaigning or leading.
    latest: Mutex<Option<Arc<Session>>>,
    /// The session of the current term, shared with the stores.
    current: Current,
    members: Mutex<Value>,
}

/// Leadership among managers sharing an etcd cluster.
///
/// Create it with [`EtcdLeadership::connect`], take its [`EtcdStore`] with
/// [`EtcdLeadership::store`], and hand both to [`infrakit_manager::Manager::new`].
pub struct EtcdLeadership {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EtcdLeadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdLeadership")
            .field("endpoints", &self.inner.endpoints)
            .field("election", &self.inner.election)
            .field("location", &self.inner.location)
            .field("ttl", &self.inner.ttl)
            .finish()
    }
}

fn member_json(m: &etcd_client::Member) -> Value {
    json!({
        "ID": format!("{:x}", m.id()),
        "Name": m.name(),
        "ClientURLs": m.client_urls(),
        "PeerURLs": m.peer_urls(),
        "Learner": m.is_learner(),
    })
}

impl EtcdLeadership {
    /// Connects to the etcd cluster at `endpoints` (`http://host:port` or `host:port`). Keys live
    /// under `cluster` (e.g. `infrakit`); `location` (this manager's socket path) is what other
    /// managers are told to forward to while this one leads; `ttl` is the lease TTL (whole
    /// seconds, at least one; [`DEFAULT_TTL`] is a good choice): a leader that stops renewing
    /// stops acting within it, and another takes over shortly after.
    ///
    /// Fails, naming the endpoints, when the cluster does not answer within a few seconds.
    pub async fn connect(
        endpoints: Vec<String>,
        cluster: &str,
        location: &str,
        ttl: Duration,
    ) -> Result<EtcdLeadership, ManagerError> {
        let cluster = cluster.trim_end_matches('/');
        if endpoints.is_empty() {
            return Err(backend("etcd: no endpoints given"));
        }
        if cluster.is_empty() {
            return Err(backend("etcd: the cluster key prefix is empty"));
        }
        let ttl = Duration::from_secs(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0))
            .max(Duration::from_secs(1));
        let eps = endpoints_list(&endpoints);
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            // A member cut off from the quorum refuses requests at once instead of holding them;
            // they are retried (most likely on another member) within their deadline.
            .with_require_leader(true)
            // etcd refuses pings more often than every 5 s; these only find dead connections.
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(false);
        let client = Client::connect(&endpoints, Some(options))
            .await
            .map_err(|e| caused(format!("cannot connect to etcd at {eps}"), e))?;
        let members = call(CONNECT_TIMEOUT, || {
            let mut client = client.clone();
            async move { client.member_list().await }
        })
        .await
        .map_err(|e| caused(format!("cannot reach etcd at {eps}"), e))?;
        let members = Value::Array(members.members().iter().map(member_json).collect());
        let inner = Arc::new(Inner {
            client,
            endpoints,
            cluster: cluster.to_string(),
            election: format!("{cluster}/leader"),
            location: location.to_string(),
            ttl,
            margin: ttl / 6,
            paused: Arc::new(AtomicBool::new(false)),
            latest: Mutex::new(None),
            current: Arc::new(Mutex::new(None)),
            members: Mutex::new(members),
        });
        tokio::spawn(refresh_members(Arc::downgrade(&inner)));
        Ok(EtcdLeadership { inner })
    }

    /// The store of group state in this cluster, whose writes succeed only while this manager
    /// holds the term it won last (and etcd agrees).
    pub fn store(&self) -> EtcdStore {
        self.section("groups")
    }

    /// The store of the operator's variables in this cluster (the manager's `vars`), fenced
    /// like [`EtcdLeadership::store`].
    pub fn vars_store(&self) -> EtcdStore {
        self.section("vars")
    }

    fn section(&self, section: &str) -> EtcdStore {
        EtcdStore::new(
            self.inner.client.clone(),
            self.inner.endpoints.clone(),
            &self.inner.cluster,
            section,
            self.inner.current.clone(),
        )
    }

    /// The lease TTL in use (rounded up to whole seconds).
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// This manager's location, the election value it campaigns with.
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    /// Stops (`true`) or resumes (`false`) sending keepalives, as if this process were paused or
    /// cut off from etcd: fault injection for tests and drills. Acknowledgements already in
    /// flight are still taken into account.
    pub fn pause_keepalives(&self, paused: bool) {
        self.inner.paused.store(paused, Ordering::SeqCst);
    }

    /// Ends the current term (if any) now, resigning and revoking its lease so that another
    /// manager is elected at once. The term's `lost` token is cancelled.
    pub async fn resign(&self) {
        let session = lock(&self.inner.current).take();
        if let Some(session) = session {
            session.lose("resigned");
            end_session(&self.inner.client, &session).await;
        }
    }

    async fn grant(&self) -> Result<Arc<Session>, ManagerError> {
        let inner = &self.inner;
        let eps = endpoints_list(&inner.endpoints);
        let sent = Instant::now();
        let secs = inner.ttl.as_secs() as i64;
        let granted = call(REQUEST_TIMEOUT, || {
            let mut leases = inner.client.lease_client();
            async move { leases.grant(secs, None).await }
        })
        .await
        .map_err(|e| caused(format!("etcd at {eps}: cannot grant a lease"), e))?;
        let session = Arc::new(Session::new(granted.id(), inner.ttl, inner.margin, sent));
        *lock(&inner.latest) = Some(session.clone());
        tokio::spawn(keep_alive(
            inner.client.clone(),
            session.clone(),
            inner.paused.clone(),
            inner.ttl / 3,
        ));
        Ok(session)
    }
}

#[async_trait]
impl Leadership for EtcdLeadership {
    async fn campaign(&self) -> Result<Term, ManagerError> {
        let inner = &self.inner;
        let eps = endpoints_list(&inner.endpoints);
        let session = self.grant().await?;
        let mut guard = LoseOnDrop(Some(session.clone()));
        let won = loop {
            let mut election = inner.client.election_client();
            let attempt = tokio::select! {
                won = election.campaign(inner.election.clone(), inner.location.clone(), session.lease) => won,
                _ = session.lost.cancelled() => {
                    return Err(backend(format!(
                        "etcd at {eps}: lost the lease while campaigning: {}",
                        session.reason()
                    )));
                }
            };
            match attempt {
                Ok(won) => break won,
                // Campaigning again with the same lease picks up the same candidacy.
                Err(e) if transient(&e) => {
                    tracing::debug!(error = %e, "campaign interrupted; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(CAMPAIGN_RETRY) => {}
                        _ = session.lost.cancelled() => {}
                    }
                }
                Err(e) => {
                    return Err(backend(format!(
                        "etcd at {eps}: campaign for {} failed: {e}",
                        inner.election
                    )))
                }
            }
        };
        let leader: LeaderKey = won
            .leader()
            .cloned()
            .ok_or_else(|| backend("etcd answered a campaign without a leader key"))?;
        // etcd's election returns once the older candidates are gone, even if our own key has
        // meanwhile expired with our lease: check that it is still there, ours, unchanged.
        let got = call(REQUEST_TIMEOUT, || {
            let mut kv = inner.client.kv_client();
            let key = leader.key().to_vec();
            async move { kv.get(key, None).await }
        })
        .await
        .map_err(|e| caused(format!("etcd at {eps}"), e))?;
        let ours = got
            .kvs()
            .first()
            .is_some_and(|kv| kv.lease() == session.lease && kv.create_revision() == leader.rev());
        if !ours {
            return Err(backend(
                "elected, but the election key expired with the lease meanwhile",
            ));
        }
        session.check().map_err(backend)?;
        *lock(&session.elected) = Some(ElectionKey {
            key: leader.key().to_vec(),
            rev: leader.rev(),
            leader: leader.clone(),
        });
        *lock(&inner.current) = Some(session.clone());
        tokio::spawn(observe(
            inner.client.clone(),
            session.clone(),
            inner.election.clone(),
            leader.key().to_vec(),
        ));
        guard.0 = None;
        tracing::info!(
            election = %inner.election,
            location = %inner.location,
            lease = %format!("{:x}", session.lease),
            "elected"
        );
        let lost = session.lost.clone();
        Ok(Term {
            fence: Arc::new(LeaseFence {
                session,
                current: inner.current.clone(),
            }),
            lost,
        })
    }

    async fn leader(&self) -> Result<Option<String>, ManagerError> {
        let inner = &self.inner;
        let eps = endpoints_list(&inner.endpoints);
        let asked = call(REQUEST_TIMEOUT, || {
            let mut election = inner.client.election_client();
            let name = inner.election.clone();
            async move { election.leader(name).await }
        })
        .await;
        match asked {
            Ok(resp) => Ok(resp
                .kv()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())),
            Err(CallError::Failed(e)) if e.to_string().contains("election: no leader") => Ok(None),
            Err(e) => Err(backend(format!("etcd at {eps}: {e}"))),
        }
    }

    fn info(&self) -> Value {
        let inner = &self.inner;
        let latest = lock(&inner.latest).clone();
        let leading = lock(&inner.current)
            .as_ref()
            .is_some_and(|s| !s.lost.is_cancelled());
        let (lease, valid) = match &latest {
            Some(s) if !s.lost.is_cancelled() => {
                (Value::String(format!("{:x}", s.lease)), s.check().is_ok())
            }
            _ => (Value::Null, false),
        };
        json!({
            "Backend": "etcd",
            "Endpoints": inner.endpoints,
            "Election": inner.election,
            "Location": inner.location,
            "LeaseTTLSeconds": inner.ttl.as_secs(),
            "Lease": lease,
            "LeaseValid": valid,
            "Leading": leading,
            "Members": lock(&inner.members).clone(),
        })
    }
}

/// Refreshes the member list shown by `info` until the leadership object is dropped.
async fn refresh_members(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(MEMBERS_REFRESH).await;
        let Some(client) = inner.upgrade().map(|i| i.client.clone()) else {
            return;
        };
        let listed = call(REQUEST_TIMEOUT, || {
            let mut client = client.clone();
            async move { client.member_list().await }
        })
        .await;
        if let Ok(resp) = listed {
            let members = Value::Array(resp.members().iter().map(member_json).collect());
            match inner.upgrade() {
                Some(inner) => *lock(&inner.members) = members,
                None => return,
            }
        }
    }
}

/// The next keepalive acknowledgement, or never when no stream is open.
async fn next_ack(
    stream: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
) -> Result<Option<etcd_client::LeaseKeepAliveResponse>, etcd_client::Error> {
    match stream {
        Some((_, acks)) => acks.message().await,
        None => std::future::pending().await,
    }
}

/// Keeps a session's lease alive until the session is lost, then gives it up.
async fn keep_alive(
    client: Client,
    session: Arc<Session>,
    paused: Arc<AtomicBool>,
    interval: Duration,
) {
    let lease = session.lease;
    let mut leases = client.lease_client();
    let mut stream: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
    // When each unacknowledged request was sent; etcd answers in order.
    let mut in_flight: VecDeque<Instant> = VecDeque::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = tokio::time::Instant::from_std(session.valid_until());
        tokio::select! {
            _ = session.lost.cancelled() => break,
            _ = tokio::time::sleep_until(deadline) => {
                if Instant::now() >= session.valid_until() {
                    session.lose(format!(
                        "lease {lease:x} was not renewed in time (etcd unreachable, without quorum, or this process was paused)"
                    ));
                    break;
                }
            }
            _ = tick.tick() => {
                if paused.load(Ordering::SeqCst) {
                    continue;
                }
                match stream.as_mut() {
                    Some((keeper, _)) => {
                        in_flight.push_back(Instant::now());
                        if let Err(e) = keeper.keep_alive().await {
                            tracing::warn!(lease = %format!("{lease:x}"), error = %e, "keepalive failed; reopening");
                            stream = None;
                            in_flight.clear();
                        }
                    }
                    None => {
                        // Opening the stream sends a first keepalive and waits for its answer.
                        let sent = Instant::now();
                        match tokio::time::timeout(interval, leases.keep_alive(lease)).await {
                            Ok(Ok(opened)) => {
                                session.renewed(sent, session.ttl.as_secs() as i64);
                                stream = Some(opened);
                            }
                            Ok(Err(etcd_client::Error::LeaseKeepAliveError(e))) if e == "lease not found" => {
                                session.lose(format!("etcd reports lease {lease:x} expired"));
                                break;
                            }
                            Ok(Err(e)) => {
                                tracing::warn!(lease = %format!("{lease:x}"), error = %e, "cannot open the keepalive stream");
                            }
                            Err(_) => {
                                tracing::warn!(lease = %format!("{lease:x}"), "no keepalive answer within {interval:?}");
                            }
                        }
                    }
                }
            }
            ack = next_ack(&mut stream) => match ack {
                Ok(Some(ack)) => {
                    let sent = in_flight.pop_front();
                    if ack.ttl() <= 0 {
                        session.lose(format!("etcd reports lease {lease:x} expired"));
                        break;
                    }
                    if let Some(sent) = sent {
                        session.renewed(sent, ack.ttl());
                    }
                }
                Ok(None) => {
                    stream = None;
                    in_flight.clear();
                }
                Err(e) => {
                    tracing::warn!(lease = %format!("{lease:x}"), error = %e, "keepalive stream failed; reopening");
                    stream = None;
                    in_flight.clear();
                }
            }
        }
    }
    drop(stream);
    end_session(&client, &session).await;
}

/// Resigns (if elected) and revokes the session's lease, best effort, so that the next
/// candidate is elected at once.
async fn end_session(client: &Client, session: &Session) {
    let limit = (session.ttl / 3).max(Duration::from_millis(500));
    if let Some(elected) = session.elected() {
        let _ = call(limit, || {
            let mut election = client.election_client();
            let options = ResignOptions::new().with_leader(elected.leader.clone());
            async move { election.resign(Some(options)).await }
        })
        .await;
    }
    let revoked = call(limit, || {
        let mut leases = client.lease_client();
        async move { leases.revoke(session.lease).await }
    })
    .await;
    match revoked {
        Ok(_) => tracing::debug!(lease = %format!("{:x}", session.lease), "lease revoked"),
        Err(e) => {
            tracing::debug!(lease = %format!("{:x}", session.lease), error = %e, "cannot revoke the lease; it expires by itself")
        }
    }
}

/// Watches the election while leading: another leader means this term is over.
async fn observe(client: Client, session: Arc<Session>, name: String, ours: Vec<u8>) {
    let mut election = client.election_client();
    loop {
        let opened = tokio::select! {
            _ = session.lost.cancelled() => return,
            opened = tokio::time::timeout(REQUEST_TIMEOUT, election.observe(name.clone())) => opened,
        };
        if let Ok(Ok(mut stream)) = opened {
            loop {
                let next = tokio::select! {
                    _ = session.lost.cancelled() => return,
                    next = stream.message() => next,
                };
                match next {
                    Ok(Some(resp)) => {
                        if let Some(kv) = resp.kv() {
                            if kv.key() != ours.as_slice() {
                                session.lose(format!(
                                    "another manager leads: {}",
                                    String::from_utf8_lossy(kv.value())
                                ));
                                return;
                            }
                        }
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        tokio::select! {
            _ = session.lost.cancelled() => return,
            _ = tokio::time::sleep(OBSERVE_RETRY) => {}
        }
    }
}
