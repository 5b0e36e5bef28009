//! `infrakit completions SHELL` and `infrakit man [--dir DIR]`: shell completion scripts and
//! man pages generated from the command-line definition.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::io;

/// Prints the completion script for `shell`.
pub fn completions(shell: Shell) -> Result<()> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "infrakit", &mut script);
    io::write_stdout(&script)
}

/// Writes one man page per command and subcommand into `dir` (`infrakit.1`,
/// `infrakit-group.1`, `infrakit-group-commit.1`, ...), or prints the top page to stdout.
pub fn man(dir: Option<&Path>) -> Result<()> {
    let cmd = Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("writing man pages to {}", dir.display()))?;
            let mut pages: Vec<String> = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("infrakit") && n.ends_with(".1"))
                .collect();
            pages.sort();
            outln!("wrote {} man pages to {}", pages.len(), dir.display());
            Ok(())
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .context("rendering the man page")?;
            io::write_stdout(&page)
        }
    }
}
