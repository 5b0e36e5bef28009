//! The options every scenario sees, built by `main` from the command line.

use std::path::PathBuf;
use std::time::Duration;

use crate::deployment::InstanceKind;

/// Options every scenario sees.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Small sizes, single runs.
    pub quick: bool,
    /// Repetitions, overriding each scenario's default.
    pub runs: Option<usize>,
    /// The `infrakit` binary, if given.
    pub infrakit: Option<PathBuf>,
    /// Sizes and settings of the `deployed` scenario.
    pub deployed: DeployedOpts,
    /// Connections each flood of the `flood` scenario holds open.
    pub flood_connections: Option<usize>,
}

/// What the `deployed` scenario runs; empty or `None` fields take the scenario's defaults.
#[derive(Debug, Clone, Default)]
pub struct DeployedOpts {
    /// Instance plugins to deploy.
    pub plugins: Vec<InstanceKind>,
    /// Group sizes, for every plugin chosen.
    pub sizes: Vec<usize>,
    /// Poll intervals of the group plugin.
    pub polls: Vec<Duration>,
    /// The idle window CPU and memory are measured over.
    pub window: Option<Duration>,
    /// Members killed in each deployment on the process plugin.
    pub kills: Option<usize>,
    /// Instances in the rollout group (0: no rollouts).
    pub rollout_size: Option<usize>,
    /// Give the flavor a TCP health probe with this interval (against a listener the benchmark
    /// holds open).
    pub probe: Option<Duration>,
}
