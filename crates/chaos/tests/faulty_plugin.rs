//! Fault 2: an instance plugin that answers slowly or with errors for a while.
//!
//! Two set-ups, both with the real group controller:
//! - in this process under paused time, a plugin whose `DescribeInstances`, `Provision` and
//!   `Destroy` fail or take long in turn, while instances die, a rollout runs, the group
//!   shrinks and grows;
//! - over a socket, in real time, a plugin that answers past the client's timeout, so calls
//!   time out as they would against a stuck plugin.

mod common;

use std::sync::Arc;
use std::time::Duration;

use infrakit_chaos::check::{converged, record_kept, specs_kept};
use infrakit_chaos::sampler::{Sampler, Source};
use infrakit_chaos::{specs, Census, Fault, FaultReport, FaultyInstance, Ledger, Tap};
use infrakit_flavor_vanilla::VanillaFlavor;
use infrakit_group::GroupPlugin;
use infrakit_instance_simulator::Simulator;
use infrakit_rpc::{Handlers, PluginServer, Plugins};
use infrakit_spi::{Group, GroupSpec};
use infrakit_store::{MemoryStore, Store};
use infrakit_testkit::eventually;

use common::{members, Simulated};

/// How many destroys the tap saw for `reason`.
fn destroyed(s: &Simulated, reason: &str) -> usize {
    s.ledger
        .destroys()
        .iter()
        .filter(|d| d.reason == reason)
        .count()
}

#[tokio::test(start_paused = true)]
async fn a_plugin_that_fails_or_stalls_for_a_while_changes_nothing_it_should_not() {
    let s = Simulated::new(6).await;
    let id = "flaky";
    let mut spec = specs::simulated(id, 5, 1);
    s.group.commit_group(spec.clone(), false).await.unwrap();
    converged(&s.group, id, 5, Duration::from_secs(30)).await;
    let mut windows = Vec::new();

    // 1. The listing fails for 30 s while two instances die: nothing can be planned.
    s.faulty
        .describe
        .set(Fault::Fail("connection refused".into()));
    s.sim.kill_random(2);
    let started = s.tap.in_flight().provisions_started;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(s.tap.in_flight().provisions_started, started, "acted blind");
    s.faulty.all_off();
    let t = tokio::time::Instant::now();
    converged(&s.group, id, 5, Duration::from_secs(30)).await;
    windows.push(("listing fails, 2 deaths", t.elapsed()));

    // 2. Provisions fail for 30 s during a rollout: no old instance may be retired, since no
    //    new one can become available.
    s.faulty.provision.set(Fault::Fail("quota exceeded".into()));
    spec = specs::simulated(id, 5, 2);
    s.group.commit_group(spec.clone(), false).await.unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(destroyed(&s, "rolling_update"), 0, "retired old instances");
    s.faulty.all_off();
    let t = tokio::time::Instant::now();
    converged(&s.group, id, 5, Duration::from_secs(60)).await;
    windows.push(("provisions fail during a rollout", t.elapsed()));

    // 3. Destroys fail for 30 s during a scale-in from 5 to 3.
    s.faulty.destroy.set(Fault::Fail("API error".into()));
    spec = specs::resized(&spec, 3);
    s.group.commit_group(spec.clone(), false).await.unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    s.faulty.all_off();
    let t = tokio::time::Instant::now();
    converged(&s.group, id, 3, Duration::from_secs(60)).await;
    windows.push(("destroys fail during a scale-in", t.elapsed()));

    // 4. Every listing takes 20 s (there is no timeout in-process) while the group grows to 6
    //    and an instance dies.
    s.ledger.set_limit(7);
    s.faulty.describe.set(Fault::Delay(Duration::from_secs(20)));
    spec = specs::resized(&spec, 6);
    s.group.commit_group(spec.clone(), false).await.unwrap();
    s.sim.kill_random(1);
    tokio::time::sleep(Duration::from_secs(60)).await;
    s.faulty.all_off();
    let t = tokio::time::Instant::now();
    converged(&s.group, id, 6, Duration::from_secs(60)).await;
    windows.push(("listings take 20 s, growth and a death", t.elapsed()));

    // 5. Every provision takes 15 s during a rollout, and instances die meanwhile.
    s.faulty
        .provision
        .set(Fault::Delay(Duration::from_secs(15)));
    spec = specs::simulated(id, 6, 3);
    s.group.commit_group(spec.clone(), false).await.unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    s.sim.kill_random(2);
    tokio::time::sleep(Duration::from_secs(40)).await;
    s.faulty.all_off();
    let t = tokio::time::Instant::now();
    converged(&s.group, id, 6, Duration::from_secs(120)).await;
    windows.push((
        "provisions take 15 s during a rollout, 2 deaths",
        t.elapsed(),
    ));

    let mut extra = specs_kept(&s.group, std::slice::from_ref(&spec)).await;
    extra.extend(record_kept(&s.record(id).await, &spec, &["complete"]));
    let slowest = windows.iter().map(|(_, t)| *t).max().unwrap();
    FaultReport::new(
        "instance plugin fails or stalls (in-process, paused time)",
        s.faulty.injected(),
        format!(
            "calls failed or delayed over 5 windows; converged after each in {}",
            windows
                .iter()
                .map(|(w, t)| match t.is_zero() {
                    true => format!("at once ({w}: converged while it lasted)"),
                    false => format!("{t:.1?} ({w})"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        &s.ledger,
        extra,
        slowest,
    )
    .finish();
}

/// The client's timeout of quick calls in the real-time test.
const QUICK_TIMEOUT: Duration = Duration::from_secs(2);
/// How late a listing answers during the fault: five times that timeout.
const LATE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_answering_past_the_timeout_is_waited_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    let id = "stuck";
    let sim = Arc::new(Simulator::default());
    let ledger = Ledger::new(5);
    let counted = sim.clone();
    let tap = Tap::new(
        sim.clone(),
        Arc::new(VanillaFlavor::new()),
        serde_json::json!({}),
        ledger.clone(),
        Census::Count(Box::new(move || counted.len())),
    );
    let faulty = FaultyInstance::new(tap.clone());
    let _server = PluginServer::start(
        &dir,
        "instance-simulator",
        Handlers::new()
            .instance("", faulty.clone())
            .publisher(sim.clone()),
    )
    .await
    .unwrap();
    // Quick calls (listings) time out after 2 s: well above what a listing takes, even on a
    // loaded machine, and well below the fault's delay.
    let plugins = Arc::new(Plugins::new(&dir).with_timeout(QUICK_TIMEOUT));
    plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
    let store = Arc::new(MemoryStore::default());
    let group = GroupPlugin::with_store(plugins, common::config(), store.clone())
        .await
        .unwrap();
    let sampler = Sampler::start(
        vec![Source::Listing(sim.clone(), members(id))],
        ledger.clone(),
        Duration::from_millis(10),
    );

    let v1 = specs::simulated(id, 4, 1);
    group.commit_group(v1.clone(), false).await.unwrap();
    converged(&group, id, 4, Duration::from_secs(30)).await;

    // Listings answer after 10 s, past the 2 s timeout, while an instance dies. A commit that
    // needs a listing fails, and changes nothing.
    faulty.describe.set(Fault::Delay(LATE));
    sim.kill_random(1);
    let grown = specs::resized(&v1, 5);
    let err = group.commit_group(grown.clone(), false).await.unwrap_err();
    assert!(err.to_string().contains("did not answer"), "{err}");
    let kept: Vec<GroupSpec> = group.inspect_groups().await.unwrap();
    assert_eq!(kept, vec![v1.clone()]);
    // Describing the group needs a listing too: it fails with the same clear error.
    let e = group.describe_group(id).await.unwrap_err();
    assert!(e.to_string().contains("did not answer"), "{e}");
    let started = tap.in_flight().provisions_started;
    // Hold the fault through a few reconciles (each one times out and backs off: 2 s each,
    // then 1, 2, 4, 8 s apart).
    let before = faulty.describe.injected();
    eventually(
        "three more listings cut off",
        Duration::from_secs(90),
        || async { (faulty.describe.injected() >= before + 3).then_some(()) },
    )
    .await;
    assert_eq!(tap.in_flight().provisions_started, started, "acted blind");

    // Then they fail outright for a while.
    faulty.describe.set(Fault::Fail("internal error".into()));
    let before = faulty.describe.injected();
    eventually("a listing failed", Duration::from_secs(90), || async {
        (faulty.describe.injected() > before).then_some(())
    })
    .await;
    faulty.all_off();
    // Failed reconciles back off exponentially, up to 30 s: recovery may take that long.
    let t = tokio::time::Instant::now();
    converged(&group, id, 4, Duration::from_secs(120)).await;
    let took = t.elapsed();

    // Provisions that take 2 s each (slow, not past their long timeout) while growing.
    faulty.provision.set(Fault::Delay(Duration::from_secs(2)));
    ledger.set_limit(6);
    group.commit_group(grown.clone(), false).await.unwrap();
    converged(&group, id, 5, Duration::from_secs(60)).await;
    faulty.all_off();
    sampler.stop().await;

    let mut extra = specs_kept(&group, std::slice::from_ref(&grown)).await;
    let record = store.load().await.unwrap()[id].clone();
    extra.extend(record_kept(&record, &grown, &["none"]));
    FaultReport::new(
        "instance plugin answers past the timeout (over a socket, real time)",
        faulty.injected(),
        "listings late past the 2 s client timeout, then failing; provisions taking 2 s; \
         a commit refused meanwhile, 1 death",
        &ledger,
        extra,
        took,
    )
    .finish();
}
