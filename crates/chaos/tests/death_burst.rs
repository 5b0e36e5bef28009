//! Fault 6: 1,000 instance deaths in one burst, in a group of 1,000 simulated instances.
//!
//! Everything runs in this process under paused time: the controller, and the simulator behind
//! a tap that counts the instances after every provision. A provision takes 1 s (simulated),
//! so the replacements go out in waves of the controller's `max_parallel` (64).

mod common;

use std::time::Duration;

use infrakit_chaos::check::{converged, record_kept, specs_kept};
use infrakit_chaos::sampler::{Sampler, Source};
use infrakit_chaos::{specs, FaultReport};
use infrakit_instance_simulator::SimulatorConfig;
use infrakit_spi::Group;

use common::{members, Simulated};

const SIZE: usize = 1000;

#[tokio::test(start_paused = true)]
async fn a_thousand_deaths_at_once_are_healed_without_overshoot() {
    let s = Simulated::with(
        SIZE + 1,
        SimulatorConfig {
            provision_latency: Duration::from_secs(1),
            ..SimulatorConfig::default()
        },
    )
    .await;
    let spec = specs::simulated("big", SIZE, 1);
    s.group.commit_group(spec.clone(), false).await.unwrap();
    converged(&s.group, "big", SIZE, Duration::from_secs(120)).await;
    // Established instances: their deaths are not a crash loop.
    tokio::time::sleep(Duration::from_secs(60)).await;

    let sampler = Sampler::start(
        vec![Source::Listing(s.sim.clone(), members("big"))],
        s.ledger.clone(),
        Duration::from_millis(100),
    );
    let started = s.tap.in_flight().provisions_started;
    let killed = s.sim.kill_random(SIZE);
    assert_eq!(killed.len(), SIZE);
    let (burst, real) = (tokio::time::Instant::now(), std::time::Instant::now());
    converged(&s.group, "big", SIZE, Duration::from_secs(120)).await;
    let (took, real) = (burst.elapsed(), real.elapsed());
    sampler.stop().await;

    let replaced = s.tap.in_flight().provisions_started - started;
    let mut extra = specs_kept(&s.group, std::slice::from_ref(&spec)).await;
    extra.extend(record_kept(&s.record("big").await, &spec, &["none"]));
    if replaced != SIZE as u64 {
        extra.push(format!(
            "{replaced} provisions replaced {SIZE} dead instances"
        ));
    }
    FaultReport::new(
        "1,000 deaths in a burst (simulator, group of 1,000)",
        killed.len() as u64,
        format!(
            "instances killed at once; {replaced} provisions (1 s each, simulated) replaced \
             them; healing took {real:.2?} of real time"
        ),
        &s.ledger,
        extra,
        took,
    )
    .finish();
}
