//! Fault 3: a flavor whose `Healthy` hangs. The controller must count those instances Unknown
//! (after its 5 s health timeout) and destroy nothing healthy; dead instances are still
//! replaced.
//!
//! Everything runs in this process under paused time, so minutes of hanging take no time. The
//! tap judges health with a flavor of its own that never hangs: that is the truth the
//! controller cannot see.

mod common;

use std::time::Duration;

use infrakit_chaos::check::{converged, record_kept, specs_kept};
use infrakit_chaos::{specs, Fault, FaultReport, Policy};
use infrakit_spi::{Group, Health};
use infrakit_testkit::eventually;

use common::Simulated;

const SIZE: usize = 6;

async fn health_counts(s: &Simulated, id: &str) -> (usize, usize) {
    let d = s.group.describe_group(id).await.unwrap();
    let st = d.status.unwrap();
    let unknown = st
        .instances
        .iter()
        .filter(|i| i.health == Health::Unknown)
        .count();
    (st.instances.len(), unknown)
}

#[tokio::test(start_paused = true)]
async fn instances_whose_health_hangs_are_counted_unknown_and_kept() {
    let s = Simulated::new(SIZE + 1).await;
    let spec = specs::simulated("hang", SIZE, 1);
    s.group.commit_group(spec.clone(), false).await.unwrap();
    converged(&s.group, "hang", SIZE, Duration::from_secs(30)).await;

    // Every health check hangs, for ten minutes: far past UnhealthyAfter (10 s) and
    // StartupGrace (60 s). Nothing healthy may go.
    s.ledger.set_policy(Policy::NothingHealthy);
    s.flavor.healthy.set(Fault::Hang);
    eventually(
        "every instance counted unknown",
        Duration::from_secs(30),
        || async { (health_counts(&s, "hang").await == (SIZE, SIZE)).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(health_counts(&s, "hang").await, (SIZE, SIZE));

    // A death during the hang is still healed at once, although the new instance cannot be
    // judged either.
    let victim = s.sim.kill_random(1);
    let started = s.tap.in_flight().provisions_started;
    eventually(
        "the dead instance replaced",
        Duration::from_secs(30),
        || async {
            (s.tap.in_flight().provisions_started > started
                && health_counts(&s, "hang").await.0 == SIZE)
                .then_some(())
        },
    )
    .await;
    // Some checks hang on half of the instances only, for a while.
    let d = s.group.describe_group("hang").await.unwrap();
    let half: Vec<String> = d
        .instances
        .iter()
        .take(SIZE / 2)
        .map(|i| i.id.clone())
        .collect();
    s.flavor.healthy.set_for(Fault::Hang, half);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (n, unknown) = health_counts(&s, "hang").await;
    assert_eq!((n, unknown), (SIZE, SIZE / 2));

    s.flavor.healthy.off();
    let stopped = tokio::time::Instant::now();
    converged(&s.group, "hang", SIZE, Duration::from_secs(30)).await;
    let took = stopped.elapsed();

    let mut extra = specs_kept(&s.group, std::slice::from_ref(&spec)).await;
    extra.extend(record_kept(&s.record("hang").await, &spec, &["none"]));
    FaultReport::new(
        "Flavor.Healthy hangs",
        s.flavor.healthy.injected(),
        format!(
            "health checks hung (each cut off by the controller's 5 s timeout), for all \
             instances over 10 min then half of them; {} instance killed meanwhile",
            victim.len()
        ),
        &s.ledger,
        extra,
        took,
    )
    .finish();
}

/// While health checks time out, old instances that were healthy still count as serving, so a
/// rollout with `MaxUnavailable: 0` retires none of them (it used to retire them all at once,
/// as if they cost nothing; `Member::serving` in `crates/group/src/planner.rs`).
#[tokio::test(start_paused = true)]
async fn a_rollout_while_health_checks_hang_retires_no_healthy_instance() {
    let s = Simulated::new(SIZE + 1).await;
    let v1 = specs::simulated("roll", SIZE, 1);
    s.group.commit_group(v1, false).await.unwrap();
    converged(&s.group, "roll", SIZE, Duration::from_secs(30)).await;

    s.ledger.set_policy(Policy::NothingHealthy);
    s.flavor.healthy.set(Fault::Hang);
    eventually(
        "every instance counted unknown",
        Duration::from_secs(30),
        || async { (health_counts(&s, "roll").await == (SIZE, SIZE)).then_some(()) },
    )
    .await;
    let v2 = specs::simulated("roll", SIZE, 2);
    s.group.commit_group(v2.clone(), false).await.unwrap();
    tokio::time::sleep(Duration::from_secs(300)).await;

    s.flavor.healthy.off();
    s.ledger.set_policy(Policy::RolloutOrScaleIn);
    let stopped = tokio::time::Instant::now();
    converged(&s.group, "roll", SIZE, Duration::from_secs(30)).await;
    let extra = specs_kept(&s.group, std::slice::from_ref(&v2)).await;
    FaultReport::new(
        "Flavor.Healthy hangs during a rollout",
        s.flavor.healthy.injected(),
        "every health check hung for 5 min after a rollout was committed",
        &s.ledger,
        extra,
        stopped.elapsed(),
    )
    .finish();
}

/// An instance created while health checks time out is never seen Healthy, but the startup
/// grace does not run out on checks that gave no answer, so it is not replaced as unhealthy (it
/// used to be, and its replacement too, every minute; `Member::failed` in
/// `crates/group/src/planner.rs`).
#[tokio::test(start_paused = true)]
async fn a_new_instance_whose_health_hangs_is_not_replaced_as_unhealthy() {
    let s = Simulated::new(SIZE + 1).await;
    let spec = specs::simulated("grace", SIZE, 1);
    s.group.commit_group(spec.clone(), false).await.unwrap();
    converged(&s.group, "grace", SIZE, Duration::from_secs(30)).await;

    s.ledger.set_policy(Policy::NothingHealthy);
    s.flavor.healthy.set(Fault::Hang);
    let killed = s.sim.kill_random(1);
    tokio::time::sleep(Duration::from_secs(300)).await;

    s.flavor.healthy.off();
    s.ledger.set_policy(Policy::RolloutOrScaleIn);
    let stopped = tokio::time::Instant::now();
    converged(&s.group, "grace", SIZE, Duration::from_secs(30)).await;
    let extra = specs_kept(&s.group, std::slice::from_ref(&spec)).await;
    FaultReport::new(
        "Flavor.Healthy hangs while a dead instance is replaced",
        s.flavor.healthy.injected(),
        format!(
            "every health check hung for 5 min; {} instance killed at its start",
            killed.len()
        ),
        &s.ledger,
        extra,
        stopped.elapsed(),
    )
    .finish();
}
