//! Real Docker engines joined into a real swarm by the flavor. Each engine is a `dockerd` in a
//! network namespace of its own, started by the real process instance plugin; the group
//! controller runs in-process. Needs root and Debian's `docker.io` (`scripts/test.sh` installs
//! it); fails with a clear message without them.
//!
//! The tests that run engines take turns ([`common::SERIAL`]).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bollard::query_parameters::EventsOptions;
use futures::StreamExt;
use serde_json::json;

use infrakit_flavor_swarm::{Role, SwarmFlavor, GROUP_LABEL, LINK_TAG};
use infrakit_spi::{
    Allocation, Description, Error, Flavor, Group, GroupSpec, Health, Index, Instance, Spec, Tags,
};
use infrakit_testkit::{eventually, group};

use common::{engine_labels, reachable_manager, ready, Fixture, BOOTSTRAP, SERIAL, SUBNET};

/// Instance IDs by link.
fn links(instances: &[Description]) -> BTreeMap<String, String> {
    instances
        .iter()
        .map(|d| (d.tags[LINK_TAG].to_string(), d.id.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_join_a_killed_one_is_replaced_and_scaling_in_drains() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::new().await;
    let group = "workers";
    f.group
        .commit_group(
            f.spec(group, json!({"Size": 2}), "worker", f.flavor(json!({}))),
            false,
        )
        .await
        .unwrap();

    // Both engines join as workers, each node tied to its instance by the link label.
    let healthy = |n: usize| f.healthy(group, n);
    let d = eventually("two healthy workers", Duration::from_secs(120), || {
        healthy(2)
    })
    .await;
    let nodes = f.nodes().await;
    for (link, id) in links(&d.instances) {
        let node = &nodes
            .get(&link)
            .unwrap_or_else(|| panic!("no node for {id}; {}", f.log_of(&id)))[0];
        assert!(ready(node), "{node:?}");
        assert!(node.manager_status.is_none(), "a worker: {node:?}");
        let labels = engine_labels(node);
        assert_eq!(labels[GROUP_LABEL], group);
        assert_eq!(labels["lab"], f.lab.prefix);
        let addr = node.status.as_ref().unwrap().addr.clone().unwrap();
        assert_eq!(addr, f.address_of(&id));
        assert!(addr.starts_with(SUBNET));
    }
    assert_eq!(nodes.values().map(Vec::len).sum::<usize>(), 3);

    // SIGKILL one engine: its instance goes, a new engine joins, the dead node is removed.
    let before = links(&d.instances);
    let (victim_link, victim) = before.iter().next().unwrap();
    let victim_node = nodes[victim_link][0].id.clone().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(f.engine_pid(victim)),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let d = eventually(
        "the killed worker is replaced by a new healthy one",
        Duration::from_secs(120),
        || async {
            let d = healthy(2).await?;
            (!d.instances.iter().any(|i| &i.id == victim)).then_some(d)
        },
    )
    .await;
    let after = links(&d.instances);
    assert!(!after.contains_key(victim_link));
    let nodes = eventually(
        "the dead node leaves the swarm",
        Duration::from_secs(60),
        || async {
            let nodes = f.nodes().await;
            let gone = !nodes.contains_key(victim_link);
            let live = after
                .keys()
                .all(|l| nodes.get(l).is_some_and(|n| n.len() == 1 && ready(&n[0])));
            (gone && live).then_some(nodes)
        },
    )
    .await;
    assert!(!nodes
        .values()
        .flatten()
        .any(|n| n.id.as_deref() == Some(victim_node.as_str())));

    // Scale in: the removed instance's node is drained, then removed. (The event stream only
    // starts when first polled: it asks for the events since now.)
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    let mut events = f.manager.events(Some(EventsOptions {
        since: Some(since.to_string()),
        filters: Some(std::collections::HashMap::from([(
            "type".to_string(),
            vec!["node".to_string()],
        )])),
        ..Default::default()
    }));
    f.group
        .commit_group(
            f.spec(group, json!({"Size": 1}), "worker", f.flavor(json!({}))),
            false,
        )
        .await
        .unwrap();
    let d = eventually("one worker left", Duration::from_secs(60), || healthy(1)).await;
    let kept: BTreeSet<String> = links(&d.instances).into_keys().collect();
    let removed_link = after.keys().find(|l| !kept.contains(*l)).unwrap();
    let removed_node = nodes[removed_link][0].id.clone().unwrap();
    let mut seen = Vec::new();
    while !seen.iter().any(|(a, _): &(String, _)| a == "remove") {
        let e = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("the node's removal is announced")
            .unwrap()
            .unwrap();
        let actor = e.actor.unwrap_or_default();
        if actor.id.as_deref() == Some(removed_node.as_str()) {
            seen.push((
                e.action.unwrap_or_default(),
                actor.attributes.unwrap_or_default(),
            ));
        }
    }
    let drained = seen
        .iter()
        .position(|(a, attrs)| {
            a == "update" && attrs.get("availability.new").map(String::as_str) == Some("drain")
        })
        .unwrap_or_else(|| panic!("no drain before the removal: {seen:?}"));
    assert_eq!(seen.last().unwrap().0, "remove");
    assert!(drained < seen.len() - 1);
    let nodes = f.nodes().await;
    assert!(!nodes.contains_key(removed_link));
    assert!(nodes.contains_key(kept.iter().next().unwrap()));

    // Destroying the group removes its last node too.
    f.group.destroy_group(group).await.unwrap();
    let nodes = f.nodes().await;
    assert_eq!(
        nodes.keys().collect::<Vec<_>>(),
        [""],
        "only the bootstrap manager is left"
    );
    assert!(f.members(group).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managers_advertise_their_logical_ids_a_killed_one_rejoins_and_destroy_demotes() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::new().await;
    let group = "managers";
    let ids = [format!("{SUBNET}.2"), format!("{SUBNET}.3")];
    f.group
        .commit_group(
            f.spec(
                group,
                json!({"LogicalIDs": ids}),
                "manager",
                f.flavor(json!({})),
            ),
            false,
        )
        .await
        .unwrap();
    let d = eventually("two healthy managers", Duration::from_secs(120), || {
        f.healthy(group, 2)
    })
    .await;
    let nodes = f.nodes().await;
    for i in &d.instances {
        let lid = i.logical_id().unwrap();
        let node = &nodes
            .get(&i.tags[LINK_TAG])
            .unwrap_or_else(|| panic!("no node for {}; {}", i.id, f.log_of(&i.id)))[0];
        assert!(ready(node) && reachable_manager(node), "{node:?}");
        assert_eq!(
            node.manager_status.as_ref().unwrap().addr.as_deref(),
            Some(format!("{lid}:2377").as_str()),
            "advertises its logical ID"
        );
    }
    let managers = |nodes: &BTreeMap<String, Vec<bollard::models::Node>>| {
        nodes
            .values()
            .flatten()
            .filter(|n| reachable_manager(n))
            .count()
    };
    assert_eq!(managers(&nodes), 3);

    // SIGKILL the engine of the first manager: a new engine takes its logical ID and joins as
    // a manager; the dead node is demoted and removed.
    let victim = d
        .instances
        .iter()
        .find(|i| i.logical_id() == Some(ids[0].as_str()))
        .unwrap()
        .clone();
    let victim_link = victim.tags[LINK_TAG].to_string();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(f.engine_pid(&victim.id)),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually(
        "the killed manager is replaced, rejoins, and its old node is gone",
        Duration::from_secs(150),
        || async {
            let d = f.healthy(group, 2).await?;
            let replaced = d
                .instances
                .iter()
                .find(|i| i.logical_id() == Some(ids[0].as_str()))?;
            if replaced.id == victim.id {
                return None;
            }
            let nodes = f.nodes().await;
            let node = nodes.get(&replaced.tags[LINK_TAG])?.first()?;
            let ok = reachable_manager(node)
                && !nodes.contains_key(&victim_link)
                && managers(&nodes) == 3
                && nodes.values().flatten().count() == 3;
            ok.then_some(())
        },
    )
    .await;

    // Destroying the group demotes both managers (a manager cannot be removed otherwise) and
    // removes them: the bootstrap manager is alone again.
    f.group.destroy_group(group).await.unwrap();
    let nodes = f.nodes().await;
    assert_eq!(nodes.keys().collect::<Vec<_>>(), [""]);
    assert_eq!(managers(&nodes), 1);
    assert!(f.members(group).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_init_script_labels_restarts_and_joins_an_engine() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::new().await;
    // A "machine": an engine outside any group that reads its labels from a configuration file.
    let config = f.lab.dir.path().join("daemon.json");
    std::fs::write(&config, "{}").unwrap();
    let machine = f
        .procs
        .provision(Spec {
            properties: json!({"Cmd": f.lab.launcher(), "Args": ["--config-file", config]}),
            ..Default::default()
        })
        .await
        .unwrap();
    let dir = f.procs.instance_dir(&machine).unwrap();
    let socket = dir.join("docker.sock");
    common::engine_at(&socket, Duration::from_secs(60)).await;
    let worker = SwarmFlavor::new(Role::Worker);

    // An engine that is not a manager cannot tell how to join.
    let not_manager =
        json!({"Docker": {"Host": format!("unix://{}", socket.display())}, "Join": "Command"});
    let e = worker
        .prepare(
            &not_manager,
            Spec::default(),
            &Allocation::size(1),
            &Index::default(),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("not a swarm manager") && e.to_string().contains("swarm init"),
        "{e}"
    );

    // The restart command: dockerd reloads its labels on SIGHUP; wait until it has, for at
    // most 600 looks (a minute and more), failing the Init otherwise.
    let restart = format!(
        "kill -HUP $(cat {pid}) && n=0 && until docker info --format '{{{{json .Labels}}}}' | grep -q infrakit-link; do \
           n=$((n + 1)); \
           if [ $n -ge 600 ]; then echo 'dockerd did not reload its labels' >&2; exit 1; fi; \
           sleep 0.1; \
         done",
        pid = dir.join("docker.pid").display()
    );
    let props = json!({
        "Docker": {"Host": f.docker_host()},
        "DockerRestartCommand": restart,
        "DaemonConfig": config,
        "EngineLabels": {"zone": "a"},
    });
    let spec = Spec {
        tags: Tags::from([("infrakit.group".to_string(), "machines".to_string())]),
        ..Default::default()
    };
    let prepared = worker
        .prepare(&props, spec, &Allocation::size(1), &Index::default())
        .await
        .unwrap();
    let run_init = || {
        std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&prepared.init)
            .env("DOCKER_HOST", format!("unix://{}", socket.display()))
            .output()
            .unwrap()
    };
    let out = run_init();
    assert!(out.status.success(), "{out:?}");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let link = prepared.tags[LINK_TAG].to_string();
    assert_eq!(
        written,
        json!({"labels": [format!("infrakit-link={link}"), "infrakit.group=machines", "zone=a"]})
    );
    let nodes = f.nodes().await;
    let node = &nodes[&link][0];
    let labels = engine_labels(node);
    assert_eq!(labels["zone"], "a");
    assert_eq!(labels[GROUP_LABEL], "machines");
    let instance = Description {
        id: machine.clone(),
        tags: prepared.tags.clone(),
        ..Default::default()
    };
    eventually(
        "the machine is healthy",
        Duration::from_secs(30),
        || async {
            (worker.healthy(&props, &instance).await.ok()? == Health::Healthy).then_some(())
        },
    )
    .await;

    // Running it again (a reboot) changes nothing: the engine is in the swarm already.
    let out = run_init();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in a swarm"));
    assert_eq!(f.nodes().await[&link].len(), 1);

    // Drain takes the node out of the swarm; it is no longer healthy.
    worker.drain(&props, &instance).await.unwrap();
    assert!(!f.nodes().await.contains_key(&link));
    assert_ne!(
        worker.healthy(&props, &instance).await.unwrap(),
        Health::Healthy
    );
    // Draining again finds nothing to do.
    worker.drain(&props, &instance).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_manager_fails_prepare_and_leaves_health_unknown() {
    let tmp = tempfile::tempdir().unwrap();
    let host = format!("unix://{}", tmp.path().join("nothing.sock").display());
    let props = json!({"Docker": {"Host": host}, "Join": "Command"});
    let worker = SwarmFlavor::new(Role::Worker);
    let e = worker
        .prepare(
            &props,
            Spec::default(),
            &Allocation::size(1),
            &Index::default(),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains(&host), "{e}");
    let instance = Description {
        id: "i-1".into(),
        tags: Tags::from([(LINK_TAG.to_string(), "abc".to_string())]),
        ..Default::default()
    };
    assert_eq!(
        worker.healthy(&props, &instance).await.unwrap(),
        Health::Unknown
    );
    // Without a link tag the instance was not prepared by the flavor.
    assert_eq!(
        worker
            .healthy(&props, &Description::default())
            .await
            .unwrap(),
        Health::Unhealthy
    );
    assert!(worker.drain(&props, &instance).await.is_err());
    worker.drain(&props, &Description::default()).await.unwrap();
}

#[tokio::test]
async fn bad_specs_are_rejected_with_the_field_and_nothing_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let procs = std::sync::Arc::new(
        infrakit_instance_process::ProcessPlugin::open(tmp.path().join("procs")).unwrap(),
    );
    let plugins = std::sync::Arc::new(infrakit_rpc::Plugins::new(tmp.path().join("plugins")));
    plugins.register_instance("instance-process", procs.clone());
    let (manager, worker) = SwarmFlavor::pair();
    plugins.register_flavor("flavor-swarm/manager", std::sync::Arc::new(manager));
    plugins.register_flavor("flavor-swarm/worker", std::sync::Arc::new(worker));
    let group =
        infrakit_group::GroupPlugin::new(plugins, infrakit_group::ControllerConfig::default());
    let spec = |allocation: serde_json::Value, role: &str, flavor: serde_json::Value| {
        group::spec("bad")
            .allocation(allocation)
            .instance("instance-process", json!({"Cmd": "dockerd"}))
            .flavor(&format!("flavor-swarm/{role}"), flavor)
            .build()
    };
    let size = json!({"Size": 2});
    let pets = json!({"LogicalIDs": ["10.0.0.1", "10.0.0.2"]});
    let cases = [
        (
            spec(size.clone(), "worker", json!({})),
            "Properties.Flavor.Properties.DockerRestartCommand",
        ),
        (
            spec(
                size.clone(),
                "worker",
                json!({"Join": "Command", "Docker": {"Host": "10.0.0.1:2375"}}),
            ),
            "Properties.Flavor.Properties.Docker.Host",
        ),
        (
            spec(
                size.clone(),
                "worker",
                json!({"Join": "Command", "EngineLabels": {"infrakit.group": "x"}}),
            ),
            "Properties.Flavor.Properties.EngineLabels.infrakit.group",
        ),
        (
            spec(
                size.clone(),
                "worker",
                json!({"Join": "Command", "Health": {"JoinGrace": "later"}}),
            ),
            "Properties.Flavor.Properties.Health.JoinGrace",
        ),
        (
            spec(size.clone(), "manager", json!({"Join": "Command"})),
            "Properties.Flavor.Properties",
        ),
        (
            spec(
                json!({"LogicalIDs": ["10.0.0.1", "not an address"]}),
                "manager",
                json!({"Join": "Command"}),
            ),
            "Properties.Flavor.Properties",
        ),
        (
            spec(
                pets.clone(),
                "manager",
                json!({"Join": "Command", "Attachments": {"10.0.0.9": [{"ID": "v"}]}}),
            ),
            "Properties.Flavor.Properties.Attachments.10.0.0.9",
        ),
    ];
    for (spec, want) in cases {
        match group.commit_group(spec, false).await.unwrap_err() {
            Error::Invalid { path, .. } => assert_eq!(path, want),
            other => panic!("expected an error at {want}, got {other}"),
        }
    }
    assert!(procs
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap()
        .is_empty());
    assert!(group.inspect_groups().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_example_runs() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::new().await;
    assert!(
        common::doc_block("sh", "swarm init").contains(&format!("--advertise-addr {BOOTSTRAP}"))
    );
    // The page's groups, with this lab's launcher and bootstrap manager in place of the paths.
    let documented = |marker: &str| -> GroupSpec {
        let mut spec: GroupSpec = serde_json::from_str(&common::doc_block("json", marker)).unwrap();
        let cmd = &mut spec.properties["Instance"]["Properties"]["Cmd"];
        assert_eq!(*cmd, "/usr/local/bin/infrakit-engine");
        *cmd = json!(f.lab.launcher());
        let host = &mut spec.properties["Flavor"]["Properties"]["Docker"]["Host"];
        assert_eq!(
            *host,
            "unix:///var/lib/infrakit-swarm-lab/bootstrap/docker.sock"
        );
        *host = json!(f.docker_host());
        spec
    };
    for spec in [
        documented("\"swarm-managers\""),
        documented("\"swarm-workers\""),
    ] {
        f.group.commit_group(spec, false).await.unwrap();
    }
    let nodes = eventually(
        "three managers and two workers",
        Duration::from_secs(120),
        || async {
            f.healthy("swarm-managers", 2).await?;
            f.healthy("swarm-workers", 2).await?;
            let nodes: Vec<_> = f.nodes().await.into_values().flatten().collect();
            let managers = nodes.iter().filter(|n| reachable_manager(n)).count();
            let workers: Vec<_> = nodes
                .iter()
                .filter(|n| ready(n) && n.manager_status.is_none())
                .collect();
            (managers == 3 && workers.len() == 2 && nodes.len() == 5)
                .then(|| workers.into_iter().cloned().collect::<Vec<_>>())
        },
    )
    .await;
    for n in &nodes {
        let labels = engine_labels(n);
        assert_eq!(labels["tier"], "web");
        assert_eq!(labels[GROUP_LABEL], "swarm-workers");
    }

    // The machine example is valid.
    let machine: serde_json::Value =
        serde_json::from_str(&common::doc_block("json", "DockerRestartCommand")).unwrap();
    SwarmFlavor::new(Role::Worker)
        .validate(&machine["Properties"], &Allocation::size(3))
        .await
        .unwrap();

    f.group.destroy_group("swarm-workers").await.unwrap();
    f.group.destroy_group("swarm-managers").await.unwrap();
    assert_eq!(f.nodes().await.keys().collect::<Vec<_>>(), [""]);
}
