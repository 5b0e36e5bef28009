//! Shared by the integration tests and the `heal_latency` example: the locally built test image,
//! engine helpers, a group controller over the plugin and cleanup of what a test leaves on the
//! engine.

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::ContainerSummary;
use bollard::query_parameters::{BuildImageOptions, KillContainerOptions, ListContainersOptions};
use bollard::Docker;
use futures::StreamExt;
use infrakit_flavor_vanilla::VanillaFlavor;
use infrakit_group::{ControllerConfig, GroupPlugin};
use infrakit_instance_docker::{DockerOptions, DockerPlugin};
use infrakit_rpc::Plugins;
use infrakit_spi::{Group, GroupDescription, GroupSpec};
use infrakit_testkit::{eventually, group, unique_name};
use serde_json::{json, Value};

/// The test image: busybox on `scratch`, built from the host's static busybox.
pub const IMAGE: &str = "infrakit-test/busybox:latest";

const DOCKERFILE: &str = r#"FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
"#;

static BUILT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// The test image, built once per test binary (never pulled: no registry is reachable).
pub async fn image() -> &'static str {
    BUILT.get_or_init(build_image).await;
    IMAGE
}

async fn build_image() {
    let busybox = infrakit_testkit::busybox::static_busybox();
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        tar.append_data(&mut header, path, data).unwrap();
    };
    add("Dockerfile", DOCKERFILE.as_bytes(), 0o644);
    add("busybox", &busybox, 0o755);
    let context = tar.into_inner().unwrap();
    let docker = docker().await;
    let options = BuildImageOptions {
        t: Some(IMAGE.to_string()),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut stream = docker.build_image(
        options,
        None,
        Some(bollard::body_full(bytes::Bytes::from(context))),
    );
    while let Some(item) = stream.next().await {
        let info = item.unwrap_or_else(|e| panic!("building {IMAGE}: {e}"));
        if let Some(detail) = info.error_detail {
            panic!("building {IMAGE}: {detail:?}");
        }
    }
    docker
        .inspect_image(IMAGE)
        .await
        .unwrap_or_else(|e| panic!("{IMAGE} is missing after the build: {e}"));
}

/// An engine client (per test: clients are tied to the runtime that first uses them).
pub async fn docker() -> Docker {
    Docker::connect_with_defaults()
        .expect("DOCKER_HOST or /var/run/docker.sock")
        .negotiate_version()
        .await
        .expect("a Docker engine must be running (start dockerd)")
}

/// A plugin named `name`, stopping containers after 1 s (busybox `sleep` as PID 1 ignores
/// SIGTERM).
pub async fn plugin(name: &str) -> DockerPlugin {
    image().await;
    DockerPlugin::connect(DockerOptions {
        stop_timeout: Duration::from_secs(1),
        ..DockerOptions::named(name)
    })
    .await
    .unwrap()
}

/// Containers with label `label` (`k=v`), in any state when `all`, else running ones.
pub async fn containers(docker: &Docker, label: &str, all: bool) -> Vec<ContainerSummary> {
    let mut filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
    if !all {
        filters.insert("status".to_string(), vec!["running".to_string()]);
    }
    docker
        .list_containers(Some(ListContainersOptions {
            all,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .unwrap()
}

/// Names of the running containers with label `label`.
pub async fn running_names(docker: &Docker, label: &str) -> Vec<String> {
    let mut names: Vec<String> = containers(docker, label, false)
        .await
        .into_iter()
        .filter_map(|c| c.names.and_then(|n| n.into_iter().next()))
        .map(|n| n.trim_start_matches('/').to_string())
        .collect();
    names.sort();
    names
}

/// SIGKILLs container `name`.
pub async fn kill(docker: &Docker, name: &str) {
    docker
        .kill_container(name, None::<KillContainerOptions>)
        .await
        .unwrap_or_else(|e| panic!("docker kill {name}: {e}"));
}

/// Runs `cmd` in container `name`; returns its exit code and output.
pub async fn exec(docker: &Docker, name: &str, cmd: &[&str]) -> (i64, String) {
    let exec = docker
        .create_exec(
            name,
            CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(cmd.to_vec()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut out = String::new();
    if let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&exec.id, None).await.unwrap()
    {
        while let Some(Ok(chunk)) = output.next().await {
            out.push_str(&chunk.to_string());
        }
    }
    let code = eventually("the exec's exit code", Duration::from_secs(5), || async {
        let i = docker.inspect_exec(&exec.id).await.ok()?;
        (i.running == Some(false)).then_some(i.exit_code).flatten()
    })
    .await;
    (code, out)
}

/// Removes, when dropped (also when the test fails), every container with `label` and the named
/// volumes listed.
pub struct Cleanup {
    pub label: String,
    pub volumes: Vec<String>,
}

impl Cleanup {
    /// Cleans up containers labelled `label` (`k=v`).
    pub fn new(label: impl Into<String>) -> Self {
        Cleanup {
            label: label.into(),
            volumes: Vec::new(),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let script = format!(
            "ids=$(docker ps -aq --filter label={label}); [ -z \"$ids\" ] || docker rm -f -v $ids >/dev/null; \
             for v in {volumes}; do docker volume rm -f \"$v\" >/dev/null; done; true",
            label = self.label,
            volumes = self.volumes.join(" ")
        );
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .status();
    }
}

/// The group controller's poll interval in the group tests and the benchmark: anything faster
/// is driven by the plugin's events.
pub const POLL: Duration = Duration::from_secs(60);

/// A group controller with the Docker plugin (`instance-docker`, events registered) and the
/// vanilla flavor, in-process, managing one group with a unique ID.
pub struct Fixture {
    pub group: GroupPlugin,
    pub docker: Docker,
    /// The group ID, unique to the test.
    pub id: String,
    /// `infrakit.group=<id>`.
    pub label: String,
    pub plugin: Arc<DockerPlugin>,
}

/// A fixture for a group whose ID starts with `prefix`.
pub async fn fixture(prefix: &str) -> Fixture {
    let id = unique_name(prefix);
    let plugin = Arc::new(plugin(&format!("{id}-plugin")).await);
    let plugins = Arc::new(Plugins::new("/nonexistent/plugins"));
    plugins.register_instance("instance-docker", plugin.clone());
    plugins.register_publisher("instance-docker", plugin.clone());
    plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
    let group = GroupPlugin::new(
        plugins,
        ControllerConfig {
            poll_interval: POLL,
            ..ControllerConfig::default()
        },
    );
    Fixture {
        group,
        docker: docker().await,
        label: format!("infrakit.group={id}"),
        id,
        plugin,
    }
}

impl Fixture {
    /// The group's spec: `instance` properties for instance-docker, `flavor` properties for the
    /// vanilla flavor, `extra` merged into the group properties (e.g. `Updating`).
    pub fn spec(
        &self,
        allocation: Value,
        instance: Value,
        flavor: Value,
        extra: Value,
    ) -> GroupSpec {
        group::spec(&self.id)
            .allocation(allocation)
            .instance("instance-docker", instance)
            .flavor("flavor-vanilla", flavor)
            .with(extra)
            .build()
    }

    /// Waits until the controller reports the group converged with `n` instances.
    pub async fn converged(&self, n: usize) -> GroupDescription {
        group::converged(&self.group, &self.id, n, Duration::from_secs(60)).await
    }

    /// Waits until exactly `n` containers of the group run, none of them in `gone`.
    pub async fn running(
        &self,
        n: usize,
        gone: &BTreeSet<String>,
        within: Duration,
    ) -> BTreeSet<String> {
        eventually(
            &format!("{n} containers of {} running", self.id),
            within,
            || async {
                let names: BTreeSet<String> = running_names(&self.docker, &self.label)
                    .await
                    .into_iter()
                    .collect();
                (names.len() == n && names.is_disjoint(gone)).then_some(names)
            },
        )
        .await
    }

    /// The environment of container `name`.
    pub async fn env_of(&self, name: &str) -> Vec<String> {
        self.docker
            .inspect_container(
                name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .unwrap()
            .config
            .unwrap()
            .env
            .unwrap()
    }

    /// Destroys the group and waits for its containers to go.
    pub async fn teardown(&self) {
        self.group.destroy_group(&self.id).await.unwrap();
        self.running(0, &BTreeSet::new(), Duration::from_secs(30))
            .await;
    }
}

/// Properties of a container that sleeps, exits at once on SIGTERM, and has `VERSION` set.
pub fn sleeper(image: &str, version: &str) -> Value {
    json!({
        "image": image,
        "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
        "env": {"VERSION": version},
    })
}
