//! `converge`: a new group from 0 to N simulated instances, timed from the commit until
//! `DescribeGroup` says it is converged with N instances.
//!
//! Zero provisioning latency measures the controller itself; 50 ms shows provisions running in
//! parallel (`max_parallel` at a time, so about latency × N / max_parallel). Scale-in: a
//! converged group of N committed at N/2, timed until converged at N/2 (many destroys chosen
//! among many members at once).

use std::time::Duration;

use anyhow::Result;
use tokio::time::Instant;

use crate::fixture::{self, SimGroup};
use crate::measure::ms;
use crate::opts::Opts;
use crate::report::{fmt, Measurement, Target};

/// One run: commit a group of `n` with `latency` and wait until it is converged.
pub async fn once(n: usize, latency: Duration) -> Result<Duration> {
    let f = SimGroup::new(latency, fixture::config(Duration::from_secs(1)));
    let start = Instant::now();
    let done = f.commit_and_converge(n).await?;
    Ok(done - start)
}

/// One run: a converged group of `n` scaled in to `to`, timed from the commit until converged.
pub async fn scale_in(n: usize, to: usize) -> Result<Duration> {
    let f = SimGroup::new(Duration::ZERO, fixture::config(Duration::from_secs(1)));
    f.commit_and_converge(n).await?;
    let start = Instant::now();
    let done = f.commit_and_converge(to).await?;
    Ok(done - start)
}

/// Runs the scenario.
pub async fn run(opts: &Opts) -> Result<Vec<Measurement>> {
    let cases: Vec<(usize, Duration, usize, Option<f64>)> = if opts.quick {
        vec![
            (1_000, Duration::ZERO, 1, None),
            (200, Duration::from_millis(50), 1, None),
        ]
    } else {
        vec![
            (1_000, Duration::ZERO, 5, Some(1_000.0)),
            (10_000, Duration::ZERO, 5, Some(10_000.0)),
            (100_000, Duration::ZERO, 5, None),
            (1_000, Duration::from_millis(50), 5, None),
        ]
    };
    let mut out = Vec::new();
    for (n, latency, runs, target) in cases {
        let runs = opts.runs.unwrap_or(runs);
        let mut times = Vec::new();
        for i in 0..runs {
            let t = ms(once(n, latency).await?);
            eprintln!(
                "converge N={n} latency={latency:?} run {}/{runs}: {} ms",
                i + 1,
                fmt(t)
            );
            times.push(t);
        }
        let name = format!(
            "0 -> {} instances, provisioning latency {} ms",
            fmt(n as f64),
            latency.as_millis()
        );
        let mut m = Measurement::runs("converge", name, "ms", &times);
        if let Some(t) = target {
            m = m.target(Target::Below(t), opts.quick);
        }
        if !latency.is_zero() {
            let ideal = latency.as_secs_f64() * 1e3 * (n as f64 / 64.0).ceil();
            m = m.note(format!("ideal with 64 in parallel: {} ms", fmt(ideal)));
        }
        out.push(m);
    }

    let (n, to, runs) = if opts.quick {
        (1_000, 500, 1)
    } else {
        (100_000, 50_000, 5)
    };
    let runs = opts.runs.unwrap_or(runs);
    let mut times = Vec::new();
    for i in 0..runs {
        let t = ms(scale_in(n, to).await?);
        eprintln!(
            "converge scale-in {n} -> {to} run {}/{runs}: {} ms",
            i + 1,
            fmt(t)
        );
        times.push(t);
    }
    out.push(Measurement::runs(
        "converge",
        format!("scale-in {} -> {} instances", fmt(n as f64), fmt(to as f64)),
        "ms",
        &times,
    ));
    Ok(out)
}
