//! Heal latency of a deployment on the process plugin: a member's `sleep` process is killed with
//! SIGKILL, and the time taken until the plugin (asked over its socket) lists a new member whose
//! pid is alive. The plugin reports each member's pid in its `PID` property.
//!
//! As in the in-process `heal` scenario, each kill targets the oldest member once it is older
//! than `min_age`: the controller counts deaths within 10 s of an instance's creation as a crash
//! loop and backs off once a group has more than `size + 2` of them in a minute.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

use infrakit_rpc::{GroupClient, InstanceClient};
use infrakit_spi::instance::GROUP_TAG;
use infrakit_spi::{Instance, Tags};

use crate::deployment::{self, Deployment};
use crate::fixture;
use crate::measure::ms;
use crate::report::fmt;

/// A member as the plugin lists it.
struct Member {
    id: String,
    pid: Option<u32>,
    created: Option<SystemTime>,
}

/// The group's members, as the process plugin lists them now.
async fn members(plugin: &InstanceClient, group: &str) -> Result<Vec<Member>> {
    let tags = Tags::from([(GROUP_TAG.to_string(), group.to_string())]);
    Ok(plugin
        .describe_instances(&tags, true)
        .await?
        .into_iter()
        .map(|d| Member {
            pid: d.properties.as_ref().and_then(|p| p.field::<u32>("PID")),
            created: d.created,
            id: d.id,
        })
        .collect())
}

fn alive(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok()
}

/// Kills the oldest member once it is older than `min_age`; returns the time until its
/// replacement runs.
async fn kill_one(
    plugin: &InstanceClient,
    group: &str,
    n: usize,
    min_age: Duration,
) -> Result<f64> {
    let (victim, pid, before) = loop {
        let list = members(plugin, group).await?;
        let Some(oldest) = list.iter().min_by_key(|m| (m.created, m.id.clone())) else {
            bail!("group {group} has no members");
        };
        let age = oldest
            .created
            .and_then(|c| SystemTime::now().duration_since(c).ok())
            .unwrap_or(Duration::MAX);
        if age >= min_age {
            let pid = oldest
                .pid
                .with_context(|| format!("no PID for {}", oldest.id))?;
            let ids: BTreeSet<String> = list.iter().map(|m| m.id.clone()).collect();
            break (oldest.id.clone(), pid, ids);
        }
        // Ageing the oldest member past crash-loop detection, not waiting for an event.
        tokio::time::sleep(min_age - age).await;
    };
    let every = Duration::from_millis((n as u64 / 200).clamp(1, 20));
    let killed = Instant::now();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL)
        .with_context(|| format!("killing {victim} (pid {pid})"))?;
    let deadline = killed + Duration::from_secs(30);
    loop {
        let list = members(plugin, group).await?;
        if list
            .iter()
            .any(|m| !before.contains(&m.id) && m.pid.is_some_and(alive))
        {
            return Ok(ms(killed.elapsed()));
        }
        if Instant::now() > deadline {
            bail!("{victim} was not replaced within 30 s");
        }
        tokio::time::sleep(every).await;
    }
}

/// `kills` heal latencies, in milliseconds, of converged group `group` of `n` members in
/// deployment `d` (on the process plugin).
pub async fn measure(
    d: &Deployment,
    group: &str,
    n: usize,
    kills: usize,
    min_age: Duration,
) -> Result<Vec<f64>> {
    measure_with(&d.instances(), &d.group(), group, n, kills, min_age).await
}

/// Like [`measure`], for a group `client` serves (a group plugin or a manager) on the process
/// plugin `plugin`.
pub async fn measure_with(
    plugin: &InstanceClient,
    client: &GroupClient,
    group: &str,
    n: usize,
    kills: usize,
    min_age: Duration,
) -> Result<Vec<f64>> {
    let mut samples = Vec::new();
    for i in 0..kills {
        let took = kill_one(plugin, group, n, min_age).await?;
        eprintln!(
            "deployed heal N={n} kill {}/{kills}: replaced in {} ms",
            i + 1,
            fmt(took)
        );
        samples.push(took);

        // Let the controller's follow-up reconcile finish before the next kill.
        fixture::wait_converged(
            client,
            group,
            deployment::describe_every(n),
            Duration::from_secs(60),
            |g| g.instances.len() == n,
        )
        .await?;
    }
    Ok(samples)
}
