//! `cli`: wall time of the `infrakit group describe ID` binary against a converged group of
//! 1,000 simulated instances, served by a group plugin on a socket in this process. The binary
//! is `--infrakit PATH`, else `infrakit` next to this binary (same target directory); it sees
//! the socket through `INFRAKIT_HOME` and `INFRAKIT_PLUGINS_DIR`.
//!
//! Timed from spawning the process to its exit, its output read through a pipe: process start,
//! connecting, the `DescribeGroup` call (the plugin lists the instances), decoding and printing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::time::Instant;

use infrakit_rpc::{Handlers, PluginServer};
use infrakit_spi::Group;

use crate::fixture::{self, SimGroup};
use crate::measure::ms;
use crate::opts::Opts;
use crate::report::{fmt, Measurement, Target};

/// The `infrakit` binary to time.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("--infrakit {}: no such file", p.display());
    }
    let exe = std::env::current_exe().context("locating this binary")?;
    let next_to = exe
        .parent()
        .context("this binary has no directory")?
        .join("infrakit");
    if next_to.is_file() {
        Ok(next_to)
    } else {
        bail!(
            "no infrakit binary at {} (build it with `cargo build -p infrakit`, same profile, or pass --infrakit PATH)",
            next_to.display()
        )
    }
}

/// Runs `infrakit` with `args` once; returns the wall time and the number of lines printed.
async fn time_once(exe: &Path, home: &Path, plugins: &Path, args: &[&str]) -> Result<(f64, usize)> {
    let start = Instant::now();
    let out = tokio::process::Command::new(exe)
        .args(args)
        .env("INFRAKIT_HOME", home)
        .env("INFRAKIT_PLUGINS_DIR", plugins)
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {}", exe.display()))?;
    let took = ms(start.elapsed());
    if !out.status.success() {
        bail!(
            "`infrakit {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((took, out.stdout.split(|b| *b == b'\n').count()))
}

/// Runs the scenario.
pub async fn run(opts: &Opts) -> Result<Vec<Measurement>> {
    let exe = match locate(opts.infrakit.as_deref()) {
        Ok(exe) => exe,
        Err(e) if opts.infrakit.is_none() => {
            eprintln!("cli: skipped: {e:#}");
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let (n, runs) = if opts.quick { (1_000, 3) } else { (1_000, 10) };
    let runs = opts.runs.map_or(runs, |r| r.max(5));
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().to_path_buf();
    let plugins = home.join("plugins");

    let f = SimGroup::new(Duration::ZERO, fixture::config(Duration::from_secs(1)));
    f.group
        .commit_group(fixture::sim_spec("bench", n, "v1", None), false)
        .await?;
    fixture::wait_converged(
        f.group.as_ref(),
        "bench",
        fixture::describe_every(n),
        Duration::from_secs(120),
        |d| d.instances.len() == n,
    )
    .await?;
    let server =
        PluginServer::start(&plugins, "group", Handlers::new().group(f.group.clone())).await?;

    let mut out = Vec::new();
    for (label, args) in [
        ("table", vec!["group", "describe", "bench"]),
        ("-q", vec!["group", "describe", "bench", "-q"]),
    ] {
        // Once untimed: the binary into the page cache.
        time_once(&exe, &home, &plugins, &args).await?;
        let mut times = Vec::new();
        for i in 0..runs {
            let (t, lines) = time_once(&exe, &home, &plugins, &args).await?;
            if lines < n {
                bail!(
                    "`infrakit {}` printed {lines} lines, fewer than {n}",
                    args.join(" ")
                );
            }
            eprintln!(
                "cli `infrakit {}` run {}/{runs}: {} ms",
                args.join(" "),
                i + 1,
                fmt(t)
            );
            times.push(t);
        }
        out.push(
            Measurement::runs(
                "cli",
                format!(
                    "`infrakit group describe` ({label}) of {} instances: wall time",
                    fmt(n as f64)
                ),
                "ms",
                &times,
            )
            .target(Target::Below(100.0), opts.quick),
        );
    }
    server.stop().await;
    Ok(out)
}
