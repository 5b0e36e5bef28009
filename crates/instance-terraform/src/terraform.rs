//! Running the `terraform` command in the plugin's directory: `version`, `init`, `apply` and
//! `show`.
//!
//! Every run has `CHECKPOINT_DISABLE=1` (no version check over the network), `TF_IN_AUTOMATION=1`
//! and `TF_INPUT=0`, runs in a process group of its own (a Ctrl-C meant for the plugin does not
//! interrupt an apply half-way) and never disables Terraform's state lock: `apply` waits up to
//! the lock timeout for another Terraform run to finish. `apply` uses `-json` so that errors come
//! back as structured diagnostics naming the file and resource they are about.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use infrakit_spi::{Error, Result};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use crate::batch::Diagnostic;
use crate::state::State;

/// The oldest Terraform with everything the plugin uses: `terraform_data`, `import` blocks and
/// `removed` blocks with destroy-time provisioners (1.9).
pub const MIN_VERSION: (u64, u64) = (1, 9);
/// How long a `show` may take.
const SHOW_TIMEOUT: Duration = Duration::from_secs(300);
/// How long `init` may take.
const INIT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long an interrupted apply gets to stop and save its state before it is killed.
const INTERRUPT_GRACE: Duration = Duration::from_secs(60);
/// How much of Terraform's plain output an error quotes.
const TAIL_BYTES: usize = 4096;

/// The `terraform` command, bound to a directory.
#[derive(Debug, Clone)]
pub struct Terraform {
    /// The binary.
    pub bin: PathBuf,
    /// The working directory.
    pub dir: PathBuf,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// How long `apply` waits for the state lock.
    pub lock_timeout: Duration,
}

/// What one `terraform apply` did.
#[derive(Debug, Clone, Default)]
pub struct ApplyRun {
    /// True when Terraform exited with status 0.
    pub success: bool,
    /// Errors and warnings, in order.
    pub diagnostics: Vec<Diagnostic>,
    /// The end of what Terraform printed that was not a JSON message (and of its stderr).
    pub tail: String,
}

#[derive(Deserialize)]
struct Message {
    #[serde(rename = "@level", default)]
    level: String,
    #[serde(rename = "@message", default)]
    message: String,
    #[serde(default)]
    diagnostic: Option<RawDiagnostic>,
}

#[derive(Deserialize)]
struct RawDiagnostic {
    #[serde(default)]
    severity: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    range: Option<RawRange>,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(default)]
    filename: Option<String>,
}

/// Parses one line of `terraform apply -json` output: a diagnostic if it is one.
pub fn parse_line(line: &str) -> Option<Diagnostic> {
    let m: Message = serde_json::from_str(line).ok()?;
    let d = m.diagnostic?;
    Some(Diagnostic {
        severity: d.severity,
        summary: d.summary,
        detail: d.detail,
        address: d.address.filter(|a| !a.is_empty()),
        filename: d.range.and_then(|r| r.filename),
    })
}

/// Parses `terraform version -json`'s version into (major, minor, patch).
pub fn parse_version(json: &[u8]) -> Option<(u64, u64, u64)> {
    #[derive(Deserialize)]
    struct V {
        terraform_version: String,
    }
    let v: V = serde_json::from_slice(json).ok()?;
    let mut parts = v
        .terraform_version
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u64>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

fn tail(s: &str) -> String {
    let s = s.trim();
    if s.len() <= TAIL_BYTES {
        return s.to_string();
    }
    let mut start = s.len() - TAIL_BYTES;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}

impl Terraform {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .current_dir(&self.dir)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        c
    }

    fn not_found(&self, e: &std::io::Error) -> Error {
        Error::plugin(format!(
            "cannot run terraform ({}): {e}; install Terraform {}.{} or later and put it on PATH, \
             or name the binary in the plugin's options",
            self.bin.display(),
            MIN_VERSION.0,
            MIN_VERSION.1
        ))
    }

    /// Runs a short command to completion; returns stdout, or an error quoting stderr.
    async fn run(&self, args: &[&str], timeout: Duration) -> Result<Vec<u8>> {
        let mut c = self.command(args);
        c.kill_on_drop(true);
        let out = tokio::time::timeout(timeout, c.output())
            .await
            .map_err(|_| {
                Error::plugin(format!(
                    "terraform {} did not finish within {timeout:?}",
                    args[0]
                ))
            })?
            .map_err(|e| self.not_found(&e))?;
        if !out.status.success() {
            let mut text = String::from_utf8_lossy(&out.stderr).to_string();
            if text.trim().is_empty() {
                text = String::from_utf8_lossy(&out.stdout).to_string();
            }
            return Err(Error::plugin(format!(
                "terraform {} in {} failed ({}): {}",
                args[0],
                self.dir.display(),
                out.status,
                tail(&text)
            )));
        }
        Ok(out.stdout)
    }

    /// The Terraform version; fails if it is older than [`MIN_VERSION`].
    pub async fn version(&self) -> Result<(u64, u64, u64)> {
        let out = self.run(&["version", "-json"], SHOW_TIMEOUT).await?;
        let v = parse_version(&out).ok_or_else(|| {
            Error::plugin(format!(
                "cannot read the version of {}: {}",
                self.bin.display(),
                tail(&String::from_utf8_lossy(&out))
            ))
        })?;
        if (v.0, v.1) < MIN_VERSION {
            return Err(Error::plugin(format!(
                "terraform {}.{}.{} is too old: this plugin needs {}.{} or later \
                 (terraform_data, import blocks, removed blocks with provisioners)",
                v.0, v.1, v.2, MIN_VERSION.0, MIN_VERSION.1
            )));
        }
        Ok(v)
    }

    /// `terraform init`: backend and providers of the directory. Needs no network when the
    /// configuration uses only built-in resources (`terraform_data`) or providers already
    /// installed (a plugin cache or filesystem mirror in the CLI configuration).
    pub async fn init(&self) -> Result<()> {
        self.run(&["init", "-input=false", "-no-color"], INIT_TIMEOUT)
            .await
            .map(|_| ())
    }

    /// `terraform show -json`: the current state.
    pub async fn show(&self) -> Result<State> {
        let out = self
            .run(&["show", "-json", "-no-color"], SHOW_TIMEOUT)
            .await?;
        State::parse(&out).map_err(|e| {
            Error::caused(
                format!(
                    "cannot parse `terraform show -json` in {}",
                    self.dir.display()
                ),
                e,
            )
        })
    }

    /// `terraform apply -auto-approve -input=false -no-color -json -lock-timeout=..`. After
    /// `timeout` Terraform is interrupted (SIGINT, so it stops cleanly and saves its state), and
    /// killed if it has not stopped [`INTERRUPT_GRACE`] later. The run is not killed when the
    /// future is dropped: Terraform finishes and saves its state on its own.
    pub async fn apply(&self, timeout: Duration) -> Result<ApplyRun> {
        let lock = format!("-lock-timeout={}s", self.lock_timeout.as_secs().max(1));
        let mut child = self
            .command(&[
                "apply",
                "-auto-approve",
                "-input=false",
                "-no-color",
                "-json",
                &lock,
            ])
            .spawn()
            .map_err(|e| self.not_found(&e))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let reader = async move {
            let mut diagnostics = Vec::new();
            let mut plain = String::new();
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Message>(&line) {
                    Ok(m) => {
                        if let Some(d) = parse_line(&line) {
                            diagnostics.push(d);
                        } else if m.level == "error" {
                            plain.push_str(&m.message);
                            plain.push('\n');
                        } else {
                            tracing::debug!(target: "terraform", "{}", m.message);
                        }
                    }
                    Err(_) => {
                        plain.push_str(&line);
                        plain.push('\n');
                    }
                }
            }
            let mut err = String::new();
            let _ = stderr.read_to_string(&mut err).await;
            plain.push_str(&err);
            (diagnostics, plain)
        };
        let pid = child.id();
        let (status, (diagnostics, plain)) = tokio::join!(
            async {
                match tokio::time::timeout(timeout, child.wait()).await {
                    Ok(s) => s,
                    Err(_) => {
                        tracing::warn!(dir = %self.dir.display(), ?timeout, "terraform apply takes too long; interrupting it");
                        if let Some(pid) = pid {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid as i32),
                                nix::sys::signal::Signal::SIGINT,
                            );
                        }
                        match tokio::time::timeout(INTERRUPT_GRACE, child.wait()).await {
                            Ok(s) => s,
                            Err(_) => {
                                let _ = child.start_kill();
                                child.wait().await
                            }
                        }
                    }
                }
            },
            reader
        );
        let status = status.map_err(|e| Error::caused("waiting for terraform", e))?;
        let mut tail_text = tail(&plain);
        if !status.success() && diagnostics.is_empty() && tail_text.is_empty() {
            tail_text = format!("terraform apply exited with {status}");
        }
        Ok(ApplyRun {
            success: status.success(),
            diagnostics,
            tail: tail_text,
        })
    }

    /// The local state file, whose metadata tells whether the state changed.
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("terraform.tfstate")
    }
}

/// Modification and change times (seconds, nanoseconds), size and inode of a file.
pub type Fingerprint = (i64, i64, i64, i64, u64, u64);

/// A cheap fingerprint of a file's content: modification and change times, size and inode.
pub fn fingerprint(path: &Path) -> Option<Fingerprint> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        m.len(),
        m.ino(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_are_read_from_json_lines() {
        let line = r#"{"@level":"error","@message":"Error: Extraneous JSON object property","diagnostic":{"severity":"error","summary":"Extraneous JSON object property","detail":"No argument or block type is named \"bogus_attr\".","range":{"filename":"b.tf.json","start":{"line":1}}},"type":"diagnostic"}"#;
        let d = parse_line(line).unwrap();
        assert_eq!(d.filename.as_deref(), Some("b.tf.json"));
        assert_eq!(d.address, None);
        assert!(d.is_error());
        assert_eq!(
            d.message(),
            "Extraneous JSON object property: No argument or block type is named \"bogus_attr\". (in b.tf.json)"
        );
        let line = r#"{"@level":"error","diagnostic":{"severity":"error","summary":"local-exec provisioner error","detail":"exit status 3","address":"terraform_data.x"},"type":"diagnostic"}"#;
        assert_eq!(
            parse_line(line).unwrap().address.as_deref(),
            Some("terraform_data.x")
        );
        assert!(parse_line(r#"{"@level":"info","@message":"Apply complete!"}"#).is_none());
        assert!(parse_line("not json").is_none());
    }

    #[test]
    fn versions() {
        assert_eq!(
            parse_version(br#"{"terraform_version":"1.11.4","platform":"linux_amd64"}"#),
            Some((1, 11, 4))
        );
        assert_eq!(
            parse_version(br#"{"terraform_version":"1.6.0-beta1"}"#),
            Some((1, 6, 0))
        );
        assert_eq!(parse_version(b"Terraform v1.11.4"), None);
    }

    #[test]
    fn tails_are_cut_on_char_boundaries() {
        let s = "é".repeat(TAIL_BYTES);
        let t = tail(&s);
        assert!(t.starts_with("..."));
        assert!(t.len() <= TAIL_BYTES + 4);
    }
}
