//! `infrakit plugin start|ls|stop|run`.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use infrakit_rpc::{dir, Client, Plugins};

use crate::builtin::{self, Kind};
use crate::cli::{PluginCommand, PluginOptions};
use crate::io;

/// Runs a plugin command.
pub async fn run(cmd: PluginCommand) -> Result<()> {
    match cmd {
        PluginCommand::Start {
            plugins,
            name,
            options,
        } => start(&plugins, name, &options).await,
        PluginCommand::Ls { quiet } => ls(quiet).await,
        PluginCommand::Stop { plugins, all } => stop(plugins, all).await,
        PluginCommand::Run {
            kind,
            name,
            options,
        } => run_foreground(&kind, name, &options).await,
    }
}

/// True when something answers on the plugin's socket.
async fn answers(socket: &Path) -> bool {
    Client::new("probe", socket)
        .with_timeout(Duration::from_secs(2))
        .hello()
        .await
        .is_ok()
}

async fn start(specs: &[String], name: Option<String>, opts: &PluginOptions) -> Result<()> {
    if name.is_some() && specs.len() != 1 {
        bail!("--name can only be used when starting one plugin");
    }
    let plugin_dir = dir::plugins_dir();
    dir::ensure_private_dir(&plugin_dir)?;
    let logs = dir::infrakit_home().join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let exe = std::env::current_exe().context("finding the infrakit binary")?;
    for spec in specs {
        let (kind, default_name) = builtin::parse_spec(spec)?;
        let name = name.clone().unwrap_or(default_name);
        let socket = dir::socket_path(&plugin_dir, &name);
        if answers(&socket).await {
            bail!(
                "plugin {name} is already running (socket {})",
                socket.display()
            );
        }
        let log_path = logs.join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["plugin", "run", kind.default_name(), "--name", &name])
            .arg("--poll-interval")
            .arg(humantime::format_duration(opts.poll_interval).to_string())
            .arg("--max-parallel")
            .arg(opts.max_parallel.to_string())
            .arg("--latency")
            .arg(humantime::format_duration(opts.latency).to_string())
            .arg("--failure-rate")
            .arg(opts.failure_rate.to_string());
        if let Some(d) = &opts.dir {
            cmd.arg("--dir").arg(std::path::absolute(d)?);
        }
        // Its own process group, so a Ctrl-C in this terminal does not stop it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting plugin {name}"))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if answers(&socket).await {
                break;
            }
            if let Some(status) = child.try_wait()? {
                let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = tail
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                bail!("plugin {name} exited ({status}): {}", tail.join("\n"));
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "plugin {name} did not start within 10s; see {}",
                    log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "started {name} (pid {}, log {})",
            child.id(),
            log_path.display()
        );
    }
    Ok(())
}

async fn ls(quiet: bool) -> Result<()> {
    let plugin_dir = dir::plugins_dir();
    let entries = dir::list(&plugin_dir)?;
    if quiet {
        for e in &entries {
            println!("{}", e.name);
        }
        return Ok(());
    }
    let mut t = io::table(&["NAME", "PID", "INTERFACES", "SOCKET"]);
    for e in &entries {
        let interfaces = match Client::new(&e.name, &e.socket)
            .with_timeout(Duration::from_secs(2))
            .hello()
            .await
        {
            Ok(objects) => {
                // Newest version of each interface first, one entry per interface.
                let mut names: Vec<String> = objects.keys().rev().cloned().collect();
                names.dedup_by(|a, b| a.split('/').next() == b.split('/').next());
                names.reverse();
                names.join(",")
            }
            Err(_) => "(not answering)".to_string(),
        };
        let pid = e.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        t.add_row(vec![
            e.name.clone(),
            pid,
            interfaces,
            e.socket.display().to_string(),
        ]);
    }
    io::print_table(&t);
    Ok(())
}

async fn stop(names: Vec<String>, all: bool) -> Result<()> {
    let plugin_dir = dir::plugins_dir();
    let names: Vec<String> = if all {
        dir::list(&plugin_dir)?
            .into_iter()
            .map(|e| e.name)
            .collect()
    } else if names.is_empty() {
        bail!("name the plugins to stop, or use --all");
    } else {
        names
    };
    let mut failed = Vec::new();
    for name in &names {
        let socket = dir::socket_path(&plugin_dir, name);
        let pid_file = dir::pid_path(&plugin_dir, name);
        let Some(pid) = dir::read_pid(&pid_file) else {
            if socket.exists() && !answers(&socket).await {
                let _ = std::fs::remove_file(&socket);
                println!("removed stale socket of {name}");
                continue;
            }
            failed.push(format!("{name}: no pid file"));
            continue;
        };
        if pid as u32 == std::process::id() {
            failed.push(format!("{name}: refusing to signal this process"));
            continue;
        }
        match kill(Pid::from_raw(pid), Signal::SIGTERM) {
            Ok(()) => {}
            Err(nix::errno::Errno::ESRCH) => {
                let _ = std::fs::remove_file(&socket);
                let _ = std::fs::remove_file(&pid_file);
                println!("removed stale files of {name}");
                continue;
            }
            Err(e) => {
                failed.push(format!("{name}: {e}"));
                continue;
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while kill(Pid::from_raw(pid), None).is_ok() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if kill(Pid::from_raw(pid), None).is_ok() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = std::fs::remove_file(&socket);
            let _ = std::fs::remove_file(&pid_file);
        }
        println!("stopped {name}");
    }
    if !failed.is_empty() {
        bail!("could not stop {}", failed.join("; "));
    }
    Ok(())
}

/// Waits for SIGTERM or SIGINT.
pub async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

async fn run_foreground(kind: &str, name: Option<String>, opts: &PluginOptions) -> Result<()> {
    let kind: Kind = kind.parse()?;
    let name = name.unwrap_or_else(|| kind.default_name().to_string());
    let plugins = Arc::new(Plugins::new(dir::plugins_dir()));
    let server = builtin::serve(kind, &name, opts, &plugins).await?.server;
    tracing::info!(plugin = %name, socket = %server.socket().display(), "serving");
    shutdown_signal().await?;
    tracing::info!(plugin = %name, "stopping");
    server.stop().await;
    Ok(())
}
