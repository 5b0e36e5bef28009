//! The etcd backend against real three-member etcd clusters: election, fencing, quorum loss,
//! the leader-only store, and managers failing over while running a group.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use infrakit_flavor_vanilla::VanillaFlavor;
use infrakit_group::ControllerConfig;
use infrakit_instance_simulator::{Simulator, SimulatorConfig};
use infrakit_manager::{Backend, Leadership, Manager, ManagerError, Term};
use infrakit_manager_etcd::{EtcdLeadership, EtcdStore};
use infrakit_rpc::{Handlers, PluginServer, Plugins};
use infrakit_spi::manager::Manager as _;
use infrakit_spi::Group;
use infrakit_store::{Store, StoreError};

use infrakit_testkit::{eventually, group, EtcdCluster};

const TTL: Duration = Duration::from_secs(3);
/// How long a test waits for something that takes about a TTL on an idle machine: generous, as
/// keepalives, elections and etcd itself run late on a loaded one. Only safety is asserted (one
/// leader at a time, the fence fails, the term is lost), never how fast.
const PATIENCE: Duration = Duration::from_secs(30);
const CLUSTER: &str = "infrakit";

async fn leadership(cluster: &EtcdCluster, location: &str) -> Arc<EtcdLeadership> {
    Arc::new(
        EtcdLeadership::connect(cluster.endpoints(), CLUSTER, location, TTL)
            .await
            .unwrap(),
    )
}

fn campaign(l: &Arc<EtcdLeadership>) -> JoinHandle<Result<Term, ManagerError>> {
    let l = l.clone();
    tokio::spawn(async move { l.campaign().await })
}

/// Waits for the first of `campaigns` to finish and returns its index and term.
async fn first_elected(
    campaigns: &mut [Option<JoinHandle<Result<Term, ManagerError>>>],
    within: Duration,
) -> (usize, Term) {
    let i = eventually("a campaign is won", within, || {
        let done = campaigns
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.is_finished()));
        async move { done }
    })
    .await;
    let term = campaigns[i].take().unwrap().await.unwrap().unwrap();
    (i, term)
}

fn pending(campaigns: &[Option<JoinHandle<Result<Term, ManagerError>>>]) -> usize {
    campaigns
        .iter()
        .filter(|c| c.as_ref().is_some_and(|c| !c.is_finished()))
        .count()
}

fn not_the_leader(r: Result<(), StoreError>) -> String {
    let err = r
        .expect_err("a write without leadership must fail")
        .to_string();
    assert!(err.contains("not the leader"), "{err}");
    err
}

#[tokio::test]
async fn connecting_to_nothing_fails_naming_the_endpoints() {
    // Reserved for this test process, and nothing listens on it.
    let port = infrakit_testkit::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let err = EtcdLeadership::connect(vec![endpoint.clone()], CLUSTER, "/m", TTL)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&endpoint), "{err}");
    let err = EtcdLeadership::connect(vec![], CLUSTER, "/m", TTL)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no endpoints"), "{err}");
}

#[tokio::test]
async fn exactly_one_of_three_leads_and_another_takes_over_when_its_term_ends() {
    let cluster = EtcdCluster::start().await;
    let mut ls = Vec::new();
    for i in 0..3 {
        ls.push(leadership(&cluster, &format!("/run/infrakit/manager-{i}")).await);
    }
    for l in &ls {
        assert_eq!(l.leader().await.unwrap(), None);
    }
    let mut campaigns: Vec<_> = ls.iter().map(|l| Some(campaign(l))).collect();
    let (first, term) = first_elected(&mut campaigns, PATIENCE).await;
    let winner = ls[first].location().to_string();
    for l in &ls {
        assert_eq!(l.leader().await.unwrap().as_deref(), Some(winner.as_str()));
    }
    // The others are still waiting: exactly one term.
    assert_eq!(pending(&campaigns), 2);
    term.fence.check().unwrap();
    assert!(!term.lost.is_cancelled());
    let info = ls[first].info();
    assert_eq!(info["Backend"], "etcd");
    assert_eq!(info["Leading"], true);
    assert_eq!(info["LeaseValid"], true);
    assert_eq!(info["LeaseTTLSeconds"], 3);
    assert_eq!(info["Endpoints"], json!(cluster.endpoints()));
    assert_eq!(info["Members"].as_array().unwrap().len(), 3, "{info}");
    assert!(info["Lease"].is_string(), "{info}");

    // Ending the term (dropping it) hands leadership over.
    let lost = term.lost.clone();
    drop(term);
    assert!(lost.is_cancelled());
    let (second, term) = first_elected(&mut campaigns, PATIENCE).await;
    assert_ne!(second, first);
    assert_eq!(pending(&campaigns), 1);
    let winner = ls[second].location().to_string();
    for l in &ls {
        assert_eq!(l.leader().await.unwrap().as_deref(), Some(winner.as_str()));
    }
    assert_eq!(ls[first].info()["Leading"], false);

    // An explicit resignation does the same.
    ls[second].resign().await;
    assert!(term.lost.is_cancelled());
    assert!(term.fence.check().is_err());
    let (third, _term) = first_elected(&mut campaigns, PATIENCE).await;
    assert!(third != first && third != second);
    assert_eq!(
        ls[0].leader().await.unwrap().as_deref(),
        Some(ls[third].location())
    );
}

#[tokio::test]
async fn a_leader_whose_keepalives_stop_is_fenced_before_another_leads_and_its_writes_rejected() {
    let cluster = EtcdCluster::start().await;
    let a = leadership(&cluster, "/run/a").await;
    let b = leadership(&cluster, "/run/b").await;
    let (store_a, store_b) = (a.store(), b.store());
    let term_a = a.campaign().await.unwrap();
    store_a.put("web", &json!({"v": 1})).await.unwrap();
    let mut slot = [Some(campaign(&b))];

    a.pause_keepalives(true);
    term_a.fence.check().unwrap();
    // Never two leaders: once the other campaign has won, the paused leader's fence fails.
    // (Whether it was won is read before the fence is checked.)
    eventually("the paused leader's fence fails", PATIENCE, || async {
        let b_elected = slot[0].as_ref().is_some_and(|c| c.is_finished());
        let fenced = term_a.fence.check().is_err();
        assert!(
            fenced || !b_elected,
            "another manager was elected while the paused leader's fence still passed"
        );
        fenced.then_some(())
    })
    .await;
    let why = term_a.fence.check().unwrap_err();
    assert!(why.contains("lease"), "{why}");
    eventually("the paused leader's term is lost", PATIENCE, || async {
        term_a.lost.is_cancelled().then_some(())
    })
    .await;
    assert_eq!(a.info()["LeaseValid"], false);

    // Another manager takes over.
    let (_, term_b) = first_elected(&mut slot, PATIENCE).await;
    term_b.fence.check().unwrap();
    assert_eq!(a.leader().await.unwrap().as_deref(), Some("/run/b"));

    // The former leader still holds its term object, but etcd refuses its writes.
    a.pause_keepalives(false);
    not_the_leader(store_a.put("web", &json!({"v": "stale"})).await);
    not_the_leader(store_a.delete("web").await);
    store_b.put("web", &json!({"v": 2})).await.unwrap();
    assert_eq!(store_a.load().await.unwrap()["web"], json!({"v": 2}));
    // Resuming keepalives does not revive a lost term.
    assert!(term_a.fence.check().is_err());
}

/// A whole process stopped (SIGSTOP) past its lease: simulated by blocking the test's
/// single-threaded runtime, so that no task of the leader runs, until another manager (on its own
/// runtime and thread) has been elected. On resuming, before any of its tasks has run, the fence
/// fails, and the former leader's writes are refused by etcd.
#[tokio::test(flavor = "current_thread")]
async fn a_frozen_leader_is_fenced_the_moment_it_resumes() {
    let cluster = EtcdCluster::start().await;
    let a = leadership(&cluster, "/run/a").await;
    let store_a = a.store();
    let term_a = a.campaign().await.unwrap();
    store_a.put("web", &json!({"v": 1})).await.unwrap();

    let endpoints = cluster.endpoints();
    let (elected_tx, elected) = std::sync::mpsc::channel();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let other = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let b = EtcdLeadership::connect(endpoints, CLUSTER, "/run/b", TTL)
                .await
                .unwrap();
            let term = b.campaign().await.unwrap();
            b.store().put("web", &json!({"v": 2})).await.unwrap();
            elected_tx.send(()).unwrap();
            let _ = stop_rx.await;
            drop(term);
        })
    });

    // Frozen: this thread runs the leader's runtime and blocks it until the other is elected.
    elected
        .recv_timeout(PATIENCE)
        .expect("another manager is elected while the leader is frozen");
    // Resumed: nothing has run yet, and the fence already fails.
    let why = term_a.fence.check().unwrap_err();
    assert!(why.contains("lease"), "{why}");
    not_the_leader(store_a.put("web", &json!({"v": "stale"})).await);
    eventually("the frozen leader's term is lost", PATIENCE, || async {
        term_a.lost.is_cancelled().then_some(())
    })
    .await;
    assert_eq!(store_a.load().await.unwrap()["web"], json!({"v": 2}));
    assert_eq!(a.leader().await.unwrap().as_deref(), Some("/run/b"));
    stop.send(()).unwrap();
    other.join().unwrap();
}

#[tokio::test]
async fn losing_quorum_fences_the_leader_and_stops_elections_until_it_returns() {
    let mut cluster = EtcdCluster::start().await;
    let a = leadership(&cluster, "/run/a").await;
    let b = leadership(&cluster, "/run/b").await;
    let c = leadership(&cluster, "/run/c").await;
    let term_a = a.campaign().await.unwrap();
    let campaign_b = campaign(&b);

    cluster.stop(1);
    cluster.stop(2);
    eventually(
        "the leader's fence fails without quorum",
        PATIENCE,
        || async { term_a.fence.check().is_err().then_some(()) },
    )
    .await;
    eventually("the leader's term is lost", PATIENCE, || async {
        term_a.lost.is_cancelled().then_some(())
    })
    .await;
    // Nobody can be elected: the waiting candidate loses its own lease, a new one gets none.
    let b_result = tokio::time::timeout(PATIENCE, campaign_b)
        .await
        .expect("the waiting campaign ends without quorum")
        .unwrap();
    assert!(b_result.is_err());
    assert!(c.campaign().await.is_err());
    // Without quorum a write cannot be decided: it fails.
    assert!(a.store().put("web", &json!({})).await.is_err());
    drop(term_a);

    cluster.restart(1);
    cluster.restart(2);
    cluster.wait_healthy(Duration::from_secs(30)).await;
    let term = eventually("a leader is elected again", Duration::from_secs(30), || {
        let c = c.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(5), c.campaign())
                .await
                .ok()?
                .ok()
        }
    })
    .await;
    term.fence.check().unwrap();
    for l in [&a, &b, &c] {
        match l.leader().await {
            Ok(leader) => assert_eq!(leader.as_deref(), Some("/run/c")),
            Err(e) => panic!("leader of {}: {e}", l.location()),
        }
    }
    c.store().put("web", &json!({"v": 1})).await.unwrap();
}

#[tokio::test]
async fn the_store_round_trips_and_only_the_leader_writes() {
    let cluster = EtcdCluster::start().await;
    let a = leadership(&cluster, "/run/a").await;
    let b = leadership(&cluster, "/run/b").await;
    let (store_a, store_b): (EtcdStore, EtcdStore) = (a.store(), b.store());
    assert_eq!(store_a.prefix(), "infrakit/groups/");
    assert!(store_a.load().await.unwrap().is_empty());
    let err = not_the_leader(store_a.put("web", &json!({"v": 1})).await);
    assert!(err.contains("infrakit/groups/web"), "{err}");

    let term = a.campaign().await.unwrap();
    store_a.put("web", &json!({"v": 1})).await.unwrap();
    store_a.put("db", &json!({"v": 2})).await.unwrap();
    store_a.put("web", &json!({"v": 3})).await.unwrap();
    let all = store_b.load().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all["web"], json!({"v": 3}));
    assert_eq!(all["db"], json!({"v": 2}));
    store_a.delete("web").await.unwrap();
    store_a.delete("web").await.unwrap();
    assert_eq!(
        store_b.load().await.unwrap().keys().collect::<Vec<_>>(),
        vec!["db"]
    );
    assert!(matches!(
        store_a.put("a/b", &json!(1)).await,
        Err(StoreError::InvalidKey(_))
    ));
    // A follower reads but never writes.
    not_the_leader(store_b.put("db", &json!({"v": "follower"})).await);
    not_the_leader(store_b.delete("db").await);

    // A record that is not JSON is reported with its key.
    let mut raw = etcd_client::Client::connect(cluster.endpoints(), None)
        .await
        .unwrap();
    raw.put("infrakit/groups/broken", "{nope", None)
        .await
        .unwrap();
    let err = store_b.load().await.unwrap_err().to_string();
    assert!(err.contains("infrakit/groups/broken"), "{err}");
    raw.delete("infrakit/groups/broken", None).await.unwrap();

    // After resigning, writes are refused again; the new leader's go through.
    let campaign_b = campaign(&b);
    a.resign().await;
    not_the_leader(store_a.put("db", &json!({"v": 4})).await);
    let _term_b = campaign_b.await.unwrap().unwrap();
    store_b.put("db", &json!({"v": 5})).await.unwrap();
    assert_eq!(store_a.load().await.unwrap()["db"], json!({"v": 5}));
    drop(term);
}

struct Node {
    leadership: Arc<EtcdLeadership>,
    manager: Arc<Manager>,
    shutdown: CancellationToken,
    run: Option<JoinHandle<()>>,
    _server: PluginServer,
}

#[tokio::test]
async fn managers_fail_over_resume_the_group_from_etcd_and_heal_it() {
    let cluster = EtcdCluster::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    let sim = Arc::new(Simulator::new(SimulatorConfig::default()));
    let plugins = Arc::new(Plugins::new(&dir));
    plugins.register_instance("instance-simulator", sim.clone());
    plugins.register_publisher("instance-simulator", sim.clone());
    plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
    let config = ControllerConfig {
        poll_interval: Duration::from_millis(200),
        ..ControllerConfig::default()
    };

    let mut nodes = Vec::new();
    for i in 0..3 {
        let name = format!("group-{i}");
        let location = dir.join(&name).display().to_string();
        let leadership = leadership(&cluster, &location).await;
        let store = leadership.store();
        let manager = Manager::new(
            &name,
            &location,
            plugins.clone(),
            config.clone(),
            Backend {
                info: store.info(),
                store: Arc::new(store),
                vars: Some(Arc::new(leadership.vars_store())),
                leadership: leadership.clone(),
            },
        );
        let server = PluginServer::start(&dir, &name, Handlers::new().group(manager.clone()))
            .await
            .unwrap();
        assert_eq!(server.socket().display().to_string(), location);
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(manager.clone().run(shutdown.clone()));
        nodes.push(Node {
            leadership,
            manager,
            shutdown,
            run: Some(run),
            _server: server,
        });
    }

    async fn leaders(nodes: &[Node], among: &[usize]) -> Vec<usize> {
        let mut out = Vec::new();
        for &i in among {
            if nodes[i].manager.is_leader().await.unwrap() {
                out.push(i);
            }
        }
        out
    }

    let leader = eventually("one manager leads", PATIENCE, || async {
        let l = leaders(&nodes, &[0, 1, 2]).await;
        (l.len() == 1).then(|| l[0])
    })
    .await;
    let follower = (leader + 1) % 3;

    // Committed through a follower: forwarded to the leader over its socket.
    let spec = group::spec("web")
        .size(2)
        .instance("instance-simulator", json!({"Version": "v1"}))
        .flavor("flavor-vanilla", serde_json::Value::Null)
        .build();
    let details = nodes[follower]
        .manager
        .commit_group(spec.clone(), false)
        .await
        .unwrap();
    assert_eq!(details, "Managing 2 instances");
    let before = group::ids(
        &group::converged(&*nodes[follower].manager, "web", 2, Duration::from_secs(20)).await,
    );
    let saved = nodes[follower].leadership.store().load().await.unwrap();
    assert_eq!(saved["web"]["Spec"]["ID"], "web");

    // The leader stops; another takes over and resumes the group from etcd.
    nodes[leader].shutdown.cancel();
    nodes[leader].run.take().unwrap().await.unwrap();
    let rest: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let next = eventually("another manager leads", PATIENCE, || async {
        let l = leaders(&nodes, &rest).await;
        (l.len() == 1).then(|| l[0])
    })
    .await;
    assert_eq!(
        nodes[leader].leadership.leader().await.unwrap().as_deref(),
        Some(nodes[next].leadership.location())
    );
    // The stopped manager forwards to the new leader, which manages the same instances.
    let d = nodes[leader].manager.describe_group("web").await.unwrap();
    assert_eq!(group::ids(&d), before);
    assert_eq!(sim.len(), 2);

    // And heals the group: a dead instance is replaced.
    let victim = before.iter().next().unwrap().clone();
    assert!(sim.kill(&victim));
    let after = group::ids(
        &group::converged_where(
            &*nodes[next].manager,
            "web",
            2,
            Duration::from_secs(20),
            "the dead instance replaced",
            |d| !group::ids(d).contains(&victim),
        )
        .await,
    );
    assert_eq!(after.intersection(&before).count(), 1);
    assert_eq!(sim.len(), 2);

    for node in &mut nodes {
        node.shutdown.cancel();
        if let Some(run) = node.run.take() {
            run.await.unwrap();
        }
    }
}
