//! Fault 4: the manager killed with SIGKILL in a loop (24 times) while its group grows and
//! rolls out, restarted after each kill.
//!
//! Everything is a real process: `infrakit manager run` with its embedded store, the process
//! plugin holding real `sleep` processes, the vanilla flavor. The manager reaches the process
//! plugin through a tap served on a socket by this test, which records every destroy and
//! counts the instances after every provision. Kills are timed four ways in turn: just after a
//! provision returned, as soon as the restarted manager answers, while a destroy runs, and
//! while a provision runs. A kill meant to land mid-call waits until such a call is in flight
//! and counts only if the tap saw that call cut off; one that missed (the call was answered
//! first) is tried again at the step's next timed kill, and at least one kill must land during
//! a provision and one during a destroy. After each restart the committed spec
//! (`InspectGroups`) and the stored rollout state (phase, previous spec) are checked.

mod common;

use std::time::Duration;

use infrakit_chaos::check::{converged, record_kept, specs_kept};
use infrakit_chaos::sampler::{Sampler, Source};
use infrakit_chaos::tap::InFlight;
use infrakit_chaos::{specs, FaultReport, Ledger};
use infrakit_rpc::GroupClient;
use infrakit_spi::{Group, GroupSpec};
use infrakit_testkit::{eventually, unique_name};

use common::{members, Home};

const INIT: f64 = 0.2;
const KILLS_PER_STEP: usize = 6;
/// How long a kill meant to land mid-call waits for such a call (a step's work starts within a
/// poll or two of the commit, but the machine may be loaded).
const CALL_WINDOW: Duration = Duration::from_secs(30);
/// How long a kill meant to follow a provision waits for one: only the timing of that kill
/// depends on it, so it is short (the step's provisions may all be done).
const ANSWER_WINDOW: Duration = Duration::from_secs(3);

/// When a kill is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strike {
    /// Just after a provision returned, before the next observation.
    AfterProvision,
    /// As soon as the restarted manager answers.
    Restarted,
    /// While a destroy runs.
    MidDestroy,
    /// While a provision runs.
    MidProvision,
}

/// Calls of the kind `strike` aims at that have ended (answered or cut off), and those cut off.
fn ended_and_cut_off(strike: Strike, f: &InFlight) -> (u64, u64) {
    match strike {
        Strike::MidProvision => (
            f.provisions_answered + f.provisions_cut_off,
            f.provisions_cut_off,
        ),
        _ => (f.destroys_answered + f.destroys_cut_off, f.destroys_cut_off),
    }
}

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
    let id = unique_name("manager-kill");
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
    // holds its place in the group meanwhile, so only the first two steps cut provisions off:
    // the scale-up of the first step and the rollout of the second certainly provision right
    // after their commit. Every step but the first (a scale-up) rolls out, so destroys.
    let steps = [v(1, 6), v(2, 6), v(3, 8), v(4, 8)];
    let (mut kills, mut spec_checks) = (0u64, 0u64);
    // Kills that cut off a provision, a destroy; that followed a provision answered.
    let (mut mid_provision, mut mid_destroy, mut after_provision) = (0u64, 0u64, 0u64);
    // The rollout state the store must keep: the spec a configuration change replaced.
    let mut previous: Option<GroupSpec> = None;
    for (step, spec) in steps.iter().enumerate() {
        let new_size = spec.properties["Allocation"]["Size"].as_u64().unwrap() as usize;
        ledger.set_limit(size.max(new_size) + 1);
        size = new_size;
        let rollout = spec.properties["Instance"] != last.properties["Instance"];
        if rollout {
            previous = Some(last.clone());
        }
        commit(&client, spec).await;
        last = spec.clone();
        // Mid-call kills that missed their call, tried again at the step's next kills meant to
        // follow a provision.
        let mut retries: Vec<Strike> = Vec::new();
        for round in 0..KILLS_PER_STEP {
            let planned = match round {
                1 | 4 => Strike::Restarted,
                0 if step < 2 => Strike::MidProvision,
                2 if rollout => Strike::MidDestroy,
                _ => Strike::AfterProvision,
            };
            let strike = match planned {
                Strike::AfterProvision if !retries.is_empty() => retries.remove(0),
                _ => planned,
            };
            let before = tap.in_flight();
            let mid_call = match strike {
                Strike::MidProvision => tap.wait_for(CALL_WINDOW, |f| f.provisions > 0).await,
                Strike::MidDestroy => tap.wait_for(CALL_WINDOW, |f| f.destroys > 0).await,
                Strike::Restarted => false,
                Strike::AfterProvision => {
                    let answered = tap
                        .wait_for(ANSWER_WINDOW, |f| {
                            f.provisions_answered > before.provisions_answered
                        })
                        .await;
                    after_provision += u64::from(answered);
                    false
                }
            };
            let at_kill = tap.in_flight();
            manager.kill();
            kills += 1;
            if mid_call {
                // Every call in flight at the kill ends: cut off with its caller, or answered
                // if it was quicker than the kill. Only a cut-off one proves the timing.
                let (ended, cut_off) = ended_and_cut_off(strike, &at_kill);
                let started = ended
                    + match strike {
                        Strike::MidProvision => at_kill.provisions,
                        _ => at_kill.destroys,
                    } as u64;
                assert!(
                    tap.wait_for(CALL_WINDOW, |f| ended_and_cut_off(strike, f).0 >= started)
                        .await,
                    "the calls in flight when the manager was killed end: {:?}",
                    tap.in_flight()
                );
                if ended_and_cut_off(strike, &tap.in_flight()).1 > cut_off {
                    match strike {
                        Strike::MidProvision => mid_provision += 1,
                        _ => mid_destroy += 1,
                    }
                } else {
                    retries.push(strike);
                }
            }
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
    eventually("the census settles", Duration::from_secs(30), || async {
        (home.running().len() == size).then_some(())
    })
    .await;
    sampler.stop().await;
    let flight = tap.in_flight();
    let report = FaultReport::new(
        "manager SIGKILLed in a loop during scale-ups and rollouts",
        kills,
        format!(
            "SIGKILLs of `infrakit manager run`, {mid_provision} cutting a provision off, \
             {mid_destroy} cutting a destroy off, {after_provision} just after a provision \
             returned; {spec_checks} spec and rollout-state checks after restarts; {} \
             provisions started, {} cut off; {} destroys, {} cut off",
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
    eventually("no instance left", Duration::from_secs(30), || async {
        home.running().is_empty().then_some(())
    })
    .await;
    report.finish();
    // The kills meant to land mid-call did.
    assert!(
        mid_provision >= 1,
        "no kill landed while a provision ran: {flight:?}"
    );
    assert!(
        mid_destroy >= 1,
        "no kill landed while a destroy ran: {flight:?}"
    );
}
