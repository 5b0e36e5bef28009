//! `infrakit-instance-azure`: serves the Azure instance plugin on its socket in the plugin
//! directory, until SIGTERM or SIGINT.
//!
//! Its own binary, so that the `infrakit` binary does not carry Azure's crates. The subscription,
//! endpoints and credentials come from Azure's usual environment variables (`AZURE_*`); the
//! flags override them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use infrakit_instance_azure::arm::Polling;
use infrakit_instance_azure::config::{
    self, AzureConfig, CredentialKind, DEFAULT_MAX_RETRIES, PUBLIC_AUTHORITY, PUBLIC_ENDPOINT,
};
use infrakit_instance_azure::{AzureOptions, AzurePlugin, DEFAULT_NAME};
use infrakit_rpc::{dir, shutdown_signal, Handlers, PluginServer};

/// Serve Azure virtual machines as an InfraKit instance plugin.
#[derive(Debug, Parser)]
#[command(name = "infrakit-instance-azure", version, about)]
struct Args {
    /// Plugin name: the socket's file name in the plugin directory.
    #[arg(long, default_value = DEFAULT_NAME)]
    name: String,
    /// Plugin directory [default: $INFRAKIT_PLUGINS_DIR, else $INFRAKIT_HOME/plugins, else
    /// ~/.infrakit/plugins].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The subscription of the VMs.
    #[arg(long, env = "AZURE_SUBSCRIPTION_ID", default_value = "")]
    subscription: String,
    /// Resource groups whose VMs `DescribeInstances` lists (repeatable) [default: every VM of
    /// the subscription].
    #[arg(long = "resource-group")]
    resource_groups: Vec<String>,
    /// Azure Resource Manager's base URL (a sovereign cloud's, or a test server's).
    #[arg(long, env = "AZURE_RESOURCE_MANAGER_ENDPOINT", default_value = PUBLIC_ENDPOINT)]
    endpoint: String,
    /// Microsoft Entra ID's base URL.
    #[arg(long, env = "AZURE_AUTHORITY_HOST", default_value = PUBLIC_AUTHORITY)]
    authority_host: String,
    /// Credential: auto, client-secret, workload-identity, managed-identity, azure-cli.
    #[arg(long, env = "INFRAKIT_AZURE_CREDENTIAL", default_value = "auto")]
    credential: CredentialKind,
    /// Directory (tenant) ID.
    #[arg(long, env = "AZURE_TENANT_ID")]
    tenant_id: Option<String>,
    /// Application (client) ID, or a user-assigned managed identity's.
    #[arg(long, env = "AZURE_CLIENT_ID")]
    client_id: Option<String>,
    /// PEM certificates to trust besides the system's (a TLS-inspecting proxy, a test server).
    #[arg(long, env = "INFRAKIT_AZURE_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Retries of a throttled (429) or transiently failed (5xx) request.
    #[arg(long, default_value_t = DEFAULT_MAX_RETRIES)]
    max_retries: u32,
    /// How long a provision or destroy waits for each of ARM's operations.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15m")]
    wait_timeout: Duration,
    /// How long a VM's power state is reported without reading its instance view again (while
    /// its provisioning state stays the same).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    power_state_ttl: Duration,
    /// Wait between polls of an operation when ARM does not say (`Retry-After`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    poll_interval: Duration,
    /// Log filter (`RUST_LOG` wins).
    #[arg(long, default_value = "info")]
    log: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| args.log.clone());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let azure = AzureConfig {
        endpoint: args.endpoint.clone(),
        authority_host: args.authority_host.clone(),
        subscription: args.subscription.clone(),
        tenant_id: args.tenant_id.clone(),
        client_id: args.client_id.clone(),
        // Only from the environment: a secret on the command line is visible to every user.
        client_secret: std::env::var("AZURE_CLIENT_SECRET").ok(),
        credential: args.credential,
        ca_file: args.ca_file.clone(),
        max_retries: args.max_retries,
        polling: Polling {
            interval: args.poll_interval,
            ..Polling::default()
        },
    };
    let arm = config::connect(&azure).context("configuring Azure")?;
    tracing::info!(
        subscription = %azure.subscription,
        endpoint = %azure.endpoint,
        "Azure configuration loaded"
    );
    let plugin = Arc::new(AzurePlugin::new(
        arm,
        AzureOptions {
            name: args.name.clone(),
            power_state_ttl: args.power_state_ttl,
            wait_timeout: args.wait_timeout,
            resource_groups: args.resource_groups.clone(),
        },
    ));
    let plugin_dir = args.dir.clone().unwrap_or_else(dir::plugins_dir);
    let server = PluginServer::start(
        &plugin_dir,
        &args.name,
        Handlers::new().instance("", plugin),
    )
    .await
    .with_context(|| format!("starting plugin {}", args.name))?;
    tracing::info!(plugin = %args.name, socket = %server.socket().display(), "serving");
    shutdown_signal().await?;
    tracing::info!(plugin = %args.name, "stopping");
    server.stop().await;
    Ok(())
}
