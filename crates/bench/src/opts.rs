//! The options every scenario sees, built by `main` from the command line.

use std::path::PathBuf;

/// Options every scenario sees.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Small sizes, single runs.
    pub quick: bool,
    /// Repetitions, overriding each scenario's default.
    pub runs: Option<usize>,
    /// The `infrakit` binary, if given.
    pub infrakit: Option<PathBuf>,
}
