//! The group controller managing Vagrant machines (docker provider) through the plugin,
//! in-process, with the vanilla flavor. The plugin publishes no events, so the controller's poll
//! finds a dead machine.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use infrakit_flavor_vanilla::VanillaFlavor;
use infrakit_group::{ControllerConfig, GroupPlugin};
use infrakit_rpc::Plugins;
use infrakit_spi::{Group, GroupDescription};
use infrakit_testkit::{eventually, group, unique_name};
use serde_json::json;

use common::{container_running, exec, kill, sleeper, TestPlugin};

/// The controller's poll interval: how soon a dead machine is noticed.
const POLL: Duration = Duration::from_secs(2);

/// Waits until the group is converged with `n` instances, none of them in `gone`, each of whose
/// container runs.
async fn converged(
    group: &GroupPlugin,
    id: &str,
    n: usize,
    gone: &BTreeSet<String>,
) -> GroupDescription {
    group::converged_where(
        group,
        id,
        n,
        Duration::from_secs(120),
        &format!("every machine running, none of {gone:?}"),
        |d| {
            let ids = group::ids(d);
            ids.is_disjoint(gone) && ids.iter().all(|i| container_running(i))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cattle_group_replaces_a_killed_machine() {
    let t = TestPlugin::new("vg-group").await;
    let plugin = Arc::new(t.plugin.clone());
    let plugins = Arc::new(Plugins::new("/nonexistent/plugins"));
    plugins.register_instance("instance-vagrant", plugin.clone());
    plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
    let group = GroupPlugin::new(
        plugins,
        ControllerConfig {
            poll_interval: POLL,
            ..ControllerConfig::default()
        },
    );
    let id = unique_name("cattle");
    group
        .commit_group(
            group::spec(&id)
                .size(2)
                .instance("instance-vagrant", sleeper(t.image))
                .flavor(
                    "flavor-vanilla",
                    json!({
                        "Init": ["echo \"ready $INFRAKIT_GROUP\" > /ready"],
                        "Tags": {"tier": "web"}
                    }),
                )
                .build(),
            false,
        )
        .await
        .unwrap();

    let before = converged(&group, &id, 2, &BTreeSet::new()).await;
    let members = group::ids(&before);
    for m in &before.instances {
        assert_eq!(m.tags["infrakit.group"], id);
        assert_eq!(&m.tags["tier"], "web");
        assert!(m.tags.contains_key("infrakit.config.hash"));
        assert!(m.id.starts_with(&format!("{id}-")), "{}", m.id);
        assert_eq!(t.vagrant_state(&m.id).await.as_deref(), Some("running"));
        let ready = eventually("the flavor's Init ran", Duration::from_secs(10), || async {
            exec(&m.id, &["cat", "/ready"]).ok()
        })
        .await;
        assert_eq!(ready.trim(), format!("ready {id}"));
    }

    // Kill one machine's container: Vagrant reports it stopped, the group replaces it.
    let victim = members.iter().next().unwrap().clone();
    kill(&victim);
    // Unless the plugin already saw it dead and removed it.
    let state = t.vagrant_state(&victim).await;
    assert!(
        matches!(state.as_deref(), None | Some("stopped")),
        "vagrant status of the killed machine: {state:?}"
    );
    let after = converged(&group, &id, 2, &BTreeSet::from([victim.clone()])).await;
    let now = group::ids(&after);
    assert_eq!(
        members.intersection(&now).count(),
        1,
        "the survivor is untouched: {members:?} -> {now:?}"
    );
    let replacement = now.difference(&members).next().unwrap().clone();
    assert_eq!(
        t.vagrant_state(&replacement).await.as_deref(),
        Some("running")
    );
    // The dead machine is cleaned up, not left behind.
    eventually(
        "the killed machine's directory is removed",
        Duration::from_secs(60),
        || async { (!t.plugin.instance_dir(&victim).exists()).then_some(()) },
    )
    .await;

    group.destroy_group(&id).await.unwrap();
    eventually(
        "the group's machines are destroyed",
        Duration::from_secs(60),
        || async {
            now.iter()
                .all(|i| !t.plugin.instance_dir(i).exists() && !container_running(i))
                .then_some(())
        },
    )
    .await;
}
