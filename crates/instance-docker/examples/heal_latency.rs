//! Heal latency of a group on the Docker plugin: how long from `docker kill` of a member to its
//! replacement running, with the group controller's poll interval at 60 s (so healing is driven
//! by the plugin's events alone).
//!
//! ```text
//! cargo run --release -p infrakit-instance-docker --example heal_latency -- --kills 50 [--size 3]
//! ```
//!
//! Each kill hits the group's oldest member, once it has run for longer than the controller's
//! `YOUNG` threshold (10 s): deaths of younger instances count as a crash loop, which the
//! controller answers with an exponential back-off by design, and that is not what this measures.
//!
//! Needs a running Docker engine and a static busybox at /usr/bin/busybox (the test image is
//! built locally; nothing is pulled).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bollard::query_parameters::EventsOptions;
use futures::StreamExt;
use infrakit_spi::event::Publisher;
use infrakit_spi::Group;
use serde_json::json;

struct Args {
    kills: usize,
    size: usize,
}

fn args() -> Args {
    let mut out = Args { kills: 50, size: 3 };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match a.as_str() {
            "--kills" => out.kills = value("--kills"),
            "--size" => out.size = value("--size"),
            other => {
                panic!("unknown argument {other:?}; usage: heal_latency [--kills N] [--size N]")
            }
        }
    }
    assert!(
        out.kills > 0 && out.size > 0,
        "--kills and --size must be positive"
    );
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn row(name: &str, samples: &[Duration]) -> String {
    let mut s = samples.to_vec();
    s.sort();
    let mean = s.iter().sum::<Duration>() / s.len() as u32;
    format!(
        "| {name} | {} | {} | {} | {} | {} |",
        ms(percentile(&s, 50.0)),
        ms(percentile(&s, 99.0)),
        ms(*s.last().unwrap()),
        ms(mean),
        s.len()
    )
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("({cmd}: {e})"))
}

#[tokio::main]
async fn main() {
    let args = args();
    // Logs of the controller and the plugin, with RUST_LOG (e.g. RUST_LOG=info).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let f = common::fixture("heal").await;
    let _cleanup = common::Cleanup::new(&f.label);
    let image = common::image().await;

    // Container starts of the group, as the engine reports them.
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("event".to_string(), vec!["start".to_string()]),
        ("label".to_string(), vec![f.label.clone()]),
    ]);
    // `since` now: the subscription only lands at the first poll, after the first kill.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let mut starts = f.docker.events(Some(EventsOptions {
        since: Some(format!("{}.{:09}", now.as_secs(), now.subsec_nanos())),
        filters: Some(filters),
        ..Default::default()
    }));
    let mut plugin_events = f.plugin.subscribe();

    f.group
        .commit_group(
            f.spec(
                json!({"Size": args.size}),
                common::sleeper(image, "1"),
                json!({}),
                json!({}),
            ),
            false,
        )
        .await
        .unwrap();
    let mut current = f
        .running(args.size, &BTreeSet::new(), Duration::from_secs(60))
        .await;
    f.converged(args.size).await;

    // When each member was first seen running.
    let established = infrakit_group::history::YOUNG + Duration::from_secs(1);
    let mut since: BTreeMap<String, Instant> = current
        .iter()
        .map(|n| (n.clone(), Instant::now()))
        .collect();
    let mut to_event = Vec::new();
    let mut to_running = Vec::new();
    for i in 0..args.kills {
        let (victim, first_seen) = since
            .iter()
            .min_by_key(|(_, t)| **t)
            .map(|(n, t)| (n.clone(), *t))
            .unwrap();
        tokio::time::sleep_until((first_seen + established).into()).await;
        // Drop what piled up meanwhile.
        while plugin_events.try_recv().is_ok() {}
        let killed_at = Instant::now();
        common::kill(&f.docker, &victim).await;
        let deadline = Duration::from_secs(30);
        let event_at = tokio::time::timeout(deadline, async {
            loop {
                match plugin_events.recv().await {
                    Ok(e) if e.kind == "exited" && e.id == victim => return Instant::now(),
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("plugin events: {e}"),
                }
            }
        })
        .await
        .expect("the plugin reports the kill");
        let started_at = tokio::time::timeout(deadline, async {
            loop {
                let e = starts
                    .next()
                    .await
                    .expect("engine events")
                    .expect("engine events");
                let name = e
                    .actor
                    .and_then(|a| a.attributes)
                    .and_then(|a| a.get("name").cloned())
                    .unwrap_or_default();
                if !current.contains(&name) {
                    return (Instant::now(), name);
                }
            }
        })
        .await
        .expect("a replacement starts within 30 s");
        let (started_at, replacement) = started_at;
        to_event.push(event_at - killed_at);
        to_running.push(started_at - killed_at);
        since.remove(&victim);
        since.insert(replacement, started_at);
        current = f
            .running(args.size, &BTreeSet::from([victim]), deadline)
            .await;
        f.converged(args.size).await;
        eprintln!(
            "kill {:>3}: exited event after {}, replacement running after {}",
            i + 1,
            ms(event_at - killed_at),
            ms(started_at - killed_at)
        );
    }
    f.teardown().await;

    let version = f.docker.version().await.unwrap();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "command: cargo run --release -p infrakit-instance-docker --example heal_latency -- --kills {} --size {}",
        args.kills, args.size
    );
    println!(
        "machine: {} CPUs (nproc {}), {cpu}; kernel {}; Docker engine {} (API {}), {} storage",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        command_output("nproc", &[]),
        command_output("uname", &["-r"]),
        version.version.unwrap_or_default(),
        version.api_version.unwrap_or_default(),
        f.docker
            .info()
            .await
            .ok()
            .and_then(|i| i.driver)
            .unwrap_or_default(),
    );
    println!(
        "group: {} containers of a busybox image, vanilla flavor, poll interval {:?}; \
         each kill hits the oldest member once it is {:?} old",
        args.size,
        common::POLL,
        established
    );
    println!();
    println!("| from `docker kill` to | p50 | p99 | max | mean | kills |");
    println!("|---|---|---|---|---|---|");
    println!("{}", row("the plugin's `exited` event", &to_event));
    println!(
        "{}",
        row("the replacement running (engine `start`)", &to_running)
    );
}
