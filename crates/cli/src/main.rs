//! `infrakit`: the command line of infrakit.
//!
//! Thin by design: it parses arguments, calls the library crates, and prints. Errors end the
//! process with a one-line message on stderr and exit code 1 (2 for usage errors, from clap).

#[macro_use]
mod io;
mod builtin;
mod cli;
mod cmd_completions;
mod cmd_events;
mod cmd_flavor;
mod cmd_group;
mod cmd_instance;
mod cmd_manager;
mod cmd_plugin;
mod cmd_template;
mod cmd_up;
mod guard;
mod live;
mod remote;
mod style;
mod template;

use clap::Parser;

use crate::cli::{Cli, Command};

/// mimalloc: faster than the system allocator for the controller's many small allocations, and
/// it gives freed memory back to the system soon after a reconcile of a large group. Built
/// without transparent huge pages (the workspace's `Cargo.toml` says why).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    // A plugin alone in its process may want fewer workers than one per core.
    if let Command::Plugin(cli::PluginCommand::Run { kind, .. }) = &cli.command {
        if let Some(n) = kind
            .parse::<builtin::Kind>()
            .ok()
            .and_then(builtin::Kind::async_workers)
        {
            runtime.worker_threads(n);
        }
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A reader that closed the pipe (`| head`) ends the command quietly.
        Err(e) if io::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // `up` logs to a file (its screen is the live view); everything else logs to stderr.
    // Daemons log to their files at info (including the audit trail of mutating calls) unless
    // told otherwise; interactive commands only warn.
    let daemon = matches!(
        &cli.command,
        Command::Plugin(cli::PluginCommand::Run { .. })
            | Command::Manager(cli::ManagerArgs {
                command: cli::ManagerCommand::Run(_),
                ..
            })
    );
    let level = if daemon && cli.log == "warn" {
        "info"
    } else {
        cli.log.as_str()
    };
    if !matches!(cli.command, Command::Up(_)) {
        io::init_logging(level, None);
    }
    template::set_global_vars(template::parse_vars(&cli.vars)?);
    remote::set(cli.remote.clone());
    match cli.command {
        Command::Up(args) => cmd_up::run(args, &cli.log).await,
        Command::Down(args) => cmd_up::down(args).await,
        Command::Plugin(cmd) => cmd_plugin::run(cmd).await,
        Command::Manager(args) => cmd_manager::run(args).await,
        Command::Group(args) => cmd_group::run(args).await,
        Command::Instance(args) => cmd_instance::run(args).await,
        Command::Flavor(args) => cmd_flavor::run(args).await,
        Command::Template(args) => cmd_template::run(args),
        Command::Completions { shell } => cmd_completions::completions(shell),
        Command::Man { dir } => cmd_completions::man(dir.as_deref()),
        Command::Events(args) => cmd_events::run(args).await,
    }
}
