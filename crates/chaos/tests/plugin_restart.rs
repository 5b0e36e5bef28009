//! Fault 1: the instance plugin process killed (SIGKILL) and restarted in the middle of
//! provisions, again and again, while its group is created, grows and rolls out.
//!
//! The process plugin runs out of process (`infrakit plugin run instance-process`); the group
//! controller runs here, with a durable store, and reaches the plugin through a tap. Provisions
//! are slowed by the flavor's `Init` (`sleep 0.5`, run inside `Provision`), and each kill is
//! timed to land while an `Init` runs. An `Init` script still running once the plugin is dead
//! (it outlives a SIGKILLed plugin) proves that its provision was cut off; at least one must be.

mod common;

use std::sync::Arc;
use std::time::Duration;

use infrakit_chaos::check::{converged, record_kept, specs_kept};
use infrakit_chaos::sampler::{Sampler, Source};
use infrakit_chaos::{specs, FaultReport, Ledger};
use infrakit_flavor_vanilla::VanillaFlavor;
use infrakit_group::GroupPlugin;
use infrakit_rpc::Plugins;
use infrakit_spi::{Group, GroupSpec, Instance};
use infrakit_store::{FileStore, Store};
use infrakit_testkit::{eventually, unique_name};

use common::{members, Home};

const INIT: f64 = 0.5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_instance_plugin_mid_provision_loses_nothing() {
    let id = unique_name("plugin-restart");
    let mut home = Home::start(&id, false).await;
    let ledger = Ledger::new(0);
    let tap = home.tap(&ledger);

    let plugins = Arc::new(Plugins::new(home.plugins()));
    plugins.register_instance("instance-process", tap.clone());
    plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
    let store = Arc::new(FileStore::new(home.path().join("group/groups")));
    let group = GroupPlugin::with_store(plugins, common::config(), store.clone())
        .await
        .unwrap();
    let sampler = Sampler::start(
        vec![
            Source::Listing(Arc::new(home.process_client()), members(&id)),
            Source::Processes {
                group: id.clone(),
                argv: home.argv.clone(),
            },
        ],
        ledger.clone(),
        Duration::from_millis(20),
    );

    // The group first comes up undisturbed.
    let v =
        |version, size| specs::processes(&id, size, version, "instance-process", &home.argv, INIT);
    let mut last = v(1, 3);
    let mut size = 3;
    ledger.set_limit(size + 1);
    group.commit_group(last.clone(), false).await.unwrap();
    converged(&group, &id, size, Duration::from_secs(30)).await;
    let mut kills = 0u64;

    // Killed while idle, twice: the restarted plugin adopts the running processes again, and
    // the controller replaces none of them.
    for _ in 0..2 {
        let (pids, started) = (home.running(), tap.in_flight().provisions_started);
        home.process.kill();
        kills += 1;
        home.process.restart().await;
        let listed = eventually(
            "the instances adopted again",
            Duration::from_secs(30),
            || async {
                let l = home
                    .process_client()
                    .describe_instances(&members(&id), false)
                    .await
                    .ok()?;
                (l.len() == size).then_some(l.len())
            },
        )
        .await;
        assert_eq!(listed, size);
        assert_eq!(home.running(), pids, "the processes survived the plugin");
        converged(&group, &id, size, Duration::from_secs(30)).await;
        assert_eq!(
            tap.in_flight().provisions_started,
            started,
            "replaced an adopted instance"
        );
    }

    // Then each step commits a change that needs provisions, and kills the plugin while one
    // runs. A provision cut off this way counts as in flight for 60 s (it might still show
    // up), holding its place in the group: each step leaves the next one room for at least one
    // provision.
    let steps: Vec<(&str, GroupSpec)> = vec![
        ("grow to 5", v(1, 5)),
        ("roll out v2", v(2, 5)),
        ("grow to 7 with v3", v(3, 7)),
    ];
    // Kills that cut a provision off: its Init outlived the plugin.
    let mut cut_off = 0u64;
    for (what, spec) in steps {
        let new_size = spec.properties["Allocation"]["Size"].as_u64().unwrap() as usize;
        ledger.set_limit(size.max(new_size) + 1);
        size = new_size;
        // Orphaned Init scripts of the previous kill finish first, so the next strike is timed
        // on a provision of this step.
        eventually(
            "earlier Init scripts gone",
            Duration::from_secs(30),
            || async { (home.provisions_under_way(INIT) == 0).then_some(()) },
        )
        .await;
        group.commit_group(spec.clone(), false).await.unwrap();
        last = spec;
        eventually(
            &format!("{what}: a provision under way"),
            Duration::from_secs(30),
            || async { Some(home.provisions_under_way(INIT)).filter(|n| *n > 0) },
        )
        .await;
        home.process.kill();
        kills += 1;
        // The plugin is dead and reaped: an Init still running belongs to a provision that
        // can no longer answer (the plugin returns only once Init has finished).
        cut_off += u64::from(home.provisions_under_way(INIT) > 0);
        home.process.restart().await;
    }

    // Faults over: the group converges. Provisions cut off with the plugin count as in flight
    // until they show up or 60 s pass (the controller cannot tell a lost provision from a slow
    // one), so this can take up to a minute.
    let stopped = tokio::time::Instant::now();
    converged(&group, &id, size, Duration::from_secs(100)).await;
    let took = stopped.elapsed();

    let mut extra = specs_kept(&group, std::slice::from_ref(&last)).await;
    let record = store.load().await.unwrap()[&id].clone();
    extra.extend(record_kept(&record, &last, &["complete"]));
    let running = eventually("the census settles", Duration::from_secs(30), || async {
        let r = home.running();
        (r.len() == size).then_some(r)
    })
    .await;
    assert_eq!(running.len(), size);
    sampler.stop().await;
    let flight = tap.in_flight();
    let report = FaultReport::new(
        "instance plugin killed mid-provision",
        kills,
        format!(
            "SIGKILLs of the process plugin, 2 while idle, the others while an Init ran; \
             {cut_off} of those cutting a provision off (its Init outlived the plugin); {} \
             provisions started, {} failed",
            flight.provisions_started, flight.provisions_failed
        ),
        &ledger,
        extra,
        took,
    );

    group.destroy_group(&id).await.unwrap();
    eventually("no instance left", Duration::from_secs(30), || async {
        home.running().is_empty().then_some(())
    })
    .await;
    report.finish();
    assert!(
        cut_off >= 1,
        "no kill landed while a provision's Init ran: {flight:?}"
    );
}
