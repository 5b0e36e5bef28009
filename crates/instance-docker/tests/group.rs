//! The group controller managing containers through the Docker plugin, in-process, against the
//! real engine. The poll interval is 60 s: everything that happens faster is driven by the
//! plugin's events.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::{InspectContainerOptions, RemoveContainerOptions};
use serde_json::json;

use infrakit_spi::{Group, Instance};
use infrakit_testkit::{eventually, group, unique_name};

use common::{exec, fixture, image, kill, running_names, sleeper, Cleanup};

/// How long a test waits for what the plugin's events drive (a dead or unhealthy container
/// replaced): several times what it takes on an idle machine (a few seconds), and still below
/// the 60 s poll that would otherwise find it. Reaching it in time is what shows the events
/// work.
const BEFORE_THE_POLL: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_group_is_kept_at_its_size_through_kills_and_removals() {
    let f = fixture("cattle").await;
    let _cleanup = Cleanup::new(&f.label);
    let image = image().await;
    f.group
        .commit_group(
            f.spec(
                json!({"Size": 5}),
                sleeper(image, "1"),
                json!({"Tags": {"tier": "web"}}),
                json!({}),
            ),
            false,
        )
        .await
        .unwrap();
    let before = f
        .running(5, &BTreeSet::new(), Duration::from_secs(60))
        .await;
    f.converged(5).await;
    for name in &before {
        let c = f
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .unwrap();
        let labels = c.config.unwrap().labels.unwrap();
        assert_eq!(labels["infrakit.group"], f.id);
        assert_eq!(labels["tier"], "web");
        assert!(labels.contains_key("infrakit.config.hash"));
        assert!(name.starts_with(&format!("{}-", f.id)));
    }

    // A killed container is replaced long before the 60 s poll.
    let victim = before.iter().next().unwrap().clone();
    kill(&f.docker, &victim).await;
    let after = f
        .running(5, &BTreeSet::from([victim.clone()]), BEFORE_THE_POLL)
        .await;
    assert_eq!(
        before.intersection(&after).count(),
        4,
        "the others are untouched"
    );

    // Two removed at once (`docker rm -f`): back to five.
    let removed: BTreeSet<String> = after.iter().take(2).cloned().collect();
    let force = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    let (a, b) = {
        let mut it = removed.iter();
        (it.next().unwrap(), it.next().unwrap())
    };
    let (ra, rb) = tokio::join!(
        f.docker.remove_container(a, Some(force.clone())),
        f.docker.remove_container(b, Some(force.clone()))
    );
    ra.unwrap();
    rb.unwrap();
    let healed = f.running(5, &removed, BEFORE_THE_POLL).await;
    assert_eq!(after.intersection(&healed).count(), 3);
    let d = f.converged(5).await;
    assert_eq!(group::ids(&d), healed);
    f.teardown().await;
}

#[tokio::test]
async fn a_surge_rollout_never_drops_below_the_size_nor_exceeds_the_surge() {
    let f = fixture("rollout").await;
    let _cleanup = Cleanup::new(&f.label);
    let image = image().await;
    let updating = json!({"Updating": {"MaxSurge": 1, "MaxUnavailable": 0}});
    f.group
        .commit_group(
            f.spec(
                json!({"Size": 5}),
                sleeper(image, "1"),
                json!({}),
                updating.clone(),
            ),
            false,
        )
        .await
        .unwrap();
    let before = f
        .running(5, &BTreeSet::new(), Duration::from_secs(60))
        .await;
    f.converged(5).await;

    // Sample the engine's view every 100 ms while the rollout runs.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let docker = f.docker.clone();
        let label = f.label.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                samples.push(running_names(&docker, &label).await.len());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        })
    };
    f.group
        .commit_group(
            f.spec(json!({"Size": 5}), sleeper(image, "2"), json!({}), updating),
            false,
        )
        .await
        .unwrap();
    let d = group::converged_where(
        &f.group,
        &f.id,
        5,
        Duration::from_secs(120),
        "the rollout complete, none of the old containers",
        |d| group::rollout_phase(d) == Some("complete") && group::ids(d).is_disjoint(&before),
    )
    .await;
    // Let the sampler see the settled state too.
    let after = f.running(5, &before, Duration::from_secs(30)).await;
    stop.store(true, Ordering::SeqCst);
    let samples = sampler.await.unwrap();
    let (min, max) = (
        *samples.iter().min().unwrap(),
        *samples.iter().max().unwrap(),
    );
    assert!(samples.len() >= 5, "{} samples", samples.len());
    assert!(min >= 5, "saw only {min} running: {samples:?}");
    assert!(max <= 6, "saw {max} running with MaxSurge 1: {samples:?}");
    assert!(samples.contains(&6), "the rollout surged: {samples:?}");
    assert_eq!(group::ids(&d), after);
    for name in &after {
        assert!(f.env_of(name).await.contains(&"VERSION=2".to_string()));
    }
    f.teardown().await;
}

#[tokio::test]
async fn a_replaced_pet_finds_its_volume() {
    let f = fixture("pets").await;
    let volume = unique_name("data");
    let mut cleanup = Cleanup::new(&f.label);
    cleanup.volumes = vec![format!("{volume}-db1"), format!("{volume}-db2")];
    let image = image().await;
    let script =
        format!("echo $HOSTNAME >> /data/{volume}-$INFRAKIT_LOGICAL_ID/history; exec sleep 3600");
    f.group
        .commit_group(
            f.spec(
                json!({"LogicalIDs": ["db1", "db2"]}),
                json!({"image": image, "command": ["sh", "-c", script]}),
                json!({"Attachments": [{"ID": format!("{volume}-{{{{ LogicalID }}}}"), "Type": "volume"}]}),
                json!({}),
            ),
            false,
        )
        .await
        .unwrap();
    let d = f.converged(2).await;
    let pet = format!("{}-db2", f.id);
    assert!(
        d.instances
            .iter()
            .any(|i| i.id == pet && i.logical_id.as_deref() == Some("db2")),
        "{:?}",
        d.instances
    );
    let container_id = |name: String| {
        let docker = f.docker.clone();
        async move {
            docker
                .inspect_container(&name, None::<InspectContainerOptions>)
                .await
                .ok()
                .filter(|c| c.state.as_ref().and_then(|s| s.running) == Some(true))
                .and_then(|c| c.id)
        }
    };
    let history_file = format!("/data/{volume}-db2/history");
    let history = |name: String| {
        let docker = f.docker.clone();
        let path = history_file.clone();
        async move {
            let (code, out) = exec(&docker, &name, &["cat", &path]).await;
            (code == 0).then(|| out.lines().map(str::to_string).collect::<Vec<_>>())
        }
    };
    let old = container_id(pet.clone()).await.unwrap();
    eventually("db2 wrote to its volume", Duration::from_secs(30), || {
        let h = history(pet.clone());
        async move { h.await.filter(|l| l.len() == 1) }
    })
    .await;

    kill(&f.docker, &pet).await;
    let new = eventually("db2 replaced", BEFORE_THE_POLL, || {
        let c = container_id(pet.clone());
        let old = old.clone();
        async move { c.await.filter(|id| *id != old) }
    })
    .await;
    let lines = eventually(
        "the replacement appended to the same volume",
        Duration::from_secs(30),
        || {
            let h = history(pet.clone());
            async move { h.await.filter(|l| l.len() == 2) }
        },
    )
    .await;
    assert_eq!(
        lines,
        vec![old[..12].to_string(), new[..12].to_string()],
        "the replacement sees its predecessor's data"
    );
    let d = f.converged(2).await;
    assert!(d.instances.iter().any(|i| i.id == pet));
    f.teardown().await;
}

#[tokio::test]
async fn a_container_its_healthcheck_calls_unhealthy_is_replaced() {
    let f = fixture("health").await;
    let _cleanup = Cleanup::new(&f.label);
    let image = image().await;
    let mut instance = sleeper(image, "1");
    instance["healthcheck"] = json!({"cmd": "test ! -f /sick", "interval": "200ms", "retries": 1});
    f.group
        .commit_group(
            f.spec(
                json!({"Size": 2}),
                instance,
                json!({}),
                json!({"Health": {"UnhealthyAfter": "1s", "MaxUnhealthy": 1}}),
            ),
            false,
        )
        .await
        .unwrap();
    let before = f
        .running(2, &BTreeSet::new(), Duration::from_secs(60))
        .await;
    let members = [("infrakit.group".to_string(), f.id.clone())].into();
    eventually(
        "the plugin reports both healthy",
        Duration::from_secs(30),
        || async {
            let list = f.plugin.describe_instances(&members, true).await.ok()?;
            (list.len() == 2
                && list
                    .iter()
                    .all(|i| i.properties.as_ref().unwrap().to_value()["Health"] == "healthy"))
            .then_some(())
        },
    )
    .await;
    f.converged(2).await;

    let victim = before.iter().next().unwrap().clone();
    let (code, _) = exec(&f.docker, &victim, &["touch", "/sick"]).await;
    assert_eq!(code, 0);
    let after = f
        .running(2, &BTreeSet::from([victim.clone()]), BEFORE_THE_POLL)
        .await;
    assert_eq!(
        before.intersection(&after).count(),
        1,
        "the healthy one stays"
    );
    f.teardown().await;
}
