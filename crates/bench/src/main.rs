//! `infrakit-bench`: benchmarks of infrakit, printed as a table (and as JSON with `--json`).
//!
//! ```text
//! cargo run --release -p infrakit-bench -- [--quick] [--scenario NAME]... [--runs N] [--json]
//! ```
//!
//! Scenarios (see each module): `converge` (0 to N simulated instances), `steady` (CPU of a
//! reconcile pass, resident memory), `heal` (a killed process replaced), `rollout` (rolling
//! updates), `protocol` (JSON-RPC calls on a Unix socket), `cli` (the `infrakit` binary),
//! `deployed` (the plugins as separate processes started by `infrakit plugin start`), `flood`
//! (a plugin's socket and a manager's TLS listener under 5,000 stuck connections).
//! `--quick` runs each at small sizes in a few seconds, for CI; targets are only judged in full
//! runs. Build in release for real numbers.

#[allow(unsafe_code)]
mod alloc;
mod deployment;
mod fixture;
mod measure;
mod opts;
mod report;
mod scenarios;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::deployment::InstanceKind;
use crate::opts::{DeployedOpts, Opts};
use crate::report::Measurement;

/// mimalloc, as in `infrakit`; the memory probes also count the bytes in use.
#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// Benchmarks of infrakit's group controller, plugins, protocol and CLI.
#[derive(Debug, Parser)]
#[command(name = "infrakit-bench", version, about)]
struct Cli {
    /// Small sizes and single runs: a smoke test in a few seconds (targets are not judged).
    #[arg(long)]
    quick: bool,
    /// Run only these scenarios (default: all).
    #[arg(long, value_enum)]
    scenario: Vec<Scenario>,
    /// Repetitions of each measurement (default: 5 in full runs, 1 with --quick).
    #[arg(long)]
    runs: Option<usize>,
    /// Also print the results as JSON on stdout (the table then goes to stderr).
    #[arg(long)]
    json: bool,
    /// The `infrakit` binary for the `cli` and `deployed` scenarios (default: next to this
    /// binary).
    #[arg(long)]
    infrakit: Option<PathBuf>,
    /// `deployed`: instance plugins to deploy (repeatable; default: all three).
    #[arg(long, value_enum, value_name = "PLUGIN")]
    deployed_plugin: Vec<InstanceKind>,
    /// `deployed`: group sizes, for every plugin (repeatable; default: sizes that suit each
    /// plugin, up to 100,000 on the simulator).
    #[arg(long, value_name = "N")]
    deployed_size: Vec<usize>,
    /// `deployed`: poll intervals of the group plugin, e.g. `100ms` (repeatable; default 100ms
    /// and 1s, 100ms with --quick).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    deployed_poll: Vec<Duration>,
    /// `deployed`: the idle window CPU and memory are measured over (default 5s, 500ms with
    /// --quick).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    deployed_window: Option<Duration>,
    /// `deployed`: members killed per run on the process plugin (default 20, 3 with --quick).
    #[arg(long, value_name = "N")]
    deployed_kills: Option<usize>,
    /// `deployed`: instances in the rollout group (default 100, 20 with --quick; 0: none).
    #[arg(long, value_name = "N")]
    deployed_rollout_size: Option<usize>,
    /// `deployed`: give the flavor a TCP health probe with this interval, e.g. `1s`, against a
    /// listener the benchmark holds open (default: no probe).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    deployed_probe: Option<Duration>,
    /// `flood`: connections each flood holds open (default 5,000, 500 with --quick).
    #[arg(long, value_name = "N")]
    flood_connections: Option<usize>,
    /// Internal: converge a group of N instances in this process and report its memory as JSON.
    #[arg(long, hide = true)]
    probe_memory: Option<usize>,
    /// Internal: hold N simulated instances without a controller and report the memory as JSON.
    #[arg(long, hide = true)]
    probe_simulator: Option<usize>,
}

/// The scenarios, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Scenario {
    /// A group from 0 to N instances.
    Converge,
    /// CPU of a reconcile pass and resident memory of a converged group.
    Steady,
    /// A killed process member replaced.
    Heal,
    /// Rolling updates.
    Rollout,
    /// Plugin protocol calls.
    Protocol,
    /// The `infrakit group describe` binary.
    Cli,
    /// The plugins as separate processes, as users deploy them.
    Deployed,
    /// Plugins and a manager under a flood of stuck connections.
    Flood,
}

const ALL: [Scenario; 8] = [
    Scenario::Converge,
    Scenario::Steady,
    Scenario::Heal,
    Scenario::Rollout,
    Scenario::Protocol,
    Scenario::Cli,
    Scenario::Deployed,
    Scenario::Flood,
];

/// The machine the numbers come from.
#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: String,
    memory_total: String,
    kernel: String,
    profile: &'static str,
}

fn machine() -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let field = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: field(&cpuinfo, "model name"),
        memory_total: field(&read("/proc/meminfo"), "MemTotal"),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        profile: if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        },
    }
}

#[derive(Serialize)]
struct Output<'a> {
    machine: Machine,
    quick: bool,
    results: &'a [Measurement],
}

async fn run(scenario: Scenario, opts: &Opts) -> Result<Vec<Measurement>> {
    match scenario {
        Scenario::Converge => scenarios::converge::run(opts).await,
        Scenario::Steady => scenarios::steady::run(opts).await,
        Scenario::Heal => scenarios::heal::run(opts).await,
        Scenario::Rollout => scenarios::rollout::run(opts).await,
        Scenario::Protocol => scenarios::protocol::run(opts).await,
        Scenario::Cli => scenarios::cli::run(opts).await,
        Scenario::Deployed => scenarios::deployed::run(opts).await,
        Scenario::Flood => scenarios::flood::run(opts).await,
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    if cli.probe_simulator.is_some() || cli.probe_memory.is_some() {
        alloc::count();
    }
    if let Some(n) = cli.probe_simulator {
        let probe = scenarios::steady::probe_simulator(n).await?;
        println!("{}", serde_json::to_string(&probe)?);
        return Ok(());
    }
    if let Some(n) = cli.probe_memory {
        let probe = scenarios::steady::probe(n).await?;
        println!("{}", serde_json::to_string(&probe)?);
        return Ok(());
    }
    let opts = Opts {
        quick: cli.quick,
        runs: cli.runs.map(|r| r.max(1)),
        infrakit: cli.infrakit.clone(),
        deployed: DeployedOpts {
            plugins: cli.deployed_plugin.clone(),
            sizes: cli.deployed_size.clone(),
            polls: cli.deployed_poll.clone(),
            window: cli.deployed_window,
            kills: cli.deployed_kills,
            rollout_size: cli.deployed_rollout_size,
            probe: cli.deployed_probe,
        },
        flood_connections: cli.flood_connections,
    };
    let chosen: Vec<Scenario> = if cli.scenario.is_empty() {
        ALL.to_vec()
    } else {
        ALL.into_iter()
            .filter(|s| cli.scenario.contains(s))
            .collect()
    };
    let m = machine();
    eprintln!(
        "infrakit-bench ({} build{}): {} CPUs ({}), {} memory, Linux {}",
        m.profile,
        if cli.quick { ", quick" } else { "" },
        m.cpus,
        m.cpu_model,
        m.memory_total,
        m.kernel
    );
    let mut results = Vec::new();
    for s in chosen {
        results.extend(run(s, &opts).await?);
    }
    let table = report::table(&results);
    if cli.json {
        eprintln!("{table}");
        let out = Output {
            machine: m,
            quick: cli.quick,
            results: &results,
        };
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut stdout, &out)?;
        writeln!(stdout)?;
    } else {
        println!("{table}");
    }
    Ok(())
}
