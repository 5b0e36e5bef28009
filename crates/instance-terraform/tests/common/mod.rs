//! Shared by the integration tests: the real `terraform` binary, a plugin in a temporary
//! directory, the state as Terraform shows it, and a group controller on top.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use infrakit_flavor_vanilla::VanillaFlavor;
use infrakit_group::{ControllerConfig, GroupPlugin};
use infrakit_instance_terraform::{TerraformOptions, TerraformPlugin};
use infrakit_rpc::Plugins;
use infrakit_spi::{Group, GroupDescription, GroupSpec};
use infrakit_testkit::group;
use serde_json::Value;

pub use infrakit_testkit::eventually;

/// Fails the test with a clear message unless `terraform` runs.
pub fn require_terraform() {
    let ok = Command::new("terraform")
        .arg("version")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "these tests run the real Terraform: put terraform (1.9 or later) on PATH \
         (scripts/test.sh checks for it)"
    );
}

/// Options for a plugin in `dir`, with short windows and back-offs for tests.
pub fn options(dir: &Path) -> TerraformOptions {
    TerraformOptions {
        batch_window: Duration::from_millis(100),
        retry_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(2),
        lock_timeout: Duration::from_secs(60),
        apply_timeout: Duration::from_secs(120),
        ..TerraformOptions::new(dir)
    }
}

/// A started plugin in a fresh temporary directory (kept alive by the returned guard).
pub async fn plugin() -> (TerraformPlugin, tempfile::TempDir) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    require_terraform();
    let dir = tempfile::tempdir().unwrap();
    let p = TerraformPlugin::start(options(dir.path())).await.unwrap();
    (p, dir)
}

/// Runs `terraform <args>` in `dir` and returns its stdout; panics on failure.
pub fn tf(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("terraform")
        .args(args)
        .current_dir(dir)
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .expect("terraform runs");
    assert!(
        out.status.success(),
        "terraform {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `terraform show -json`, parsed.
pub fn show(dir: &Path) -> Value {
    serde_json::from_str(&tf(dir, &["show", "-json", "-no-color"])).unwrap()
}

/// The resources in the state, as `(address, values)`.
pub fn resources(dir: &Path) -> Vec<(String, Value)> {
    show(dir)["values"]["root_module"]["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            (
                r["address"].as_str().unwrap().to_string(),
                r["values"].clone(),
            )
        })
        .collect()
}

/// Names of the `terraform_data` resources in the state that are instances (`instance-...`,
/// not an instance's extra resources).
pub fn instance_resources(dir: &Path) -> BTreeSet<String> {
    resources(dir)
        .into_iter()
        .filter_map(|(a, _)| a.strip_prefix("terraform_data.").map(str::to_string))
        .filter(|n| n.starts_with("instance-") && n.matches('-').count() == 2)
        .collect()
}

/// IDs of the instance files in `dir`.
pub fn instance_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".tf.json"))
                .map(str::to_string)
        })
        .filter(|n| n.starts_with("instance-"))
        .collect()
}

/// Removes instance `id` behind the plugin's back: `terraform state rm` and its file deleted.
pub fn state_rm(dir: &Path, id: &str) {
    tf(
        dir,
        &[
            "state",
            "rm",
            "-lock-timeout=60s",
            &format!("terraform_data.{id}"),
        ],
    );
    std::fs::remove_file(dir.join(format!("{id}.tf.json"))).unwrap();
}

/// A group controller with this plugin (`instance-terraform`) and the vanilla flavor.
pub struct Fixture {
    pub group: GroupPlugin,
    pub plugin: TerraformPlugin,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

/// A fixture with its own directory, polling every 500 ms.
pub async fn fixture() -> Fixture {
    fixture_with(Duration::from_millis(500)).await
}

/// A fixture whose controller polls every `poll` and follows the plugin's events.
pub async fn fixture_with(poll: Duration) -> Fixture {
    let (plugin, tmp) = plugin().await;
    let plugins = Arc::new(Plugins::new("/nonexistent/plugins"));
    plugins.register_instance("instance-terraform", Arc::new(plugin.clone()));
    plugins.register_publisher("instance-terraform", Arc::new(plugin.clone()));
    plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
    let group = GroupPlugin::new(
        plugins,
        ControllerConfig {
            poll_interval: poll,
            ..ControllerConfig::default()
        },
    );
    Fixture {
        group,
        plugin,
        dir: tmp.path().canonicalize().unwrap(),
        _tmp: tmp,
    }
}

impl Fixture {
    /// A group spec for this plugin and the vanilla flavor.
    pub fn spec(&self, id: &str, allocation: Value, instance: Value, flavor: Value) -> GroupSpec {
        group::spec(id)
            .allocation(allocation)
            .instance("instance-terraform", instance)
            .flavor("flavor-vanilla", flavor)
            .build()
    }

    /// Waits until group `id` is converged with `n` instances.
    pub async fn converged(&self, id: &str, n: usize) -> GroupDescription {
        group::converged(&self.group, id, n, Duration::from_secs(90)).await
    }

    /// The member IDs of group `id`.
    pub async fn members(&self, id: &str) -> BTreeSet<String> {
        group::ids(&self.group.describe_group(id).await.unwrap())
    }
}
