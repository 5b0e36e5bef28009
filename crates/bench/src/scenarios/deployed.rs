//! `deployed`: the plugins as users deploy them, each a process of its own: the `infrakit`
//! binary (as found by the `cli` scenario) runs `infrakit plugin start group <instance plugin>
//! flavor-vanilla --poll-interval <poll>` in a private `INFRAKIT_HOME`, the benchmark commits a
//! group over the group plugin's socket and measures the processes through `/proc`. Every run is
//! a fresh deployment, stopped with `infrakit plugin stop` at its end; its processes are killed
//! on any error, panic or Ctrl-C (see [`crate::deployment`]).
//!
//! Each run measures
//! - convergence: from `CommitGroup` of N instances until `DescribeGroup` says converged with N
//!   (the time taken when the describe that said so was sent);
//! - after a settling second, over an idle window (5 s): each plugin process's CPU
//!   (utime + stime from `/proc/<pid>/stat`, in % of one core) and its resident memory (the
//!   highest `VmRSS` sampled every 50 ms), and the totals of the three; the group plugin's
//!   `VmHWM` (its peak since it started, convergence included);
//! - on the process plugin, then: heal latencies (see `heal`).
//!
//! Then rolling updates (see `rollout`) of 100 instances on the simulator, one deployment per
//! poll interval. Sizes, plugins, poll intervals, the window and the kills are options
//! (`--deployed-*`); `--quick` deploys each plugin once at a small size. With `--deployed-probe
//! 1s` the flavor probes every member over TCP (a listener the benchmark holds) at that
//! interval: the idle window then measures what health checks with a probe cost.

pub(crate) mod heal;
mod rollout;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::time::Instant;

use infrakit_spi::Group;

use crate::deployment::{self, Deployment, InstanceKind, Stopping, Usage};
use crate::fixture;
use crate::measure::{mib, ms};
use crate::opts::Opts;
use crate::report::{count, fmt, Measurement};
use crate::scenarios::cli;

const GROUP: &str = "bench";
const ALL_KINDS: [InstanceKind; 3] = [
    InstanceKind::File,
    InstanceKind::Process,
    InstanceKind::Simulator,
];

/// One deployment to converge and measure.
#[derive(Debug, Clone, Copy)]
struct Case {
    kind: InstanceKind,
    n: usize,
    poll: Duration,
    /// The flavor's TCP probe interval, if it has one.
    probe: Option<Duration>,
}

impl Case {
    fn label(&self) -> String {
        let probe = match self.probe {
            Some(p) => format!(", TCP probe every {}", deployment::poll_label(p)),
            None => String::new(),
        };
        format!(
            "{}, N={}, poll {}{probe}",
            self.kind.label(),
            count(self.n),
            deployment::poll_label(self.poll)
        )
    }
}

/// Everything the scenario runs.
#[derive(Debug)]
struct Plan {
    quick: bool,
    cases: Vec<Case>,
    polls: Vec<Duration>,
    runs: usize,
    window: Duration,
    settle: Duration,
    kills: usize,
    rollout: Option<(InstanceKind, usize)>,
}

/// The sizes each plugin is deployed at unless `--deployed-size` says otherwise: the process
/// plugin runs a real `sleep` per instance, so it stays small.
fn default_sizes(kind: InstanceKind, quick: bool) -> &'static [usize] {
    match (kind, quick) {
        (InstanceKind::File, true) => &[100],
        (InstanceKind::Process, true) => &[5],
        (InstanceKind::Simulator, true) => &[1_000],
        (InstanceKind::File, false) => &[1_000, 10_000],
        (InstanceKind::Process, false) => &[100, 1_000],
        (InstanceKind::Simulator, false) => &[1_000, 10_000, 100_000],
    }
}

impl Plan {
    fn new(opts: &Opts) -> Plan {
        let o = &opts.deployed;
        let quick = opts.quick;
        let kinds = if o.plugins.is_empty() {
            ALL_KINDS.to_vec()
        } else {
            o.plugins.clone()
        };
        let polls = match (o.polls.is_empty(), quick) {
            (false, _) => o.polls.clone(),
            (true, true) => vec![Duration::from_millis(100)],
            (true, false) => vec![Duration::from_millis(100), Duration::from_secs(1)],
        };
        let mut cases = Vec::new();
        for &kind in &kinds {
            let sizes = if o.sizes.is_empty() {
                default_sizes(kind, quick).to_vec()
            } else {
                o.sizes.clone()
            };
            for n in sizes {
                cases.extend(polls.iter().map(|&poll| Case {
                    kind,
                    n,
                    poll,
                    probe: o.probe,
                }));
            }
        }
        // Rollouts on the simulator when it is chosen, else on the first plugin chosen.
        let rollout_kind = *kinds
            .iter()
            .find(|k| **k == InstanceKind::Simulator)
            .unwrap_or(&kinds[0]);
        let rollout_n = o.rollout_size.unwrap_or(if quick { 20 } else { 100 });
        Plan {
            quick,
            cases,
            polls,
            runs: opts.runs.unwrap_or(if quick { 1 } else { 3 }),
            window: o
                .window
                .unwrap_or(Duration::from_millis(if quick { 500 } else { 5_000 })),
            settle: Duration::from_millis(if quick { 0 } else { 1_000 }),
            kills: o.kills.unwrap_or(if quick { 3 } else { 20 }),
            rollout: (rollout_n > 0).then_some((rollout_kind, rollout_n)),
        }
    }

    /// How old a member must be before it is killed: past crash-loop detection (10 s), unless
    /// a quick run kills fewer members than the controller's budget of young deaths.
    fn min_age(&self, n: usize) -> Duration {
        if self.quick && self.kills <= n + 2 {
            Duration::ZERO
        } else {
            Duration::from_millis(10_500)
        }
    }
}

/// Ends a task when dropped.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.abort();
        }
    }
}

/// What one run of a case measured.
struct RunResult {
    converge_ms: f64,
    usage: Vec<Usage>,
    heal_ms: Vec<f64>,
}

/// Deploys, converges, measures the idle window (and heals, on the process plugin), stops.
async fn run_once(exe: &Path, case: Case, plan: &Plan) -> Result<(RunResult, Stopping)> {
    let d = Deployment::start(exe, case.kind, case.poll).await?;
    let group = d.group();
    let mut spec = case.kind.spec(GROUP, case.n, "v1", None);
    // Held for the run: the probes' target, accepting and closing every connection.
    let _target = match case.probe {
        Some(interval) => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            spec.properties["Flavor"]["Properties"] = serde_json::json!({
                "Health": {
                    "TCP": addr.to_string(),
                    "Interval": humantime::format_duration(interval).to_string(),
                }
            });
            Some(tokio::spawn(async move {
                while let Ok((conn, _)) = listener.accept().await {
                    drop(conn);
                }
            }))
        }
        None => None,
    };
    let _target = AbortOnDrop(_target);
    let start = Instant::now();
    group.commit_group(spec, false).await?;
    let done = fixture::wait_converged(
        &group,
        GROUP,
        deployment::describe_every(case.n),
        Duration::from_secs(1_800),
        |g| g.instances.len() == case.n,
    )
    .await?;
    let converge_ms = ms(done - start);
    // Letting the passes that follow convergence finish before the idle window.
    tokio::time::sleep(plan.settle).await;
    let pids: Vec<i32> = d.processes().iter().map(|(_, pid)| *pid).collect();
    let usage = deployment::usage(&pids, plan.window).await?;
    let heal_ms = match case.kind {
        InstanceKind::Process if plan.kills > 0 => {
            heal::measure(&d, GROUP, case.n, plan.kills, plan.min_age(case.n)).await?
        }
        _ => Vec::new(),
    };
    let stopping = d.stop().await?;
    let result = RunResult {
        converge_ms,
        usage,
        heal_ms,
    };
    Ok((result, stopping))
}

/// The measurements of a case's runs; `names` are the plugin processes, group first.
fn measurements(case: Case, names: &[&str], runs: &[RunResult]) -> Vec<Measurement> {
    let label = case.label();
    let row = |what: String, unit: &'static str, values: Vec<f64>| {
        Measurement::runs("deployed", format!("{label}: {what}"), unit, &values)
    };
    let per_run = |f: &dyn Fn(&RunResult) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let mut out = vec![row(
        "commit to converged".into(),
        "ms",
        per_run(&|r| r.converge_ms),
    )];
    for (i, name) in names.iter().enumerate() {
        out.push(row(
            format!("idle CPU, {name}"),
            "% of a core",
            per_run(&|r| r.usage[i].cpu_percent),
        ));
    }
    out.push(row(
        "idle CPU, all three".into(),
        "% of a core",
        per_run(&|r| r.usage.iter().map(|u| u.cpu_percent).sum()),
    ));
    for (i, name) in names.iter().enumerate() {
        out.push(row(
            format!("resident memory (max VmRSS), {name}"),
            "MiB",
            per_run(&|r| mib(r.usage[i].rss_max)),
        ));
    }
    out.push(row(
        "resident memory (max VmRSS), all three".into(),
        "MiB",
        per_run(&|r| r.usage.iter().map(|u| mib(u.rss_max)).sum()),
    ));
    out.push(row(
        format!("peak resident memory since start (VmHWM), {}", names[0]),
        "MiB",
        per_run(&|r| mib(r.usage[0].hwm)),
    ));
    let heal: Vec<f64> = runs.iter().flat_map(|r| r.heal_ms.clone()).collect();
    if !heal.is_empty() {
        out.push(Measurement::samples(
            "deployed",
            format!("{label}: SIGKILL of a member to its replacement running"),
            "ms",
            &heal,
        ));
    }
    out
}

/// Runs every case, then the rollouts.
async fn run_plan(exe: &Path, plan: &Plan) -> Result<Vec<Measurement>> {
    let mut out = Vec::new();
    let mut stopping = Vec::new();
    for &case in &plan.cases {
        let mut runs = Vec::new();
        for i in 0..plan.runs {
            let (r, stop) = run_once(exe, case, plan).await?;
            stopping.push(stop);
            let cpu: f64 = r.usage.iter().map(|u| u.cpu_percent).sum();
            let rss: f64 = r.usage.iter().map(|u| mib(u.rss_max)).sum();
            eprintln!(
                "deployed {} run {}/{}: converged in {} ms; idle {} % of a core, {} MiB (all three)",
                case.label(),
                i + 1,
                plan.runs,
                fmt(r.converge_ms),
                fmt(cpu),
                fmt(rss)
            );
            runs.push(r);
        }
        let names = ["group", case.kind.plugin(), "flavor-vanilla"];
        out.extend(measurements(case, &names, &runs));
    }
    if let Some((kind, n)) = plan.rollout {
        for &poll in &plan.polls {
            let (rows, stop) = rollout::measure(exe, kind, n, poll, plan.runs).await?;
            out.extend(rows);
            stopping.push(stop);
        }
    }
    for s in stopping {
        s.finish().await?;
    }
    Ok(out)
}

/// Runs the scenario.
pub async fn run(opts: &Opts) -> Result<Vec<Measurement>> {
    let exe = match cli::locate(opts.infrakit.as_deref()) {
        Ok(exe) => exe,
        Err(e) if opts.infrakit.is_none() => {
            eprintln!("deployed: skipped: {e:#}");
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let plan = Plan::new(opts);
    // On Ctrl-C the plan's future is dropped, and with it the running deployment, whose drop
    // kills its processes (they run in process groups of their own, out of the terminal's reach).
    tokio::select! {
        out = run_plan(&exe, &plan) => out,
        _ = tokio::signal::ctrl_c() => bail!("deployed: interrupted; its processes were killed"),
    }
}
