//! The plugin and the group controller across a restart of the Docker engine.
//!
//! The engine restarted is one of this test's own (its own socket, data root, exec root and
//! namespaces; see `infrakit_testkit::docker`), never the machine's: this test binary points
//! `DOCKER_HOST` at it before anything connects, so the image, the plugin and the checks all
//! use it.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use infrakit_spi::event::Publisher;
use infrakit_spi::Group;
use infrakit_testkit::docker::Engine;
use infrakit_testkit::{eventually, group};
use serde_json::json;

use common::{fixture, image, running_names, sleeper, Cleanup};

#[tokio::test]
async fn a_group_converges_again_after_the_engine_restarts() {
    let mut engine = Engine::start().await;
    // The only test of this binary, so nothing else reads the environment meanwhile.
    std::env::set_var("DOCKER_HOST", engine.host());
    let f = fixture("restart").await;
    let _cleanup = Cleanup::new(&f.label);
    let image = image().await;
    f.group
        .commit_group(
            f.spec(
                json!({"Size": 3}),
                sleeper(image, "1"),
                json!({}),
                json!({}),
            ),
            false,
        )
        .await
        .unwrap();
    let before = f
        .running(3, &BTreeSet::new(), Duration::from_secs(60))
        .await;
    f.converged(3).await;
    let mut events = f.plugin.subscribe();

    engine.stop().await;
    engine.start_again().await;
    eventually(
        "the engine answers again",
        Duration::from_secs(60),
        || async {
            let docker = bollard::Docker::connect_with_defaults().ok()?;
            docker.ping().await.ok().map(|_| ())
        },
    )
    .await;
    let back = Instant::now();

    // The plugin re-subscribes and tells its subscribers to re-list.
    // Well before the 60 s poll would have noticed.
    tokio::time::timeout(Duration::from_secs(45), async {
        loop {
            if events.recv().await.is_ok_and(|e| e.kind == "resync") {
                return;
            }
        }
    })
    .await
    .expect("a resync event after the engine came back");

    // The stopped containers are replaced, well before the 60 s poll, with no duplicates.
    let docker = common::docker().await;
    let after = eventually("3 new containers run", Duration::from_secs(45), || async {
        let names: BTreeSet<String> = running_names(&docker, &f.label).await.into_iter().collect();
        (names.len() == 3 && names.is_disjoint(&before)).then_some(names)
    })
    .await;
    assert!(
        back.elapsed() < Duration::from_secs(50),
        "converged {:?} after the engine answered",
        back.elapsed()
    );
    let d = f.converged(3).await;
    assert_eq!(group::ids(&d), after);
    // Observed for a while (not waited on): never more than 3 run.
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        let names = running_names(&docker, &f.label).await;
        assert_eq!(names.len(), 3, "exactly 3 containers run: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The old containers are stopped, kept for post-mortems, and none of them runs again.
    let all = common::containers(&docker, &f.label, true).await;
    for name in &before {
        let old = all
            .iter()
            .find(|c| {
                c.names
                    .iter()
                    .flatten()
                    .any(|n| n.trim_start_matches('/') == name)
            })
            .unwrap_or_else(|| panic!("{name} is kept"));
        assert_eq!(
            old.state,
            Some(bollard::models::ContainerSummaryStateEnum::EXITED),
            "{name}"
        );
    }

    // The plugin still works against the restarted engine.
    f.group.destroy_group(&f.id).await.unwrap();
    eventually(
        "the group's containers are gone",
        Duration::from_secs(30),
        || async {
            running_names(&docker, &f.label)
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
}
