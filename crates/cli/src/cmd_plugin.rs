//! `infrakit plugin start|ls|stop|run`.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use infrakit_rpc::{dir, shutdown_signal, Client, Plugins};

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
pub async fn answers(socket: &Path) -> bool {
    Client::new("probe", socket)
        .with_timeout(Duration::from_secs(2))
        .hello()
        .await
        .is_ok()
}

/// The command-line flags that reproduce `opts` for a background `infrakit ... run`.
pub fn option_args(opts: &PluginOptions) -> Result<Vec<String>> {
    let mut args = vec![
        "--poll-interval".to_string(),
        humantime::format_duration(opts.poll_interval).to_string(),
        "--resync-interval".to_string(),
        humantime::format_duration(opts.resync_interval).to_string(),
        "--max-parallel".to_string(),
        opts.max_parallel.to_string(),
        "--latency".to_string(),
        humantime::format_duration(opts.latency).to_string(),
        "--failure-rate".to_string(),
        opts.failure_rate.to_string(),
    ];
    if let Some(d) = &opts.dir {
        args.push("--dir".into());
        args.push(std::path::absolute(d)?.display().to_string());
    }
    Ok(args)
}

/// mimalloc's settings for background daemons (long-lived, several per machine, mostly idle):
/// memory freed after a burst of work (a listing, a convergence) goes back to the system at once
/// instead of after a second, and arenas are committed as they are used rather than up front.
/// Measured with three plugin processes at 1,000 instances: 136 MiB resident in all with
/// mimalloc's defaults, 47 MiB with these (docs/benchmarks.md). Set in the environment, they
/// win.
const DAEMON_ALLOCATOR: [(&str, &str); 2] = [
    ("MIMALLOC_PURGE_DELAY", "0"),
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
];

/// Starts `infrakit <args>` in the background, logging to `$INFRAKIT_HOME/logs/<name>.log`, and
/// waits until something answers on the socket of `name`.
pub async fn spawn_background(name: &str, args: &[String]) -> Result<()> {
    let exe = std::env::current_exe().context("finding the infrakit binary")?;
    spawn_program(&exe, name, args).await
}

/// Starts `program <args>` in the background, like [`spawn_background`].
async fn spawn_program(program: &Path, name: &str, args: &[String]) -> Result<()> {
    let plugin_dir = dir::plugins_dir();
    dir::ensure_private_dir(&plugin_dir)?;
    let socket = dir::socket_path(&plugin_dir, name);
    if answers(&socket).await {
        bail!("{name} is already running (socket {})", socket.display());
    }
    let logs = dir::infrakit_home().join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let log_path = logs.join(format!("{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    for (var, value) in DAEMON_ALLOCATOR {
        if std::env::var_os(var).is_none() {
            cmd.env(var, value);
        }
    }
    // Its own process group, so a Ctrl-C in this terminal does not stop it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !answers(&socket).await {
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(5)..].join("\n");
            bail!("{name} exited ({status}): {tail}");
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{name} did not start within 10s; see {}",
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    outln!(
        "started {name} (pid {}, log {})",
        child.id(),
        log_path.display()
    );
    Ok(())
}

async fn start(specs: &[String], name: Option<String>, opts: &PluginOptions) -> Result<()> {
    if name.is_some() && specs.len() != 1 {
        bail!("--name can only be used when starting one plugin");
    }
    for spec in specs {
        let (kind, default_name) = match builtin::parse_spec(spec) {
            Ok(k) => k,
            Err(not_builtin) => {
                let (kind, plugin_name) = spec.split_once(':').unwrap_or((spec, spec));
                let Some(program) = external_plugin(kind) else {
                    return Err(not_builtin.context(format!(
                        "and no program infrakit-{kind} next to infrakit or on PATH"
                    )));
                };
                let name = name.clone().unwrap_or_else(|| plugin_name.to_string());
                spawn_program(&program, &name, &["--name".to_string(), name.clone()]).await?;
                continue;
            }
        };
        let name = name.clone().unwrap_or(default_name);
        let mut args: Vec<String> = ["plugin", "run", kind.default_name(), "--name", &name]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(option_args(opts)?);
        spawn_background(&name, &args).await?;
    }
    Ok(())
}

/// A plugin shipped as a program of its own (`infrakit-instance-aws` for `instance-aws`): next
/// to this binary first, then on `PATH`.
fn external_plugin(kind: &str) -> Option<std::path::PathBuf> {
    if kind.is_empty() || kind.contains('/') {
        return None;
    }
    let file = format!("infrakit-{kind}");
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(&file)));
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(&file));
    beside.into_iter().chain(on_path).find(|p| p.is_file())
}

async fn ls(quiet: bool) -> Result<()> {
    let plugin_dir = dir::plugins_dir();
    let entries = dir::list(&plugin_dir)?;
    if quiet {
        for e in &entries {
            outln!("{}", e.name);
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
    // Plugins still running whose socket is gone: nothing can reach them, `stop` can end them.
    for name in dir::pid_names(&plugin_dir)? {
        if entries.iter().any(|e| e.name == name) {
            continue;
        }
        if let Some(pid) = dir::pid_file_process(&dir::pid_path(&plugin_dir, &name)) {
            t.add_row(vec![
                name,
                pid.to_string(),
                "(socket missing)".to_string(),
                "-".to_string(),
            ]);
        }
    }
    io::print_table(&t);
    Ok(())
}

async fn stop(names: Vec<String>, all: bool) -> Result<()> {
    let plugin_dir = dir::plugins_dir();
    let names: Vec<String> = if all {
        // Every socket and every pid file: a plugin whose socket was deleted still runs.
        let mut names: Vec<String> = dir::list(&plugin_dir)?
            .into_iter()
            .map(|e| e.name)
            .chain(dir::pid_names(&plugin_dir)?)
            .collect();
        names.sort();
        names.dedup();
        names
    } else if names.is_empty() {
        bail!("name the plugins to stop, or use --all");
    } else {
        names
    };
    let mut failed = Vec::new();
    for name in &names {
        let socket = dir::socket_path(&plugin_dir, name);
        let pid_file = dir::pid_path(&plugin_dir, name);
        let remove_files = || {
            let _ = std::fs::remove_file(&socket);
            let _ = std::fs::remove_file(&pid_file);
        };
        let Some(pid) = dir::pid_file_process(&pid_file) else {
            if !pid_file.exists() && !socket.exists() {
                // `up` serves several plugins from one process: they went with the first.
                if !all {
                    failed.push(format!("{name}: not running"));
                }
                continue;
            }
            if pid_file.exists() {
                // The process is gone, or its pid now belongs to a newer process.
                remove_files();
                outln!("removed stale files of {name}");
            } else if socket.exists() && !answers(&socket).await {
                remove_files();
                outln!("removed stale socket of {name}");
            } else {
                failed.push(format!("{name}: no pid file"));
            }
            continue;
        };
        if pid as u32 == std::process::id() {
            failed.push(format!("{name}: refusing to signal this process"));
            continue;
        }
        match kill(Pid::from_raw(pid), Signal::SIGTERM) {
            Ok(()) => {}
            Err(nix::errno::Errno::ESRCH) => {
                remove_files();
                outln!("removed stale files of {name}");
                continue;
            }
            Err(e) => {
                failed.push(format!("{name}: {e}"));
                continue;
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while dir::process_started(pid).is_some() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if dir::process_started(pid).is_some() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        remove_files();
        outln!("stopped {name}");
    }
    if !failed.is_empty() {
        bail!("could not stop {}", failed.join("; "));
    }
    Ok(())
}

async fn run_foreground(kind: &str, name: Option<String>, opts: &PluginOptions) -> Result<()> {
    let kind: Kind = kind.parse()?;
    let name = name.unwrap_or_else(|| kind.default_name().to_string());
    let plugins = Arc::new(Plugins::new(dir::plugins_dir()));
    let server = builtin::serve(kind, &name, opts, &plugins).await?;
    tracing::info!(plugin = %name, socket = %server.socket().display(), "serving");
    shutdown_signal().await?;
    tracing::info!(plugin = %name, "stopping");
    server.stop().await;
    Ok(())
}
