//! `infrakit-instance-aws`: serves the AWS instance plugin on its socket in the plugin
//! directory, until SIGTERM or SIGINT.
//!
//! Its own binary, so that the `infrakit` binary does not carry the AWS SDK. Region,
//! credentials and endpoint come from the standard AWS configuration chain (environment,
//! shared config files, container and instance roles); the flags override it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use aws_sdk_ec2::config::ProvideCredentials;
use clap::Parser;

use infrakit_instance_aws::config::{self, AwsConfig, DEFAULT_MAX_ATTEMPTS};
use infrakit_instance_aws::{AwsOptions, AwsPlugin, DEFAULT_NAME, DEFAULT_PAGE_SIZE};
use infrakit_rpc::{dir, shutdown_signal, Handlers, PluginServer};

/// Serve EC2 instances as an InfraKit instance plugin.
#[derive(Debug, Parser)]
#[command(name = "infrakit-instance-aws", version, about)]
struct Args {
    /// Plugin name: the socket's file name in the plugin directory.
    #[arg(long, default_value = DEFAULT_NAME)]
    name: String,
    /// Plugin directory [default: $INFRAKIT_PLUGINS_DIR, else $INFRAKIT_HOME/plugins, else
    /// ~/.infrakit/plugins].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// AWS region [default: from the configuration chain: AWS_REGION, the profile, IMDS].
    #[arg(long)]
    region: Option<String>,
    /// Profile of the shared AWS config files [default: AWS_PROFILE, else `default`].
    #[arg(long)]
    profile: Option<String>,
    /// Endpoint of an EC2-compatible API [default: AWS_ENDPOINT_URL_EC2, AWS_ENDPOINT_URL, else
    /// the region's EC2 endpoint].
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Attempts per request, retries of throttled and transient failures included.
    #[arg(long, env = "AWS_MAX_ATTEMPTS", default_value_t = DEFAULT_MAX_ATTEMPTS)]
    max_attempts: u32,
    /// How long a provision waits for the instance to run and for its volumes to be free.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    wait_timeout: Duration,
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
    let sdk = config::load(&AwsConfig {
        region: args.region.clone(),
        profile: args.profile.clone(),
        endpoint_url: args.endpoint_url.clone(),
        max_attempts: args.max_attempts,
    })
    .await;
    let Some(region) = sdk.region() else {
        bail!("no AWS region: set AWS_REGION, a region in the AWS profile, or --region");
    };
    tracing::info!(
        region = %region,
        endpoint = sdk.endpoint_url().unwrap_or("(the region's)"),
        "AWS configuration loaded"
    );
    match sdk.credentials_provider() {
        Some(p) => {
            if let Err(e) = p.provide_credentials().await {
                tracing::warn!(
                    error = %aws_sdk_ec2::error::DisplayErrorContext(&e),
                    "no AWS credentials yet; every call will fail until the chain provides some"
                );
            }
        }
        None => tracing::warn!("no AWS credentials provider"),
    }
    let plugin = Arc::new(AwsPlugin::new(
        &sdk,
        AwsOptions {
            name: args.name.clone(),
            wait_timeout: args.wait_timeout,
            page_size: DEFAULT_PAGE_SIZE,
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
