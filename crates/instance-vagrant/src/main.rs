//! `infrakit-instance-vagrant`: serves the Vagrant instance plugin on its socket in the plugin
//! directory until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use infrakit_instance_vagrant::{VagrantOptions, VagrantPlugin, DEFAULT_NAME};
use infrakit_rpc::{dir, shutdown_signal, Handlers, PluginServer};

/// Serve Vagrant machines as InfraKit instances.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Plugin name: the socket's file name in the plugin directory.
    #[arg(long, default_value = DEFAULT_NAME)]
    name: String,
    /// Directory holding one sub-directory per instance [default: $INFRAKIT_HOME/<name>/instances].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Vagrantfile template (minijinja) replacing the built-in one.
    #[arg(long, value_name = "FILE")]
    template: Option<PathBuf>,
    /// The vagrant executable.
    #[arg(long, default_value = "vagrant")]
    vagrant: PathBuf,
    /// VAGRANT_HOME for every Vagrant run [default: inherited, usually ~/.vagrant.d].
    #[arg(long, value_name = "DIR")]
    vagrant_home: Option<PathBuf>,
    /// How many `vagrant status` runs at once.
    #[arg(long, default_value_t = infrakit_instance_vagrant::DEFAULT_STATUS_CONCURRENCY)]
    status_concurrency: usize,
    /// Time `vagrant up` may take.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    up_timeout: Duration,
    /// Keep machines found not running (for post-mortems) instead of destroying them.
    #[arg(long)]
    keep_dead: bool,
    /// Plugin directory [default: $INFRAKIT_PLUGINS_DIR, else $INFRAKIT_HOME/plugins].
    #[arg(long)]
    plugins_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let options = VagrantOptions {
        template: args.template,
        vagrant: args.vagrant,
        vagrant_home: args.vagrant_home,
        status_concurrency: args.status_concurrency,
        up_timeout: args.up_timeout,
        destroy_dead: !args.keep_dead,
        ..VagrantOptions::new(
            args.name.clone(),
            args.dir.unwrap_or_else(|| {
                infrakit_instance_vagrant::default_dir(&dir::infrakit_home(), &args.name)
            }),
        )
    };
    let plugin = VagrantPlugin::open(options).context("opening the plugin")?;
    let version = plugin.check().await.context("checking Vagrant")?;
    tracing::info!(%version, dir = %plugin.options().dir.display(), "starting");
    let reaped = plugin
        .reap_incomplete()
        .await
        .context("removing unfinished provisions")?;
    if !reaped.is_empty() {
        tracing::warn!(?reaped, "removed machines whose provision never finished");
    }
    let plugins_dir = args.plugins_dir.unwrap_or_else(dir::plugins_dir);
    let server = PluginServer::start(
        &plugins_dir,
        &args.name,
        Handlers::new().instance("", Arc::new(plugin)),
    )
    .await
    .with_context(|| format!("serving {} in {}", args.name, plugins_dir.display()))?;
    tracing::info!(socket = %server.socket().display(), "serving");
    shutdown_signal().await?;
    server.stop().await;
    Ok(())
}
