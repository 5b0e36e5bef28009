//! Rolling updates in a deployment: a converged group of N instances, then a commit of a new
//! instance configuration, timed until `DescribeGroup` (over the group plugin's socket) says
//! converged with N members, all of them carrying the new configuration's hash. One deployment
//! per poll interval; each run commits the next version (`v2`, `v3`, ...) from the converged
//! state the previous one left.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};
use tokio::time::Instant;

use infrakit_rpc::GroupClient;
use infrakit_spi::group::GroupProperties;
use infrakit_spi::Group;

use crate::deployment::{self, Deployment, InstanceKind, Stopping};
use crate::fixture;
use crate::measure::ms;
use crate::report::{count, fmt, Measurement};

const GROUP: &str = "rollout";

/// The `Updating` settings measured: the default (cattle: MaxSurge 1, MaxUnavailable 0) and a
/// surge of 10.
fn settings() -> [(&'static str, Option<Value>); 2] {
    [
        ("default Updating (MaxSurge 1, MaxUnavailable 0)", None),
        (
            "MaxSurge 10, MaxUnavailable 0",
            Some(json!({"MaxSurge": 10, "MaxUnavailable": 0})),
        ),
    ]
}

/// Commits configuration `version` of `n` instances and waits until every member carries it;
/// returns the time from the commit.
async fn roll(
    group: &GroupClient,
    kind: InstanceKind,
    n: usize,
    version: usize,
    updating: Option<&Value>,
) -> Result<Duration> {
    let spec = kind.spec(GROUP, n, &format!("v{version}"), updating);
    let hash = GroupProperties::parse(&spec)?.config_hash();
    let start = Instant::now();
    group.commit_group(spec, false).await?;
    let done = fixture::wait_converged(
        group,
        GROUP,
        deployment::describe_every(n),
        Duration::from_secs(3_600),
        |d| {
            d.status.as_ref().is_some_and(|s| s.config_hash == hash)
                && d.instances.len() == n
                && d.instances.iter().all(|i| i.config_hash() == Some(&hash))
        },
    )
    .await?;
    Ok(done - start)
}

/// Rollouts of `n` instances on `kind` with the group plugin polling every `poll`, `runs` of
/// each setting; the deployment is left stopping.
pub async fn measure(
    exe: &Path,
    kind: InstanceKind,
    n: usize,
    poll: Duration,
    runs: usize,
) -> Result<(Vec<Measurement>, Stopping)> {
    let d = Deployment::start(exe, kind, poll).await?;
    let group = d.group();
    roll(&group, kind, n, 1, None).await?;
    let mut version = 1;
    let mut out = Vec::new();
    for (label, updating) in settings() {
        let mut times = Vec::new();
        for i in 0..runs {
            version += 1;
            let t = ms(roll(&group, kind, n, version, updating.as_ref()).await?);
            eprintln!(
                "deployed rollout {} N={n} poll {} {label} run {}/{runs}: {} ms",
                kind.label(),
                deployment::poll_label(poll),
                i + 1,
                fmt(t)
            );
            times.push(t);
        }
        out.push(Measurement::runs(
            "deployed",
            format!(
                "{}, N={}, poll {}: rollout, {label}: commit to converged",
                kind.label(),
                count(n),
                deployment::poll_label(poll)
            ),
            "ms",
            &times,
        ));
    }
    Ok((out, d.stop().await?))
}
