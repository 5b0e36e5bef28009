//! Running the `vagrant` command line in an instance's directory.
//!
//! Every run gets `VAGRANT_CWD` (and the working directory) set to the instance's directory,
//! `VAGRANT_CHECKPOINT_DISABLE=1` (no version check over the network), `VAGRANT_HOME` when the
//! plugin has one, no standard input, and a time limit after which the process is killed.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use infrakit_spi::{Error, Result};

use crate::status::{self, Status};

/// How much of Vagrant's output an error quotes.
const ERROR_TEXT_BYTES: usize = 4096;
/// How many trailing lines of standard output an error quotes when standard error is empty.
const ERROR_TAIL_LINES: usize = 20;
/// How often `vagrant status` is tried again while another Vagrant process holds the machine.
const LOCKED_RETRIES: u32 = 20;
/// The pause before trying a locked machine again.
const LOCKED_PAUSE: Duration = Duration::from_millis(250);

/// The `vagrant` executable and the environment it runs in.
#[derive(Debug, Clone)]
pub struct Vagrant {
    /// The executable (`vagrant`, found on `PATH`, unless configured).
    pub program: PathBuf,
    /// `VAGRANT_HOME` for every run; `None` inherits the plugin's environment (`~/.vagrant.d`).
    pub home: Option<PathBuf>,
}

/// What a finished run printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// How it exited.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Vagrant's own account of a failure: standard error, else the end of standard output.
    pub fn error_text(&self) -> String {
        failure_text(&self.stdout, &self.stderr)
    }

    /// True when Vagrant refused to run because another Vagrant process held the machine.
    pub fn locked(&self) -> bool {
        [&self.stdout, &self.stderr].iter().any(|s| {
            s.contains(status::MACHINE_LOCKED)
                || s.contains("can't use the requested machine because it is locked")
        })
    }
}

/// The text that explains a failed run: `stderr` trimmed, or the last lines of `stdout` when
/// `stderr` is empty, at most 4 KiB long.
pub fn failure_text(stdout: &str, stderr: &str) -> String {
    let text = if stderr.trim().is_empty() {
        let lines: Vec<&str> = stdout.trim().lines().collect();
        lines[lines.len().saturating_sub(ERROR_TAIL_LINES)..].join("\n")
    } else {
        stderr.trim().to_string()
    };
    if text.len() <= ERROR_TEXT_BYTES {
        return text;
    }
    let mut end = ERROR_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

impl Vagrant {
    /// Runs `vagrant <args>` in `dir`, killing it after `timeout`.
    pub async fn run(&self, dir: &Path, args: &[&str], timeout: Duration) -> Result<Output> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(args)
            .current_dir(dir)
            .env("VAGRANT_CWD", dir)
            .env("VAGRANT_CHECKPOINT_DISABLE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(home) = &self.home {
            cmd.env("VAGRANT_HOME", home);
        }
        let what = format!("vagrant {}", args.join(" "));
        let child = cmd.spawn().map_err(|e| {
            Error::plugin(format!(
                "cannot run {} ({what}): {e}; is Vagrant installed?",
                self.program.display()
            ))
        })?;
        let out = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                Error::plugin(format!(
                    "{what} in {} did not finish within {}",
                    dir.display(),
                    humantime::format_duration(timeout)
                ))
            })?
            .map_err(|e| Error::caused(format!("{what} in {}", dir.display()), e))?;
        Ok(Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs `vagrant <args>` and fails with Vagrant's error text unless it exits with 0. A run
    /// that failed because another Vagrant process held the machine is tried again (a few
    /// seconds at most).
    async fn run_ok(&self, dir: &Path, args: &[&str], timeout: Duration) -> Result<Output> {
        let mut tries = 0;
        let out = loop {
            let out = self.run(dir, args, timeout).await?;
            tries += 1;
            if !out.status.success() && out.locked() && tries <= LOCKED_RETRIES {
                tracing::debug!(dir = %dir.display(), "machine locked by another Vagrant process; trying again");
                tokio::time::sleep(LOCKED_PAUSE).await;
                continue;
            }
            break out;
        };
        if out.status.success() {
            return Ok(out);
        }
        Err(Error::plugin(format!(
            "vagrant {} failed ({}): {}",
            args.join(" "),
            out.status,
            out.error_text()
        )))
    }

    /// `vagrant up --provider=<provider>`.
    pub async fn up(&self, dir: &Path, provider: &str, timeout: Duration) -> Result<()> {
        let provider = format!("--provider={provider}");
        self.run_ok(dir, &["up", &provider, "--no-color"], timeout)
            .await
            .map(drop)
    }

    /// `vagrant destroy -f`.
    pub async fn destroy(&self, dir: &Path, timeout: Duration) -> Result<()> {
        self.run_ok(dir, &["destroy", "-f", "--no-color"], timeout)
            .await
            .map(drop)
    }

    /// `vagrant status --machine-readable`, parsed. `vagrant status` takes the machine's lock,
    /// so it is tried again (a few seconds at most) while another Vagrant process holds it. A
    /// failure is an error with Vagrant's message.
    pub async fn status(&self, dir: &Path, timeout: Duration) -> Result<Status> {
        let mut tries = 0;
        let (out, parsed) = loop {
            let out = self
                .run(dir, &["status", "--machine-readable"], timeout)
                .await?;
            let parsed = status::parse(&out.stdout);
            tries += 1;
            if parsed.locked() && tries <= LOCKED_RETRIES {
                tracing::debug!(dir = %dir.display(), "machine locked by another Vagrant process; trying again");
                tokio::time::sleep(LOCKED_PAUSE).await;
                continue;
            }
            break (out, parsed);
        };
        if out.status.success() && parsed.error.is_none() {
            return Ok(parsed);
        }
        let message = parsed.error.unwrap_or_else(|| out.error_text());
        Err(Error::plugin(format!(
            "vagrant status in {} failed ({}): {message}",
            dir.display(),
            out.status
        )))
    }

    /// `vagrant --version`, e.g. `Vagrant 2.3.4`.
    pub async fn version(&self, timeout: Duration) -> Result<String> {
        let dir = std::env::temp_dir();
        let out = self.run_ok(&dir, &["--version"], timeout).await?;
        Ok(out.stdout.trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_text_prefers_stderr() {
        assert_eq!(failure_text("==> default: x", "  boom\n"), "boom");
        let stdout: String = (0..30).map(|i| format!("line {i}\n")).collect();
        let text = failure_text(&stdout, "");
        assert!(
            text.starts_with("line 10\n") && text.ends_with("line 29"),
            "{text}"
        );
        let long = "é".repeat(ERROR_TEXT_BYTES);
        let text = failure_text("", &long);
        assert!(text.len() <= ERROR_TEXT_BYTES + 3 && text.ends_with("..."));
    }
}
