//! `heal`: a group of `sleep` processes on the process instance plugin (in-process, with its
//! events), poll interval 60 s so healing is driven by the plugin's `exited` events. A member is
//! killed with SIGKILL; timed until its replacement's process runs: it is listed by the plugin's
//! `DescribeInstances` and its pid is alive.
//!
//! The controller counts a member that dies within 10 s of appearing as a young death and backs
//! off once a group has more than `size + 2` of those in a minute (crash loops). Each kill
//! therefore targets the oldest member once it is older than `min_age` (10.5 s in the full run);
//! the quick run kills fewer members than that budget allows, at any age.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use tokio::time::Instant;

use infrakit_flavor_vanilla::VanillaFlavor;
use infrakit_group::GroupPlugin;
use infrakit_instance_process::ProcessPlugin;
use infrakit_rpc::Plugins;
use infrakit_spi::event::Publisher;
use infrakit_spi::instance::GROUP_TAG;
use infrakit_spi::{Group, GroupSpec, Instance, Tags};

use crate::fixture::{self, VANILLA};
use crate::measure::ms;
use crate::opts::Opts;
use crate::report::{fmt, Measurement, Target};

const PROCESS: &str = "instance-process";
const GROUP: &str = "heal";

fn members_tags() -> Tags {
    Tags::from([(GROUP_TAG.to_string(), GROUP.to_string())])
}

fn alive(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok()
}

/// The members the plugin lists now, with their pids.
async fn members(procs: &ProcessPlugin) -> Result<Vec<(String, Option<u32>)>> {
    Ok(procs
        .describe_instances(&members_tags(), false)
        .await?
        .into_iter()
        .map(|d| {
            let pid = procs.pid(&d.id);
            (d.id, pid)
        })
        .collect())
}

async fn measure(
    group: &GroupPlugin,
    procs: &ProcessPlugin,
    size: usize,
    kills: usize,
    min_age: Duration,
) -> Result<Vec<f64>> {
    let spec = GroupSpec {
        id: GROUP.into(),
        properties: json!({
            "Allocation": {"Size": size},
            "Instance": {"Plugin": PROCESS, "Properties": {"Cmd": "sleep", "Args": ["3600"]}},
            "Flavor": {"Plugin": VANILLA},
        }),
    };
    group.commit_group(spec, false).await?;
    fixture::wait_converged(
        group,
        GROUP,
        Duration::from_millis(10),
        Duration::from_secs(60),
        |d| d.instances.len() == size,
    )
    .await?;

    let mut born: HashMap<String, Instant> = HashMap::new();
    let mut samples = Vec::new();
    while samples.len() < kills {
        let now = Instant::now();
        let list = members(procs).await?;
        for (id, _) in &list {
            born.entry(id.clone()).or_insert(now);
        }
        born.retain(|id, _| list.iter().any(|(m, _)| m == id));
        let Some((victim, since)) = born
            .iter()
            .min_by_key(|(id, t)| (**t, (*id).clone()))
            .map(|(id, t)| (id.clone(), *t))
        else {
            bail!("the group has no members");
        };
        let age = now - since;
        if age < min_age {
            tokio::time::sleep(min_age - age).await;
            continue;
        }
        let pid = procs
            .pid(&victim)
            .with_context(|| format!("no pid for {victim}"))?;
        let before: BTreeSet<String> = list.iter().map(|(id, _)| id.clone()).collect();

        let killed = Instant::now();
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL)
            .with_context(|| format!("killing {victim} (pid {pid})"))?;
        let deadline = killed + Duration::from_secs(30);
        let replacement = loop {
            let list = members(procs).await?;
            let fresh = list
                .iter()
                .find(|(id, pid)| !before.contains(id) && pid.is_some_and(alive));
            if let Some((id, _)) = fresh {
                break id.clone();
            }
            if Instant::now() > deadline {
                bail!("{victim} was not replaced within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let took = ms(killed.elapsed());
        born.insert(replacement.clone(), Instant::now());
        eprintln!(
            "heal kill {}/{kills}: {victim} (age {:.1} s) replaced by {replacement} in {} ms",
            samples.len() + 1,
            age.as_secs_f64(),
            fmt(took)
        );
        samples.push(took);
        // Let the controller's follow-up reconcile finish before the next kill.
        fixture::wait_converged(
            group,
            GROUP,
            Duration::from_millis(10),
            Duration::from_secs(30),
            |d| d.instances.len() == size,
        )
        .await?;
    }
    Ok(samples)
}

/// Runs the scenario.
pub async fn run(opts: &Opts) -> Result<Vec<Measurement>> {
    let (size, kills, min_age) = if opts.quick {
        (5, 5, Duration::ZERO)
    } else {
        (20, 100, Duration::from_millis(10_500))
    };
    let tmp = tempfile::tempdir()?;
    let procs = Arc::new(ProcessPlugin::open(tmp.path().join("procs"))?);
    let plugins = Arc::new(Plugins::new(tmp.path().join("plugins")));
    plugins.register_instance(PROCESS, procs.clone());
    plugins.register_publisher(PROCESS, procs.clone() as Arc<dyn Publisher>);
    plugins.register_flavor(VANILLA, Arc::new(VanillaFlavor::new()));
    let group = GroupPlugin::new(plugins, fixture::config(Duration::from_secs(60)));

    let result = measure(&group, &procs, size, kills, min_age).await;
    // The processes outlive the plugin: always take them down.
    if let Err(e) = group.destroy_group(GROUP).await {
        eprintln!("heal: cannot destroy the group: {e}");
    }
    for (_, pid) in members(&procs).await.unwrap_or_default() {
        if let Some(pid) = pid {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
    let samples = result?;
    Ok(vec![Measurement::samples(
        "heal",
        format!(
            "SIGKILL of a member to its replacement running ({size} sleep processes, poll 60 s)"
        ),
        "ms",
        &samples,
    )
    .target(Target::Below(100.0), opts.quick)])
}
