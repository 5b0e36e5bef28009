//! Fault 4: the manager killed with SIGKILL in a loop (24 times) while its group grows and
//! rolls out, restarted after each kill.
//!
//! Everything is a real process: `infrakit manager run` with its embedded store, the process
//! plugin holding real `sleep` processes, the vanilla flavor. The manager reaches the process
//! plugin through a tap served on a socket by this test, which records every destroy and
//! counts the instances after every provision. Kills are timed four ways in turn: just after a
//! provision returned, as soon as the restarted manager answers, while a destroy runs, and
//! while a provision runs. After each restart the committed spec (`InspectGroups`) and the
//! stored rollout state (phase, previous spec) are checked.

mod common;

use std::time::Duration;

use infrakit_chaos::check::{converged, record_kept, specs_kept};
use infrakit_chaos::sampler::{Sampler, Source};
use infrakit_chaos::{specs, FaultReport, Ledger};
use infrakit_rpc::GroupClient;
use infrakit_spi::{Group, GroupSpec};
use infrakit_testkit::eventually;

use common::{members, unique, Home};

const INIT: f64 = 0.2;
const KILLS_PER_STEP: usize = 6;

/// Commits `spec`, retrying while a just-restarted manager is not ready yet.
async fn commit(client: &GroupClient, spec: &GroupSpec) {
    eventually(
        "the manager takes the commit",
        Duration::from_secs(20),
        || async { client.commit_group(spec.clone(), false).await.ok() },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_killed_again_and_again_during_changes_loses_nothing() {
    let id = unique("manager-kill");
    let home = Home::start(&id, true).await;
    let ledger = Ledger::new(0);
    let tap = home.tap(&ledger);
    let _tap = home.serve_tap(tap.clone()).await;
    let mut manager = home.manager().await;
    let client = home.group_client();
    let sampler = Sampler::start(
        vec![
            Source::Listing(std::sync::Arc::new(home.process_client()), members(&id)),
            Source::Processes {
                group: id.clone(),
                argv: home.argv.clone(),
            },
        ],
        ledger.clone(),
        Duration::from_millis(20),
    );

    let v = |version, size| specs::processes(&id, size, version, "instance-tap", &home.argv, INIT);
    // The group first comes up undisturbed, so the rollouts below replace real instances.
    let mut last = v(1, 4);
    let mut size = 4;
    ledger.set_limit(size + 1);
    commit(&client, &last).await;
    converged(&client, &id, size, Duration::from_secs(30)).await;

    // Each step commits a change, then the manager is killed six times while it works. A
    // provision cut off by a kill counts as in flight for 60 s (it might still show up) and
    // holds its place in the group meanwhile, so only the first two steps cut provisions off.
    let steps = [v(1, 6), v(2, 6), v(3, 8), v(4, 8)];
    let (mut kills, mut mid_provision, mut mid_destroy, mut spec_checks) = (0u64, 0u64, 0u64, 0u64);
    // The rollout state the store must keep: the spec a configuration change replaced.
    let mut previous: Option<GroupSpec> = None;
    for (step, spec) in steps.iter().enumerate() {
        let new_size = spec.properties["Allocation"]["Size"].as_u64().unwrap() as usize;
        ledger.set_limit(size.max(new_size) + 1);
        size = new_size;
        if spec.properties["Instance"] != last.properties["Instance"] {
            previous = Some(last.clone());
        }
        commit(&client, spec).await;
        last = spec.clone();
        for round in 0..KILLS_PER_STEP {
            let before = tap.in_flight();
            let window = Duration::from_secs(3);
            match round {
                // While a provision runs.
                5 if step < 2 => tap.wait_for(window, |f| f.provisions > 0).await,
                // While a destroy runs.
                2 => tap.wait_for(window, |f| f.destroys > 0).await,
                // As soon as the restarted manager answers.
                1 | 4 => true,
                // Just after a provision returned, before the next observation.
                _ => {
                    tap.wait_for(window, |f| {
                        f.provisions_answered > before.provisions_answered
                    })
                    .await
                }
            };
            let now = tap.in_flight();
            mid_provision += (now.provisions > 0) as u64;
            mid_destroy += (now.destroys > 0) as u64;
            manager.kill();
            kills += 1;
            manager.restart().await;
            // The committed spec survived the kill.
            let inspected = eventually("the manager answers", Duration::from_secs(20), || async {
                client.inspect_groups().await.ok()
            })
            .await;
            spec_checks += 1;
            if inspected != vec![last.clone()] {
                ledger.violation(format!(
                    "after kill {kills}, InspectGroups answered {inspected:?}"
                ));
            }
            // So did the rollout state.
            let rollout = home.record(&id)["Rollout"].clone();
            let kept = serde_json::to_value(&previous).unwrap();
            let phase = rollout["Phase"].as_str().unwrap_or("none");
            let phases: &[&str] = if previous.is_some() {
                &["progressing", "complete"]
            } else {
                &["none"]
            };
            if rollout["Previous"] != kept || !phases.contains(&phase) {
                ledger.violation(format!(
                    "after kill {kills}, the stored rollout is {rollout}, expected phase \
                     {phases:?} and previous spec {kept}"
                ));
            }
        }
    }

    // Faults over. Provisions cut off by a kill count as in flight for up to 60 s (they may
    // still show up), so convergence can take that long.
    let stopped = tokio::time::Instant::now();
    converged(&client, &id, size, Duration::from_secs(120)).await;
    let took = stopped.elapsed();

    let mut extra = specs_kept(&client, std::slice::from_ref(&last)).await;
    extra.extend(record_kept(&home.record(&id), &last, &["complete"]));
    eventually("the census settles", Duration::from_secs(10), || async {
        (home.running().len() == size).then_some(())
    })
    .await;
    sampler.stop().await;
    let flight = tap.in_flight();
    let report = FaultReport::new(
        "manager SIGKILLed in a loop during scale-ups and rollouts",
        kills,
        format!(
            "SIGKILLs of `infrakit manager run`, {mid_provision} while a provision ran, \
             {mid_destroy} while a destroy ran; {spec_checks} spec and rollout-state checks \
             after restarts; {} provisions started, {} cut off; {} destroys, {} cut off",
            flight.provisions_started,
            flight.provisions_cut_off,
            flight.destroys_answered + flight.destroys_cut_off,
            flight.destroys_cut_off
        ),
        &ledger,
        extra,
        took,
    );

    client.destroy_group(&id).await.unwrap();
    eventually("no instance left", Duration::from_secs(20), || async {
        home.running().is_empty().then_some(())
    })
    .await;
    report.finish();
}
