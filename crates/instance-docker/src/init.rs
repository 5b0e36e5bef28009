//! Getting a container going: the image it needs (present on the engine, never pulled), its
//! networks (created when missing, then connected), its start, and the spec's `Init` script run
//! inside it with `/bin/sh -c`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{NetworkConnectRequest, NetworkCreateRequest};
use bollard::query_parameters::InspectNetworkOptions;
use futures::StreamExt;
use infrakit_spi::{Error, Result};

use crate::options::PLUGIN_LABEL;
use crate::properties::DockerProperties;
use crate::shared::{status, Shared};

/// How much of the `Init` output an error quotes.
const INIT_OUTPUT_BYTES: usize = 2048;

/// The end of `bytes`, as text, at most [`INIT_OUTPUT_BYTES`] long.
fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(INIT_OUTPUT_BYTES);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

/// The error for an image of `props` that the engine does not have.
pub(crate) fn not_present(props: &DockerProperties) -> Error {
    Error::invalid(
        props.image_path(),
        format!(
            "image '{}' is not present locally; build or load it first (no registry is used)",
            props.image()
        ),
    )
}

/// Checks that the image of `props` is present on the engine.
pub(crate) async fn check_image(shared: &Shared, props: &DockerProperties) -> Result<()> {
    match shared.docker.inspect_image(props.image()).await {
        Ok(_) => Ok(()),
        Err(e) if status(&e) == Some(404) => Err(not_present(props)),
        Err(e) => Err(shared.error(&format!("inspecting image {:?}", props.image()), e)),
    }
}

/// Creates the networks of `props` that do not exist yet: the user network mode, then the
/// network attachments.
pub(crate) async fn ensure_networks(shared: &Shared, props: &DockerProperties) -> Result<()> {
    if let Some(n) = props.user_network_mode() {
        ensure_network(shared, n, None).await?;
    }
    for n in props.networks() {
        ensure_network(shared, &n.name, n.driver.as_deref()).await?;
    }
    Ok(())
}

/// Creates network `name` (with `driver`, default `bridge`) unless it exists.
async fn ensure_network(shared: &Shared, name: &str, driver: Option<&str>) -> Result<()> {
    let _serial = shared.network_lock.lock().await;
    match shared
        .docker
        .inspect_network(name, None::<InspectNetworkOptions>)
        .await
    {
        Ok(_) => return Ok(()),
        Err(e) if status(&e) == Some(404) => {}
        Err(e) => return Err(shared.error(&format!("inspecting network {name}"), e)),
    }
    let request = NetworkCreateRequest {
        name: name.to_string(),
        driver: Some(driver.unwrap_or("bridge").to_string()),
        labels: Some(HashMap::from([(
            PLUGIN_LABEL.to_string(),
            shared.options.name.clone(),
        )])),
        ..Default::default()
    };
    match shared.docker.create_network(request).await {
        Ok(_) => {
            tracing::info!(network = %name, "created network");
            Ok(())
        }
        Err(e) if status(&e) == Some(409) => Ok(()),
        Err(e) => Err(shared.error(&format!("creating network {name}"), e)),
    }
}

/// Everything after the container was created: networks, start, Init.
pub(crate) async fn start(
    shared: &Shared,
    id: &str,
    name: &str,
    props: &DockerProperties,
    init: &str,
) -> Result<()> {
    for n in props.networks() {
        if props.user_network_mode() == Some(n.name.as_str()) {
            continue;
        }
        let request = NetworkConnectRequest {
            container: id.to_string(),
            endpoint_config: None,
        };
        shared
            .docker
            .connect_network(&n.name, request)
            .await
            .map_err(|e| shared.error(&format!("connecting {name} to network {}", n.name), e))?;
    }
    shared
        .docker
        .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
        .await
        .map_err(|e| shared.error(&format!("starting container {name}"), e))?;
    if !init.trim().is_empty() {
        run_init(shared, id, name, init).await?;
    }
    Ok(())
}

/// Runs `script` in container `id` with `/bin/sh -c`; fails with its output unless it exits
/// with status 0.
async fn run_init(shared: &Shared, id: &str, name: &str, script: &str) -> Result<()> {
    let exec = shared
        .docker
        .create_exec(
            id,
            CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(vec!["/bin/sh", "-c", script]),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| shared.error(&format!("Init: cannot exec in {name}"), e))?;
    let timeout = shared.options.init_timeout;
    match tokio::time::timeout(timeout, run_exec(shared, &exec.id, name)).await {
        Ok(Ok((0, _))) => Ok(()),
        Ok(Ok((code, output))) => Err(Error::plugin(format!(
            "Init failed in container {name} (exit code {code}); output: {:?}",
            tail(&output)
        ))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::plugin(format!(
            "Init timed out in container {name} after {}",
            humantime::format_duration(timeout)
        ))),
    }
}

/// Starts exec `exec` (in container `name`) and collects the end of its output; returns its exit
/// code (`-1` if the engine does not tell it soon after the output ends) and that output.
async fn run_exec(shared: &Shared, exec: &str, name: &str) -> Result<(i64, Vec<u8>)> {
    let mut output = Vec::new();
    match shared
        .docker
        .start_exec(exec, None::<StartExecOptions>)
        .await
        .map_err(|e| shared.error(&format!("Init: cannot start in {name}"), e))?
    {
        StartExecResults::Attached {
            output: mut out, ..
        } => {
            while let Some(chunk) = out.next().await {
                match chunk {
                    Ok(log) => {
                        output.extend_from_slice(&log.into_bytes());
                        if output.len() > 4 * INIT_OUTPUT_BYTES {
                            output.drain(..output.len() - INIT_OUTPUT_BYTES);
                        }
                    }
                    Err(e) => {
                        return Err(shared.error(&format!("Init: reading its output in {name}"), e))
                    }
                }
            }
        }
        StartExecResults::Detached => {}
    }
    // The exit code is recorded as the output ends; poll briefly if it lags.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let info = shared
            .docker
            .inspect_exec(exec)
            .await
            .map_err(|e| shared.error(&format!("Init: inspecting it in {name}"), e))?;
        match (info.running, info.exit_code) {
            (Some(false), Some(code)) => return Ok((code, output)),
            _ if Instant::now() >= deadline => return Ok((-1, output)),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
