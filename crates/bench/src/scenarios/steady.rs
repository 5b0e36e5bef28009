//! `steady`: what a converged group costs.
//!
//! - CPU time of one reconcile pass: a converged group of N simulated instances with a short
//!   poll interval; over a window, the process's CPU time (`getrusage`) divided by the number of
//!   reconciles in it (counted as `DescribeInstances` calls by a wrapper of the simulator; every
//!   pass lists, the observed cache being off). The benchmark does nothing else meanwhile, so
//!   this is an upper bound of a pass's cost.
//! - Resident memory of a process holding N simulated instances in a converged group. Measured in
//!   a fresh child process (this binary with a hidden `--probe-memory N`), so the allocator's
//!   leftovers of other scenarios do not count.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use infrakit_group::ControllerConfig;
use infrakit_instance_simulator::{Simulator, SimulatorConfig};
use infrakit_spi::instance::{CONFIG_HASH_TAG, GROUP_TAG};
use infrakit_spi::{Instance, Spec, Tags};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::fixture::{self, SimGroup};
use crate::measure::{cpu_time, memory, mib, ms};
use crate::opts::Opts;
use crate::report::{fmt, Measurement, Stats, Target};

/// Starts a converged group of `n` with `poll_interval` and lets it settle. Every pass lists the
/// group (a resync interval of zero): the observed cache would otherwise reuse the last listing
/// of a quiet group and stop the pass there, and what is measured here is a whole pass.
async fn converged_group(n: usize, poll_interval: Duration) -> Result<SimGroup> {
    let config = ControllerConfig {
        resync_interval: Duration::ZERO,
        ..fixture::config(poll_interval)
    };
    let f = SimGroup::new(Duration::ZERO, config);
    f.commit_and_converge(n).await?;
    // Let the reconcile that found it converged finish and the allocator settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(f)
}

/// CPU per reconcile over a window: all of it, and the part spent in the simulator answering
/// `DescribeInstances`.
struct PassCost {
    total_ms: f64,
    plugin_ms: f64,
    passes: u64,
}

/// CPU milliseconds per reconcile over `window`.
async fn cpu_per_reconcile(f: &SimGroup, window: Duration) -> Result<PassCost> {
    let (c0, t0, p0) = (f.counter.describes(), cpu_time()?, f.counter.describe_cpu());
    tokio::time::sleep(window).await;
    let (c1, t1, p1) = (f.counter.describes(), cpu_time()?, f.counter.describe_cpu());
    let passes = c1 - c0;
    if passes == 0 {
        bail!("no reconcile in {window:?}");
    }
    Ok(PassCost {
        total_ms: ms(t1 - t0) / passes as f64,
        plugin_ms: ms(p1 - p0) / passes as f64,
        passes,
    })
}

/// What the memory probe reports.
#[derive(Debug, Serialize, Deserialize)]
pub struct Probe {
    /// Instances in the group.
    pub n: usize,
    /// Resident bytes before the group was created (runtime and binary).
    pub baseline_rss: u64,
    /// Median resident bytes over the steady window (sampled every 20 ms).
    pub rss_median: u64,
    /// Highest resident bytes over the steady window.
    pub rss_max: u64,
    /// Peak resident bytes of the process since it started (`VmHWM`).
    pub hwm: u64,
    /// The most heap bytes in use over the steady window (sampled every millisecond).
    pub heap_max: u64,
    /// CPU milliseconds per reconcile of the group (poll interval 1 s).
    pub cpu_per_reconcile_ms: f64,
}

/// The child side of the memory measurement: converge `n`, then over a 5 s window with a
/// reconcile every second, sample the resident memory and measure the CPU per reconcile.
pub async fn probe(n: usize) -> Result<Probe> {
    let baseline = memory()?;
    let f = converged_group(n, Duration::from_secs(1)).await?;
    let window = Duration::from_secs(5);
    // A thread of its own: while a reconcile of a large group runs, the runtime's timers may
    // not fire, and a sampling task would miss exactly the peaks it is there for.
    // The heap is read every millisecond (a counter), the resident memory every 20 (a file).
    let sampler = std::thread::spawn(move || {
        let mut samples = Vec::new();
        let mut heap_max = 0;
        let end = std::time::Instant::now() + window;
        let mut tick = 0u32;
        while std::time::Instant::now() < end {
            heap_max = heap_max.max(crate::alloc::in_use());
            if tick.is_multiple_of(20) {
                if let Ok(m) = memory() {
                    samples.push(m.rss);
                }
            }
            tick = tick.wrapping_add(1);
            std::thread::sleep(Duration::from_millis(1));
        }
        (samples, heap_max)
    });
    let cpu = cpu_per_reconcile(&f, window).await?.total_ms;
    let (mut rss, heap_max) = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("the memory sampler panicked"))?;
    rss.sort_unstable();
    if f.sim.len() != n || rss.is_empty() {
        bail!(
            "the group changed while measured: {} instances",
            f.sim.len()
        );
    }
    let hwm = memory()?.hwm;
    Ok(Probe {
        n,
        baseline_rss: baseline.rss,
        rss_median: rss[rss.len() / 2],
        rss_max: rss[rss.len() - 1],
        hwm,
        heap_max,
        cpu_per_reconcile_ms: cpu,
    })
}

/// What the simulator probe reports.
#[derive(Debug, Serialize, Deserialize)]
pub struct SimulatorProbe {
    /// Resident bytes.
    pub rss: u64,
    /// Heap bytes in use.
    pub heap: u64,
}

/// The other child: memory of a process whose simulator holds `n` instances tagged as a
/// group's members are, with no controller. The simulated infrastructure lives in the
/// controller's process only in this benchmark; this is its share of the measurement.
pub async fn probe_simulator(n: usize) -> Result<SimulatorProbe> {
    let sim = Simulator::new(SimulatorConfig::default());
    let tags = Tags::from([
        (GROUP_TAG.to_string(), "bench".to_string()),
        (CONFIG_HASH_TAG.to_string(), "0".repeat(40)),
    ]);
    for _ in 0..n {
        sim.provision(Spec {
            properties: json!({"Version": "v1"}),
            tags: tags.clone(),
            ..Spec::default()
        })
        .await?;
    }
    Ok(SimulatorProbe {
        rss: memory()?.rss,
        heap: crate::alloc::in_use(),
    })
}

/// Runs this binary as a memory probe of `n` instances (`--probe-memory`, or
/// `--probe-simulator` for the simulator alone).
async fn probe_child<T: serde::de::DeserializeOwned>(flag: &str, n: usize) -> Result<T> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let out = tokio::process::Command::new(exe)
        .arg(flag)
        .arg(n.to_string())
        .kill_on_drop(true)
        .output()
        .await
        .context("running the memory probe")?;
    if !out.status.success() {
        bail!(
            "memory probe failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("reading the memory probe's report")
}

/// Runs the scenario.
pub async fn run(opts: &Opts) -> Result<Vec<Measurement>> {
    let (n, poll, window, runs, mem_n, mem_runs) = if opts.quick {
        (
            1_000,
            Duration::from_millis(100),
            Duration::from_secs(1),
            1,
            10_000,
            1,
        )
    } else {
        (
            10_000,
            Duration::from_millis(200),
            Duration::from_secs(5),
            5,
            100_000,
            5,
        )
    };
    let runs = opts.runs.unwrap_or(runs);
    let mem_runs = opts.runs.unwrap_or(mem_runs);
    let mut out = Vec::new();

    let f = converged_group(n, poll).await?;
    let mut per_pass = Vec::new();
    let mut controller = Vec::new();
    let mut plugin = Vec::new();
    let mut passes = 0;
    for i in 0..runs {
        let cost = cpu_per_reconcile(&f, window).await?;
        eprintln!(
            "steady N={n} window {}/{runs}: {} reconciles, {} ms CPU each, {} ms of it in the simulator's DescribeInstances",
            i + 1,
            cost.passes,
            fmt(cost.total_ms),
            fmt(cost.plugin_ms)
        );
        per_pass.push(cost.total_ms);
        plugin.push(cost.plugin_ms);
        controller.push(cost.total_ms - cost.plugin_ms);
        passes += cost.passes;
    }
    if f.sim.len() != n {
        bail!(
            "the group changed while measured: {} instances",
            f.sim.len()
        );
    }
    drop(f);
    out.push(
        Measurement::runs(
            "steady",
            format!("CPU of one reconcile pass, N={}", fmt(n as f64)),
            "ms",
            &controller,
        )
        .target(Target::Below(10.0), opts.quick)
        .note(format!(
            "the controller's own work: the process's CPU less the simulator answering DescribeInstances; {passes} passes in {runs} windows of {}s, poll {} ms",
            window.as_secs(),
            poll.as_millis()
        )),
    );
    out.push(
        Measurement::runs(
            "steady",
            format!(
                "… with the simulator producing the {} descriptions in-process",
                fmt(n as f64)
            ),
            "ms",
            &per_pass,
        )
        .note(format!(
            "{} ms of it in DescribeInstances",
            fmt(Stats::of_runs(&plugin).median)
        )),
    );

    let mut rss_max = Vec::new();
    let mut rss_median = Vec::new();
    let mut hwm = Vec::new();
    let mut cpu = Vec::new();
    let mut baseline = Vec::new();
    let mut heap = Vec::new();
    for i in 0..mem_runs {
        let p: Probe = probe_child("--probe-memory", mem_n).await?;
        eprintln!(
            "steady memory N={mem_n} run {}/{mem_runs}: {} MiB resident at most ({} MiB median, {} MiB peak since start, {} MiB at start), heap in use at most {} MiB, {} ms CPU per reconcile",
            i + 1,
            fmt(mib(p.rss_max)),
            fmt(mib(p.rss_median)),
            fmt(mib(p.hwm)),
            fmt(mib(p.baseline_rss)),
            fmt(mib(p.heap_max)),
            fmt(p.cpu_per_reconcile_ms)
        );
        heap.push(mib(p.heap_max));
        rss_max.push(mib(p.rss_max));
        rss_median.push(mib(p.rss_median));
        hwm.push(mib(p.hwm));
        baseline.push(mib(p.baseline_rss));
        cpu.push(p.cpu_per_reconcile_ms);
    }
    let sim: SimulatorProbe = probe_child("--probe-simulator", mem_n).await?;
    let simulator = sim.rss;
    eprintln!(
        "steady memory N={mem_n}: {} MiB resident with the simulator's instances alone ({} MiB of heap)",
        fmt(mib(simulator)),
        fmt(mib(sim.heap))
    );
    let label = fmt(mem_n as f64);
    let median = |v: &[f64]| Stats::of_runs(v).median;
    out.push(
        Measurement::runs(
            "steady",
            format!("resident memory, converged group of N={label}"),
            "MiB",
            &rss_max.iter().map(|r| r - mib(simulator)).collect::<Vec<_>>(),
        )
        .target(Target::Below(100.0), opts.quick)
        .note(format!(
            "the controller's share: the highest VmRSS of a fresh process over 5 s of reconciles, less {} MiB of a process holding only the simulator's instances",
            fmt(mib(simulator))
        )),
    );
    out.push(
        Measurement::runs(
            "steady",
            format!("… with the simulator's {label} instances in the same process"),
            "MiB",
            &rss_max,
        )
        .note(format!(
            "highest VmRSS; median sample {} MiB; {} MiB before the group",
            fmt(median(&rss_median)),
            fmt(median(&baseline))
        )),
    );
    out.push(
        Measurement::runs(
            "steady",
            format!("… heap in use at most, the controller's share, N={label}"),
            "MiB",
            &heap.iter().map(|h| h - mib(sim.heap)).collect::<Vec<_>>(),
        )
        .note(format!(
            "bytes allocated and not freed (counted by the benchmark's allocator, read every millisecond) at their highest over the same 5 s, less the simulator's {} MiB; the rest of the resident memory is the allocator's",
            fmt(mib(sim.heap))
        )),
    );
    out.push(Measurement::runs(
        "steady",
        format!("peak resident memory (VmHWM), N={label}"),
        "MiB",
        &hwm,
    ));
    out.push(
        Measurement::runs(
            "steady",
            format!("CPU of one reconcile pass, N={label}"),
            "ms",
            &cpu,
        )
        .note("poll 1 s, 5 s window"),
    );
    Ok(out)
}
