//! `rollout`: a rolling update of N simulated instances (healthy at once), timed from the commit
//! of the new configuration until `DescribeGroup` says converged with N instances, all of the new
//! configuration.
//!
//! Two settings: `MaxSurge: 10, MaxUnavailable: 0` at the default poll interval (1 s), and
//! InfraKit's original one-at-a-time replacement (`MaxSurge: 0, MaxUnavailable: 1`) at
//! InfraKit's default poll interval (10 s). The original InfraKit itself is not run: its rolling
//! update waited for a poll tick before each replacement and its scaler refilled on its own
//! tick, so it took between one and two poll intervals per instance (see docs/benchmarks.md).

use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};
use tokio::time::Instant;

use infrakit_spi::Group;

use crate::fixture::{self, SimGroup};
use crate::measure::ms;
use crate::opts::Opts;
use crate::report::{fmt, Measurement};

/// One rollout of `n` instances with `updating`, at `poll_interval`; returns the time from the
/// commit of the new configuration to convergence on it.
pub async fn once(n: usize, updating: &Value, poll_interval: Duration) -> Result<Duration> {
    let f = SimGroup::new(Duration::ZERO, fixture::config(poll_interval));
    let every = fixture::describe_every(n);
    f.group
        .commit_group(
            fixture::sim_spec("bench", n, "v1", Some(updating.clone())),
            false,
        )
        .await?;
    fixture::wait_converged(
        f.group.as_ref(),
        "bench",
        every,
        Duration::from_secs(60),
        |d| d.instances.len() == n,
    )
    .await?;
    let v2 = fixture::sim_spec("bench", n, "v2", Some(updating.clone()));
    let start = Instant::now();
    f.group.commit_group(v2, false).await?;
    let done = fixture::wait_converged(
        f.group.as_ref(),
        "bench",
        every,
        Duration::from_secs(3_600),
        |d| {
            let Some(hash) = d.status.as_ref().map(|s| s.config_hash.as_str()) else {
                return false;
            };
            d.instances.len() == n && d.instances.iter().all(|i| i.config_hash() == Some(hash))
        },
    )
    .await?;
    Ok(done - start)
}

/// Runs the scenario.
pub async fn run(opts: &Opts) -> Result<Vec<Measurement>> {
    let (n, runs) = if opts.quick { (20, 1) } else { (100, 5) };
    let runs = opts.runs.unwrap_or(runs);
    let cases = [
        (
            json!({"MaxSurge": 10, "MaxUnavailable": 0}),
            Duration::from_secs(1),
            "MaxSurge 10, MaxUnavailable 0, poll 1 s",
        ),
        (
            json!({"MaxSurge": 0, "MaxUnavailable": 1}),
            Duration::from_secs(10),
            "one at a time (MaxSurge 0, MaxUnavailable 1), poll 10 s",
        ),
    ];
    let mut out = Vec::new();
    for (updating, poll, label) in cases {
        let mut times = Vec::new();
        for i in 0..runs {
            let t = ms(once(n, &updating, poll).await?);
            eprintln!("rollout N={n} {label} run {}/{runs}: {} ms", i + 1, fmt(t));
            times.push(t);
        }
        out.push(Measurement::runs(
            "rollout",
            format!("{n} instances, {label}: commit to converged"),
            "ms",
            &times,
        ));
    }
    Ok(out)
}
