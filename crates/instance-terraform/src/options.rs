//! Where the plugin works and how it runs Terraform ([`TerraformOptions`]), with the defaults.

use std::path::PathBuf;
use std::time::Duration;

/// Default plugin name.
pub const DEFAULT_NAME: &str = "instance-terraform";
/// Default first part of instance IDs.
pub const DEFAULT_ID_PREFIX: &str = "instance";
/// The wait between the first change of a batch and its apply.
pub const DEFAULT_BATCH_WINDOW: Duration = Duration::from_millis(200);

/// Where the plugin works and how it runs Terraform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerraformOptions {
    /// Plugin name, for logs.
    pub name: String,
    /// The working directory: the user's `.tf` files, the instance files and the state.
    /// Created if missing. One plugin per directory.
    pub dir: PathBuf,
    /// The `terraform` binary (looked up on `PATH` unless a path).
    pub terraform: PathBuf,
    /// First part of instance IDs (a Terraform identifier).
    pub id_prefix: String,
    /// Time between the first change that wakes the apply loop and the apply, so changes asked
    /// for together share one apply.
    pub batch_window: Duration,
    /// How long an apply waits for Terraform's state lock (held by another Terraform run).
    pub lock_timeout: Duration,
    /// How long an apply may take before it is interrupted.
    pub apply_timeout: Duration,
    /// How many applies a change may take part in before it fails, when errors are not its own.
    pub max_attempts: u32,
    /// First wait after a failed apply that no change was to blame for; doubles each time.
    pub retry_backoff: Duration,
    /// Longest wait between failed applies.
    pub max_backoff: Duration,
    /// Extra environment for Terraform (`TF_VAR_...`, provider credentials, `TF_CLI_CONFIG_FILE`).
    pub env: Vec<(String, String)>,
    /// How often the state file is checked for changes, to publish `created`/`destroyed`
    /// events (while someone subscribes); `None` publishes nothing.
    pub watch_interval: Option<Duration>,
}

impl TerraformOptions {
    /// Default options for directory `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        TerraformOptions {
            name: DEFAULT_NAME.to_string(),
            dir: dir.into(),
            terraform: PathBuf::from("terraform"),
            id_prefix: DEFAULT_ID_PREFIX.to_string(),
            batch_window: DEFAULT_BATCH_WINDOW,
            lock_timeout: Duration::from_secs(60),
            apply_timeout: Duration::from_secs(30 * 60),
            max_attempts: 3,
            retry_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            env: Vec::new(),
            watch_interval: Some(Duration::from_secs(1)),
        }
    }
}
