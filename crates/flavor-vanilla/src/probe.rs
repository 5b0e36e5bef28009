//! Running one health probe against one instance: exec, TCP connect or HTTP GET.

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::USER_AGENT;
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use infrakit_spi::instance::GROUP_TAG;
use infrakit_spi::{Description, Health};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::properties::{HealthProbe, ProbeCheck};
use crate::template;

/// Environment variable holding the instance ID, set for exec probes.
pub const ENV_INSTANCE_ID: &str = "INFRAKIT_INSTANCE_ID";
/// Environment variable holding the logical ID (empty for cattle), set for exec probes.
pub const ENV_LOGICAL_ID: &str = "INFRAKIT_LOGICAL_ID";
/// Environment variable holding the group ID (the `infrakit.group` tag), set for exec probes.
pub const ENV_GROUP: &str = "INFRAKIT_GROUP";

/// Why a probe judged an instance unhealthy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// A placeholder in the probe could not be filled in for this instance.
    #[error("cannot render '{template}': {reason}")]
    Render {
        /// The template as written in the properties.
        template: String,
        /// What went wrong (e.g. an undefined tag).
        reason: String,
    },
    /// The probe did not finish in time.
    #[error("probe did not finish within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The exec probe's command could not be started.
    #[error("cannot run '{command}': {reason}")]
    Spawn {
        /// The program.
        command: String,
        /// The operating system's complaint.
        reason: String,
    },
    /// The exec probe's command failed.
    #[error("'{command}' {status}")]
    Failed {
        /// The program.
        command: String,
        /// How it ended, e.g. `exit status: 1`.
        status: String,
    },
    /// A TCP or HTTP probe could not reach its target.
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// Address or URL that was tried.
        target: String,
        /// Why it failed.
        reason: String,
    },
    /// An HTTP probe got the wrong status.
    #[error("GET {url} answered {got}, expected {want}")]
    Status {
        /// The URL.
        url: String,
        /// The status received.
        got: u16,
        /// The status expected.
        want: u16,
    },
    /// An HTTP probe's URL is not a valid `http://` URL once rendered.
    #[error("invalid URL '{url}': {reason}")]
    Url {
        /// The rendered URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl HealthProbe {
    /// Probes `instance` once, without caching, and says what failed if anything did.
    pub async fn check(&self, instance: &Description) -> Result<(), ProbeError> {
        let ctx = template::instance_context(instance);
        let render = |source: &str| {
            template::render(source, &ctx).map_err(|e| ProbeError::Render {
                template: source.to_string(),
                reason: e.to_string(),
            })
        };
        match &self.check {
            ProbeCheck::Exec(args) => {
                let args = args
                    .iter()
                    .map(|a| render(a))
                    .collect::<Result<Vec<_>, _>>()?;
                exec(&args, instance, self.timeout).await
            }
            ProbeCheck::Tcp(addr) => {
                let addr = render(addr)?;
                within(self.timeout, tcp(&addr)).await
            }
            ProbeCheck::Http { url, status } => {
                let url = render(url)?;
                within(self.timeout, http(&url, *status)).await
            }
        }
    }

    /// Probes `instance` once, without caching: [`Health::Healthy`] or [`Health::Unhealthy`].
    ///
    /// Failures are logged: a placeholder that cannot be rendered as a warning (it is a
    /// configuration mistake), anything else at debug level.
    pub async fn health(&self, instance: &Description) -> Health {
        match self.check(instance).await {
            Ok(()) => {
                tracing::trace!(instance = %instance.id, "health probe passed");
                Health::Healthy
            }
            Err(e @ ProbeError::Render { .. }) => {
                tracing::warn!(instance = %instance.id, error = %e, "health probe not run");
                Health::Unhealthy
            }
            Err(e) => {
                tracing::debug!(instance = %instance.id, error = %e, "health probe failed");
                Health::Unhealthy
            }
        }
    }
}

async fn within(
    timeout: Duration,
    probe: impl std::future::Future<Output = Result<(), ProbeError>>,
) -> Result<(), ProbeError> {
    tokio::time::timeout(timeout, probe)
        .await
        .unwrap_or(Err(ProbeError::Timeout(timeout)))
}

/// Kills a probe's whole process group when dropped while armed, so that a timed-out (or
/// abandoned) `sh -c` takes its children with it.
struct GroupKiller(Option<Pid>);

impl GroupKiller {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            // The leader has not been reaped yet, so the group ID cannot have been reused.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

async fn exec(
    args: &[String],
    instance: &Description,
    timeout: Duration,
) -> Result<(), ProbeError> {
    let program = &args[0];
    let mut child = Command::new(program)
        .args(&args[1..])
        .env(ENV_INSTANCE_ID, &instance.id)
        .env(ENV_LOGICAL_ID, instance.logical_id().unwrap_or_default())
        .env(ENV_GROUP, instance.tags.get(GROUP_TAG).unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ProbeError::Spawn {
            command: program.clone(),
            reason: e.to_string(),
        })?;
    let mut killer = GroupKiller(
        child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw),
    );
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            killer.disarm();
            if status.success() {
                Ok(())
            } else {
                Err(ProbeError::Failed {
                    command: program.clone(),
                    status: status.to_string(),
                })
            }
        }
        Ok(Err(e)) => {
            killer.disarm();
            Err(ProbeError::Spawn {
                command: program.clone(),
                reason: e.to_string(),
            })
        }
        Err(_) => {
            drop(killer);
            // Reap the leader; the group has been sent SIGKILL, so this is quick.
            let _ = child.kill().await;
            Err(ProbeError::Timeout(timeout))
        }
    }
}

async fn tcp(addr: &str) -> Result<(), ProbeError> {
    TcpStream::connect(addr)
        .await
        .map(drop)
        .map_err(|e| ProbeError::Connect {
            target: addr.to_string(),
            reason: e.to_string(),
        })
}

async fn http(url: &str, want: u16) -> Result<(), ProbeError> {
    let bad_url = |reason: String| ProbeError::Url {
        url: url.to_string(),
        reason,
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| bad_url(e.to_string()))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(bad_url("must be http://host[:port]/path".into()));
    }
    let request = Request::get(uri)
        .header(
            USER_AGENT,
            concat!("infrakit-flavor-vanilla/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| bad_url(e.to_string()))?;
    // No pooling: instances come and go, and an idle connection would outlive its probe.
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http::<Empty<Bytes>>();
    let response = client
        .request(request)
        .await
        .map_err(|e| ProbeError::Connect {
            target: url.to_string(),
            reason: error_chain(&e),
        })?;
    let got = response.status().as_u16();
    if got == want {
        Ok(())
    } else {
        Err(ProbeError::Status {
            url: url.to_string(),
            got,
            want,
        })
    }
}

/// An error and its causes, joined with `: `.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
