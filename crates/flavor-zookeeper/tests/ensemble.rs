//! Real ZooKeeper ensembles, run by the real process instance plugin under the group controller
//! (all in-process), members on loopback ports. Needs Java and Debian's `zookeeper` package
//! (`scripts/test.sh` installs them); fails with a clear message without them.
//!
//! The tests that start JVMs take turns ([`common::SERIAL`]).

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use zookeeper_client as zk;

use infrakit_flavor_zookeeper::prepare::{self, MemberDirs};
use infrakit_flavor_zookeeper::srvr::{self, Mode};
use infrakit_flavor_zookeeper::{Ensemble, ZooKeeperFlavor, ZooKeeperProperties, MYID_TAG};
use infrakit_spi::{
    Allocation, Description, DestroyContext, Error, Flavor, Group, Health, Index, Instance, Spec,
    Tags,
};
use infrakit_testkit::eventually;

use common::{connect_string, count, loopback_members, modes, Fixture, SERIAL};

/// Instance descriptions by logical ID.
fn by_logical_id(instances: &[Description]) -> BTreeMap<String, Description> {
    instances
        .iter()
        .map(|d| (d.logical_id().unwrap().to_string(), d.clone()))
        .collect()
}

async fn client(cluster: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(cluster)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {cluster}: {e}"))
}

#[tokio::test]
async fn the_init_script_writes_what_prepare_describes() {
    let tmp = tempfile::tempdir().unwrap();
    let members = ["127.0.0.1:2181:2888:3888", "127.0.0.1:2182:2889:3889"];
    let props = ZooKeeperProperties::parse(&json!({
        "DataDir": tmp.path().join("it's data"),
        "Config": {"tickTime": 1500},
    }))
    .unwrap();
    let ensemble = Ensemble::parse(&members).unwrap();
    let script = prepare::init_script(&props, &ensemble, 2);
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let dirs = MemberDirs::new(&props.data_dir, 2);
    assert_eq!(
        std::fs::read_to_string(dirs.config_file()).unwrap(),
        prepare::zoo_cfg(&props, &ensemble, 2)
    );
    assert_eq!(std::fs::read_to_string(dirs.myid_file()).unwrap(), "2\n");
    assert!(dirs.logs().is_dir());

    // A failure stops the script (and so the provision).
    let blocked = ZooKeeperProperties::parse(&json!({"DataDir": "/proc/no-such-dir"})).unwrap();
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "{}\necho after",
            prepare::init_script(&blocked, &ensemble, 1)
        ))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("after"));
}

#[tokio::test]
async fn bad_specs_are_rejected_with_the_field_and_nothing_runs() {
    let f = Fixture::new("zk-bad");
    let members = loopback_members(3);
    let cases = [
        (
            f.spec(
                &members,
                json!({"DataDir": f.data_dir, "Config": {"dataDir": "/x"}}),
                json!({}),
            ),
            "Properties.Flavor.Properties.Config.dataDir",
        ),
        (
            f.spec(&members, json!({"DataDir": "relative"}), json!({})),
            "Properties.Flavor.Properties.DataDir",
        ),
        (
            f.spec(
                &members,
                json!({"DataDir": f.data_dir, "Run": {"Java": "java", "Script": "/zkServer.sh"}}),
                json!({}),
            ),
            "Properties.Flavor.Properties.Run.Script",
        ),
        (
            f.spec(
                &["zk1".to_string(), "zk1:70000".to_string()],
                json!({"DataDir": f.data_dir}),
                json!({}),
            ),
            "Properties.Flavor.Properties",
        ),
    ];
    for (spec, want) in cases {
        match f.group.commit_group(spec, false).await.unwrap_err() {
            Error::Invalid { path, .. } => assert_eq!(path, want),
            other => panic!("expected an error at {want}, got {other}"),
        }
    }
    let mut cattle = f.spec(&members, json!({"DataDir": f.data_dir}), json!({}));
    cattle.properties["Allocation"] = json!({"Size": 3});
    let e = f.group.commit_group(cattle, false).await.unwrap_err();
    assert!(e.to_string().contains("logical IDs"), "{e}");
    assert!(f
        .procs
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap()
        .is_empty());
    assert!(!f.data_dir.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ensemble_forms_and_a_killed_member_rejoins_as_itself() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::new("zk-heal");
    let members = loopback_members(3);
    f.group
        .commit_group(f.spec(&members, f.java_flavor(json!({})), json!({})), false)
        .await
        .unwrap();
    let d = f.serving(&members, Duration::from_secs(90)).await;

    // Each member got its own myid, tag and config, in logical ID order.
    let ensemble = Ensemble::parse(&members).unwrap();
    let props = ZooKeeperProperties::parse(&f.java_flavor(json!({}))).unwrap();
    let before = by_logical_id(&d.instances);
    for (i, m) in members.iter().enumerate() {
        let myid = i as u32 + 1;
        assert_eq!(before[m].tags[MYID_TAG], myid.to_string());
        let dirs = MemberDirs::new(&f.data_dir, myid);
        assert_eq!(
            std::fs::read_to_string(dirs.myid_file()).unwrap(),
            format!("{myid}\n")
        );
        assert_eq!(
            std::fs::read_to_string(dirs.config_file()).unwrap(),
            prepare::zoo_cfg(&props, &ensemble, myid)
        );
    }

    // Some data, to find again on the replaced member.
    let c = client(&connect_string(&members)).await;
    let acl = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    c.create("/survivor", b"kept", &acl).await.unwrap();
    drop(c);

    // SIGKILL the leader's process.
    let roles = modes(&members).await;
    let leader_pos = roles
        .iter()
        .position(|m| m.as_ref() == Some(&Mode::Leader))
        .unwrap();
    let leader_lid = &members[leader_pos];
    let victim = before[leader_lid].id.clone();
    let pid = f.procs.pid(&victim).expect("the leader's pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    // A new instance takes the same logical ID and myid, and the ensemble serves again.
    let d = eventually(
        "the killed member is replaced",
        Duration::from_secs(30),
        || async {
            let d = f.group.describe_group(&f.id).await.ok()?;
            let now = by_logical_id(&d.instances);
            let replaced = now.get(leader_lid)?;
            (replaced.id != victim).then_some(d)
        },
    )
    .await;
    let after = by_logical_id(&d.instances);
    let replacement = after[leader_lid].clone();
    assert_eq!(replacement.tags[MYID_TAG], (leader_pos + 1).to_string());
    let d = f.serving(&members, Duration::from_secs(60)).await;
    let settled = by_logical_id(&d.instances);
    assert_eq!(
        settled[leader_lid].id,
        replacement.id,
        "replaced once: {}",
        f.log_of(&replacement.id)
    );
    for (lid, inst) in &before {
        if lid != leader_lid {
            assert_eq!(settled[lid].id, inst.id, "the other members are untouched");
        }
    }
    assert_eq!(
        std::fs::read_to_string(MemberDirs::new(&f.data_dir, leader_pos as u32 + 1).myid_file())
            .unwrap(),
        format!("{}\n", leader_pos + 1)
    );

    // The rejoined member serves the data written before it died.
    let alone = infrakit_flavor_zookeeper::Member::parse(leader_lid)
        .unwrap()
        .client_address();
    let c = client(&alone).await;
    let (data, _) = c.get_data("/survivor").await.unwrap();
    assert_eq!(data, b"kept");
    drop(c);
    f.teardown().await;
}

/// What the writing client saw.
#[derive(Debug, Default)]
struct Writes {
    ops: u64,
    retries: u64,
    worst: Duration,
    errors: Vec<String>,
    /// The value of the last write that was read back.
    last: Option<Vec<u8>>,
}

/// How long one operation of the writer may take, from its first attempt to its success,
/// retries included: the ensemble keeps serving (no election while a member is replaced takes
/// this long), with room for a loaded machine.
const OPERATION_BOUND: Duration = Duration::from_secs(15);
/// The znode the writer writes.
const PATH: &str = "/infrakit-rollout";
/// How long one attempt of an operation (or a connection) may take before it is retried.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// A new client session on the members that serve now (asked with `srvr`), or `None` when none
/// does or the connection takes over [`ATTEMPT_TIMEOUT`]. Retrying on a fresh session measures
/// the ensemble's availability rather than the client library's reconnection back-off (which
/// can sleep most of a second between rounds while an election runs).
async fn reconnect(members: &[String]) -> Option<zk::Client> {
    let mut serving = Vec::new();
    for m in members {
        let addr = infrakit_flavor_zookeeper::Member::parse(m)
            .unwrap()
            .client_address();
        if srvr::query(&addr, Duration::from_secs(1)).await.serving() {
            serving.push(addr);
        }
    }
    if serving.is_empty() {
        return None;
    }
    let cluster = serving.join(",");
    let connect = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&cluster);
    tokio::time::timeout(ATTEMPT_TIMEOUT, connect)
        .await
        .ok()?
        .ok()
}

/// Writes an increasing counter to a znode and reads it back, every 100 ms until `stop`,
/// counting the operations done in `done`. A failed attempt (an error, or no answer within
/// [`ATTEMPT_TIMEOUT`]) is retried on a new session with the members that serve, as soon as one
/// does; every operation must succeed within [`OPERATION_BOUND`]. `worst` is the longest time
/// from an operation's first attempt to its success.
async fn write_and_read(
    members: Vec<String>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> Writes {
    let mut c = client(&connect_string(&members)).await;
    let acl = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    match c.create(PATH, b"0", &acl).await {
        Ok(_) | Err(zk::Error::NodeExists) => {}
        Err(e) => panic!("cannot create {PATH}: {e}"),
    }
    let mut w = Writes::default();
    let mut n: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let value = n.to_string().into_bytes();
        let started = Instant::now();
        loop {
            let attempt = tokio::time::timeout(ATTEMPT_TIMEOUT, async {
                c.set_data(PATH, &value, None).await?;
                c.get_data(PATH).await.map(|(d, _)| d)
            })
            .await;
            match attempt {
                Ok(Ok(read)) => {
                    assert_eq!(read, value, "read back what was written");
                    w.last = Some(read);
                    break;
                }
                Ok(Err(e)) => w.errors.push(format!("{:?}: {e}", started.elapsed())),
                Err(_) => w
                    .errors
                    .push(format!("{:?}: attempt timed out", started.elapsed())),
            }
            w.retries += 1;
            assert!(
                started.elapsed() < OPERATION_BOUND,
                "operation {n} did not succeed within {OPERATION_BOUND:?}: {:?}",
                w.errors
            );
            // Retry on a fresh session once a member serves.
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if let Some(fresh) = reconnect(&members).await {
                    c = fresh;
                    break;
                }
                assert!(
                    started.elapsed() < OPERATION_BOUND,
                    "operation {n}: no member served within {OPERATION_BOUND:?}: {:?}",
                    w.errors
                );
            }
        }
        w.ops += 1;
        done.fetch_add(1, Ordering::SeqCst);
        w.worst = w.worst.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_tick_time_change_never_loses_the_quorum() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::new("zk-roll");
    let members = loopback_members(3);
    // Pets roll one member at a time (MaxUnavailable 1); the next goes only once the new one has
    // served for MinHealthyTime.
    let updating = json!({"Updating": {"MinHealthyTime": "3s"}});
    f.group
        .commit_group(
            f.spec(
                &members,
                f.java_flavor(json!({"tickTime": 2000})),
                updating.clone(),
            ),
            false,
        )
        .await
        .unwrap();
    let d = f.serving(&members, Duration::from_secs(90)).await;
    let before: Vec<String> = d.instances.iter().map(|i| i.id.clone()).collect();
    let old_hash = d.status.as_ref().unwrap().config_hash.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_and_read(members.clone(), stop.clone(), done.clone()));
    // How many members run, every 100 ms: never fewer than two of three.
    let sampler = {
        let procs = f.procs.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let running = procs.describe_instances(&Tags::new(), false).await.unwrap();
                samples.push(running.len());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        })
    };
    // The writer is going before the change starts.
    eventually(
        "the writer's first operations",
        Duration::from_secs(30),
        || async { (done.load(Ordering::SeqCst) >= 3).then_some(()) },
    )
    .await;
    assert!(!writer.is_finished());
    let done_before = done.load(Ordering::SeqCst);

    let details = f
        .group
        .commit_group(
            f.spec(&members, f.java_flavor(json!({"tickTime": 1000})), updating),
            false,
        )
        .await
        .unwrap();
    assert!(details.contains("rolling update"), "{details}");

    let d = eventually(
        "the rolling update completes",
        Duration::from_secs(150),
        || async {
            let d = f.group.describe_group(&f.id).await.ok()?;
            let status = d.status.as_ref()?;
            let phase = status.rollout.as_ref()?.phase;
            let fresh =
                d.instances.len() == 3 && d.instances.iter().all(|i| !before.contains(&i.id));
            (phase == "complete" && d.converged && fresh).then_some(d)
        },
    )
    .await;
    assert_ne!(d.status.as_ref().unwrap().config_hash, old_hash);
    let done_during = done.load(Ordering::SeqCst) - done_before;
    f.serving(&members, Duration::from_secs(30)).await;
    stop.store(true, Ordering::SeqCst);
    let w = writer.await.unwrap_or_else(|e| {
        panic!(
            "the writer failed: {e}\nlogs:\n{}",
            d.instances
                .iter()
                .map(|i| f.log_of(&i.id))
                .collect::<Vec<_>>()
                .join("\n---\n")
        )
    });
    let samples = sampler.await.unwrap();
    assert!(
        samples.iter().all(|n| *n >= 2 && *n <= 3),
        "at most one member down at a time: {samples:?}"
    );
    assert!(samples.contains(&2), "members were replaced: {samples:?}");

    // Every member runs the new tick time.
    for m in &members {
        let addr = infrakit_flavor_zookeeper::Member::parse(m)
            .unwrap()
            .client_address();
        let conf = srvr::four_letter(&addr, "conf", Duration::from_secs(5))
            .await
            .unwrap();
        assert!(conf.contains("tickTime=1000"), "{m}: {conf}");
    }
    let roles = modes(&members).await;
    assert_eq!(count(&roles, Mode::Leader), 1, "{roles:?}");
    eprintln!(
        "rolling update: {} operations ({done_during} during the rollout), {} retries, \
         worst {:?}; errors: {:?}",
        w.ops, w.retries, w.worst, w.errors
    );
    // The ensemble kept serving: every operation succeeded within its bound (the writer fails
    // otherwise), including while members were replaced...
    assert!(done_during >= 1, "the writer kept going: {w:?}");
    // ...and no write was lost: the ensemble holds the last value written and read back.
    let last = w.last.clone().expect("the writer wrote");
    let c = client(&connect_string(&members)).await;
    let (data, _) = c.get_data(PATH).await.unwrap();
    assert_eq!(data, last, "the last write survived the rollout");
    drop(c);
    f.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_member_ensemble_runs_under_zkserver_sh_inside_a_combo() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::new("zk-solo");
    let members = loopback_members(1);
    let flavor = json!({"Flavors": [
        {"Plugin": "flavor-vanilla", "Properties": {
            "Tags": {"role": "coordination"},
            "Init": ["echo vanilla-ran > \"$INFRAKIT_INSTANCE_ID.vanilla\""],
        }},
        {"Plugin": "flavor-zookeeper", "Properties": {
            "DataDir": f.data_dir,
            "Run": {"Script": common::ZK_SERVER_SH, "JvmFlags": ["-Xmx128m"]},
            "Health": {"StartupGrace": "60s", "Timeout": "1s"},
        }},
    ]});
    let mut spec = f.spec(&members, json!(null), json!({}));
    spec.properties["Flavor"] = json!({"Plugin": "flavor-combo", "Properties": flavor});
    f.group.commit_group(spec, false).await.unwrap();
    let d = f.serving(&members, Duration::from_secs(90)).await;
    let inst = &d.instances[0];
    assert_eq!(&inst.tags["role"], "coordination");
    assert_eq!(&inst.tags[MYID_TAG], "1");
    let props = inst.properties.as_ref().unwrap().to_value();
    assert_eq!(props["Cmd"], common::ZK_SERVER_SH);
    let dir = f.procs.instance_dir(&inst.id).unwrap();
    assert!(
        dir.join(format!("{}.vanilla", inst.id)).exists(),
        "the vanilla init line ran before ZooKeeper's"
    );
    let roles = modes(&members).await;
    assert_eq!(roles, [Some(Mode::Standalone)]);

    let addr = infrakit_flavor_zookeeper::Member::parse(&members[0])
        .unwrap()
        .client_address();
    f.teardown().await;
    assert!(
        matches!(
            srvr::query(&addr, Duration::from_secs(1)).await,
            srvr::Probe::Down(_)
        ),
        "destroying the group stops ZooKeeper"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_a_quorum_is_unknown_then_unhealthy() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::new("zk-alone");
    let members = loopback_members(3);
    let flavor = ZooKeeperFlavor::new();
    let mut props = f.java_flavor(json!({}));
    props["Health"] = json!({"StartupGrace": "4s", "Timeout": "1s"});
    let allocation = Allocation {
        size: 0,
        logical_ids: Some(members.clone()),
    };
    flavor.validate(&props, &allocation).await.unwrap();
    // Only the first member runs: it can never form a quorum.
    let spec = flavor
        .prepare(
            &props,
            Spec {
                properties: json!({"Cmd": "zookeeper"}),
                logical_id: Some(members[0].clone()),
                ..Default::default()
            },
            &allocation,
            &Index::default(),
        )
        .await
        .unwrap();
    let id = f.procs.provision(spec).await.unwrap();
    let described = || async {
        f.procs
            .describe_instances(&Tags::new(), true)
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.id == id)
            .expect("the member runs")
    };
    assert_eq!(
        flavor.healthy(&props, &described().await).await.unwrap(),
        Health::Unknown
    );
    // It answers, and says it does not serve.
    let addr = infrakit_flavor_zookeeper::Member::parse(&members[0])
        .unwrap()
        .client_address();
    let why = eventually(
        "the lone member answers srvr",
        Duration::from_secs(30),
        || async {
            match srvr::query(&addr, Duration::from_secs(1)).await {
                srvr::Probe::Answered(srvr::Srvr::NotServing(why)) => Some(why),
                srvr::Probe::Answered(other) => panic!("a lone member serves: {other:?}"),
                srvr::Probe::Down(_) => None,
            }
        },
    )
    .await;
    assert!(why.contains("not currently serving"), "{why}");
    eventually(
        "unhealthy past StartupGrace",
        Duration::from_secs(30),
        || async {
            let h = flavor.healthy(&props, &described().await).await.unwrap();
            assert_ne!(h, Health::Healthy);
            (h == Health::Unhealthy).then_some(())
        },
    )
    .await;
    f.procs
        .destroy(&id, &DestroyContext::default())
        .await
        .unwrap();
}
