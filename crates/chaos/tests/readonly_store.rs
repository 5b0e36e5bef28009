//! Fault 5: the disk holding the manager's embedded store turns read-only for a moment, three
//! times: while the group is steady and instances die, in the middle of a rollout, and just
//! after a scale-up was committed.
//!
//! The store's directory (`$INFRAKIT_HOME/group`) is a small tmpfs, remounted read-only and
//! then read-write, so every write fails with `EROFS`. (The whole home cannot be remounted
//! read-only while the manager holds its lock file and the instances their logs open for
//! writing: the kernel refuses with `EBUSY`.) Where mounting is not permitted, the store
//! directory is replaced by a file instead, and the test says so.
//!
//! The controller records each provision in the store before starting it, so while the store
//! cannot be written it must not create anything; commits must be refused and change nothing.

mod common;

use std::time::Duration;

use infrakit_chaos::check::{converged, record_kept, specs_kept};
use infrakit_chaos::mount::WriteBlock;
use infrakit_chaos::sampler::{Sampler, Source};
use infrakit_chaos::{specs, FaultReport, Ledger};
use infrakit_rpc::GroupClient;
use infrakit_spi::{Group, GroupSpec};
use infrakit_testkit::{eventually, unique_name};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use common::{members, Home};

/// Waits until the controller reports that it cannot write its store.
async fn write_failure_seen(client: &GroupClient, id: &str) {
    eventually(
        "the controller reports the failed write",
        Duration::from_secs(20),
        || async {
            let d = client.describe_group(id).await.ok()?;
            let message = d.status?.message;
            message.contains("cannot save").then_some(())
        },
    )
    .await;
}

/// Tries changes that must be refused while the store is blocked; returns how many were.
async fn refused_changes(client: &GroupClient, committed: &GroupSpec, other: &GroupSpec) -> u64 {
    let e = client.commit_group(other.clone(), false).await.unwrap_err();
    assert!(e.to_string().contains("cannot save"), "{e}");
    let e = client.set_size(&committed.id, 9).await.unwrap_err();
    assert!(e.to_string().contains("cannot save"), "{e}");
    assert_eq!(
        client.inspect_groups().await.unwrap(),
        vec![committed.clone()]
    );
    2
}

/// Kills `n` of the group's instance processes; returns how many were killed.
fn kill_some(home: &Home, n: usize) -> u64 {
    let mut killed = 0;
    for pid in home.running().into_iter().take(n) {
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        killed += 1;
    }
    killed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_store_stops_changes_and_loses_nothing() {
    let id = unique_name("read-only");
    let home = Home::start(&id, true).await;
    let disk = WriteBlock::prepare(&home.path().join("group")).unwrap();
    let ledger = Ledger::new(5);
    let tap = home.tap(&ledger);
    let _tap = home.serve_tap(tap.clone()).await;
    let _manager = home.manager().await;
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
    let v = |version, size| specs::processes(&id, size, version, "instance-tap", &home.argv, 0.1);
    let (mut refused, mut deaths, mut windows) = (0u64, 0u64, Vec::new());

    let v1 = v(1, 4);
    client.commit_group(v1.clone(), false).await.unwrap();
    converged(&client, &id, 4, Duration::from_secs(30)).await;

    // 1. Steady, then two instances die while the store is read-only: nothing may be created.
    disk.block(true).await.unwrap();
    let started = tap.in_flight().provisions_started;
    deaths += kill_some(&home, 2);
    write_failure_seen(&client, &id).await;
    refused += refused_changes(&client, &v1, &v(2, 4)).await;
    assert_eq!(
        tap.in_flight().provisions_started,
        started,
        "created without a record"
    );
    assert_eq!(home.running().len(), 2);
    disk.block(false).await.unwrap();
    let t = tokio::time::Instant::now();
    converged(&client, &id, 4, Duration::from_secs(30)).await;
    windows.push(t.elapsed());
    let mut extra = record_kept(&home.record(&id), &v1, &["none"]);

    // 2. In the middle of a rollout.
    let v2 = v(2, 4);
    client.commit_group(v2.clone(), false).await.unwrap();
    // Struck while the rollout provisions a replacement: it is under way, not over.
    assert!(
        tap.wait_for(Duration::from_secs(30), |f| f.provisions > 0)
            .await,
        "the rollout provisions: {:?}",
        tap.in_flight()
    );
    disk.block(true).await.unwrap();
    deaths += kill_some(&home, 1);
    write_failure_seen(&client, &id).await;
    refused += refused_changes(&client, &v2, &v(3, 4)).await;
    disk.block(false).await.unwrap();
    let t = tokio::time::Instant::now();
    converged(&client, &id, 4, Duration::from_secs(30)).await;
    windows.push(t.elapsed());
    extra.extend(record_kept(&home.record(&id), &v2, &["complete"]));

    // 3. Just after a scale-up to 6 was committed.
    ledger.set_limit(7);
    let grown = specs::resized(&v2, 6);
    client.commit_group(grown.clone(), false).await.unwrap();
    disk.block(true).await.unwrap();
    // The growth's provisions may all have been recorded already: a death makes sure the
    // controller needs to write while it cannot.
    deaths += kill_some(&home, 1);
    write_failure_seen(&client, &id).await;
    refused += refused_changes(&client, &grown, &v(3, 6)).await;
    disk.block(false).await.unwrap();
    let t = tokio::time::Instant::now();
    converged(&client, &id, 6, Duration::from_secs(30)).await;
    windows.push(t.elapsed());

    extra.extend(specs_kept(&client, std::slice::from_ref(&grown)).await);
    extra.extend(record_kept(&home.record(&id), &grown, &["complete"]));
    eventually("the census settles", Duration::from_secs(10), || async {
        (home.running().len() == 6).then_some(())
    })
    .await;
    sampler.stop().await;
    let report = FaultReport::new(
        "store disk read-only for a moment",
        windows.len() as u64 + refused + deaths,
        format!(
            "{} read-only windows ({}), {refused} changes refused meanwhile, {deaths} deaths; \
             converged after each in {}",
            windows.len(),
            disk.method(),
            windows
                .iter()
                .map(|t| format!("{t:.2?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        &ledger,
        extra,
        windows.iter().copied().max().unwrap_or_default(),
    );
    client.destroy_group(&id).await.unwrap();
    eventually("no instance left", Duration::from_secs(20), || async {
        home.running().is_empty().then_some(())
    })
    .await;
    report.finish();
}
