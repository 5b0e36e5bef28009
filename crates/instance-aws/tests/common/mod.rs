//! Shared by the tests: a real moto server per test, SDK configuration for it, EC2 helpers and
//! a group controller running the plugin in-process.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_ec2::types as ec2;
use aws_sdk_ec2::Client;
use infrakit_flavor_vanilla::VanillaFlavor;
use infrakit_group::{ControllerConfig, GroupPlugin};
use infrakit_instance_aws::{config, AwsOptions, AwsPlugin};
use infrakit_rpc::Plugins;
use infrakit_spi::{Group, GroupDescription, GroupSpec};
use infrakit_testkit::{group, unique_name};
use serde_json::Value;

pub use infrakit_testkit::eventually;

/// The region every test uses.
pub const REGION: &str = "us-east-1";
/// The zone subnets and volumes are made in.
pub const ZONE: &str = "us-east-1a";
/// Dummy credentials moto accepts while it does not check permissions.
pub const ACCESS_KEY: &str = "testing";
/// See [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "testing";

/// A moto server on a free loopback port, validating AMIs, killed when dropped.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts moto without permission checks.
    pub fn start() -> Moto {
        Self::start_with(&[])
    }

    /// Starts moto with extra environment (e.g. `INITIAL_NO_AUTH_ACTION_COUNT`) on a port
    /// reserved for this test process ([`free_port`]) and waits until it accepts connections.
    /// Fails the test with a clear message if `moto_server` is missing.
    pub fn start_with(env: &[(&str, &str)]) -> Moto {
        let found = Command::new("moto_server")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            matches!(found, Ok(s) if s.success()),
            "these tests need moto_server on PATH: pip install 'moto[server]' (scripts/test.sh \
             installs it)"
        );
        let mut last_log = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join("moto.log");
            let out = std::fs::File::create(&log).unwrap();
            let port = free_port();
            let mut cmd = Command::new("moto_server");
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("MOTO_ENABLE_AMI_VALIDATION", "true")
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            for (k, v) in env {
                cmd.env(k, v);
            }
            let child = cmd.spawn().expect("starting moto_server");
            let mut moto = Moto {
                child,
                endpoint: format!("http://127.0.0.1:{port}"),
                log,
                _dir: dir,
            };
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                // Listening, and still running: a port someone else holds (our moto then exits,
                // unable to bind it) is not taken for ours.
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                    && matches!(moto.child.try_wait(), Ok(None))
                {
                    return moto;
                }
                if let Ok(Some(status)) = moto.child.try_wait() {
                    last_log = format!("moto_server exited ({status}): {}", moto.log_tail());
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "moto_server did not listen on {port} within 60s: {}",
                    moto.log_tail()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("moto_server would not start: {last_log}");
    }

    /// The end of moto's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SDK configuration for this moto with the dummy credentials.
    pub fn sdk(&self) -> SdkConfig {
        sdk_config(&self.endpoint, ACCESS_KEY, SECRET_KEY)
    }

    /// An EC2 client for this moto.
    pub fn ec2(&self) -> Client {
        Client::new(&self.sdk())
    }

    /// The plugin on this moto.
    pub fn plugin(&self) -> AwsPlugin {
        AwsPlugin::new(&self.sdk(), options())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use infrakit_testkit::free_port;

/// The SDK configuration the tests use: built explicitly (no environment), region
/// [`REGION`], static credentials, the plugin's HTTP client, retries and timeouts.
pub fn sdk_config(endpoint: &str, access_key: &str, secret_key: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            access_key, secret_key, None, None, "tests",
        )))
        .endpoint_url(endpoint)
        .http_client(config::https_client())
        .retry_config(config::retry_config(config::DEFAULT_MAX_ATTEMPTS))
        .timeout_config(config::timeout_config())
        .build()
}

/// Plugin options for tests: short waits.
pub fn options() -> AwsOptions {
    AwsOptions {
        wait_timeout: Duration::from_secs(30),
        ..AwsOptions::default()
    }
}

/// An Amazon Linux AMI that moto lists (and so accepts with AMI validation on).
pub async fn ami(ec2: &Client) -> String {
    let images = ec2
        .describe_images()
        .owners("amazon")
        .filters(
            ec2::Filter::builder()
                .name("name")
                .values("amzn-ami-hvm-*")
                .build(),
        )
        .send()
        .await
        .expect("DescribeImages");
    images
        .images()
        .iter()
        .filter_map(|i| i.image_id())
        .next()
        .expect("moto lists an Amazon Linux AMI")
        .to_string()
}

/// A VPC with one subnet `cidr` in [`ZONE`]; returns the subnet ID.
pub async fn subnet(ec2: &Client, vpc_cidr: &str, cidr: &str) -> String {
    let vpc = ec2
        .create_vpc()
        .cidr_block(vpc_cidr)
        .send()
        .await
        .unwrap()
        .vpc
        .unwrap()
        .vpc_id
        .unwrap();
    ec2.create_subnet()
        .vpc_id(vpc)
        .cidr_block(cidr)
        .availability_zone(ZONE)
        .send()
        .await
        .unwrap()
        .subnet
        .unwrap()
        .subnet_id
        .unwrap()
}

/// A 1 GiB volume in [`ZONE`] tagged `key=value`; returns its ID.
pub async fn volume(ec2: &Client, key: &str, value: &str) -> String {
    ec2.create_volume()
        .availability_zone(ZONE)
        .size(1)
        .tag_specifications(
            ec2::TagSpecification::builder()
                .resource_type(ec2::ResourceType::Volume)
                .tags(ec2::Tag::builder().key(key).value(value).build())
                .build(),
        )
        .send()
        .await
        .unwrap()
        .volume_id
        .unwrap()
}

/// The volume `id`.
pub async fn describe_volume(ec2: &Client, id: &str) -> ec2::Volume {
    ec2.describe_volumes()
        .volume_ids(id)
        .send()
        .await
        .unwrap()
        .volumes()[0]
        .clone()
}

/// The instance a volume is attached to, if any.
pub async fn attached_to(ec2: &Client, volume: &str) -> Option<String> {
    describe_volume(ec2, volume)
        .await
        .attachments()
        .iter()
        .find_map(|a| a.instance_id().map(str::to_string))
}

/// Pending and running instances carrying `key=value`, by ID.
pub async fn live(ec2: &Client, key: &str, value: &str) -> Vec<ec2::Instance> {
    let out = ec2
        .describe_instances()
        .filters(
            ec2::Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .build(),
        )
        .filters(
            ec2::Filter::builder()
                .name(format!("tag:{key}"))
                .values(value)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut all: Vec<ec2::Instance> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances().iter().cloned())
        .collect();
    all.sort_by(|a, b| a.instance_id().cmp(&b.instance_id()));
    all
}

/// Every instance in moto, in any state.
pub async fn all_instances(ec2: &Client) -> Vec<ec2::Instance> {
    ec2.describe_instances()
        .send()
        .await
        .unwrap()
        .reservations()
        .iter()
        .flat_map(|r| r.instances().iter().cloned())
        .collect()
}

/// The tags of an instance as a map.
pub fn tags_of(i: &ec2::Instance) -> infrakit_spi::Tags {
    infrakit_instance_aws::describe::tags_of(i)
}

/// The IDs of `instances`.
pub fn ids(instances: &[ec2::Instance]) -> BTreeSet<String> {
    instances
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect()
}

/// One unsigned IAM Query API call (`Action=...`) to moto, for the calls it lets through
/// before it checks permissions; returns the XML answer.
pub fn iam_call(endpoint: &str, params: &[(&str, &str)]) -> String {
    use std::io::Write;
    let host = endpoint.trim_start_matches("http://");
    let mut body = String::from("Version=2010-05-08");
    for (k, v) in params {
        body.push('&');
        body.push_str(k);
        body.push('=');
        body.push_str(&percent(v));
    }
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20240101/{REGION}/iam/aws4_request, \
         SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(host).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
        "IAM {params:?}: {answer}"
    );
    answer
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The text of the first `<tag>...</tag>` in `xml`.
pub fn xml_text(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no {tag} in {xml}"))
        + open.len();
    let end = xml[start..].find("</").unwrap() + start;
    xml[start..end].to_string()
}

/// The group controller's poll interval: moto has no events, so the controller finds changes
/// by polling.
pub const POLL: Duration = Duration::from_millis(500);

/// A group controller with the AWS plugin (`instance-aws`) on a moto of its own and the
/// vanilla flavor, in-process, managing one group with a unique ID.
pub struct Fixture {
    pub moto: Moto,
    pub group: GroupPlugin,
    pub plugin: Arc<AwsPlugin>,
    pub ec2: Client,
    /// The group ID.
    pub id: String,
    /// An AMI moto accepts.
    pub ami: String,
}

/// A fixture for a group whose ID starts with `prefix`.
pub async fn fixture(prefix: &str) -> Fixture {
    let moto = Moto::start();
    let plugin = Arc::new(moto.plugin());
    let plugins = Arc::new(Plugins::new("/nonexistent/plugins"));
    plugins.register_instance("instance-aws", plugin.clone());
    plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
    let group = GroupPlugin::new(
        plugins,
        ControllerConfig {
            poll_interval: POLL,
            ..ControllerConfig::default()
        },
    );
    let ec2 = moto.ec2();
    let ami = ami(&ec2).await;
    Fixture {
        moto,
        group,
        plugin,
        ec2,
        id: unique_name(prefix),
        ami,
    }
}

impl Fixture {
    /// The group's spec: `instance` properties for instance-aws, `flavor` properties for the
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
            .instance("instance-aws", instance)
            .flavor("flavor-vanilla", flavor)
            .with(extra)
            .build()
    }

    /// Waits until the controller reports the group converged with `n` instances.
    pub async fn converged(&self, n: usize) -> GroupDescription {
        group::converged(&self.group, &self.id, n, Duration::from_secs(60)).await
    }

    /// The group's live instances in EC2.
    pub async fn members(&self) -> Vec<ec2::Instance> {
        live(&self.ec2, "infrakit.group", &self.id).await
    }

    /// Waits until EC2 has exactly `n` live instances of the group, none of them in `gone`.
    pub async fn running(&self, n: usize, gone: &BTreeSet<String>) -> Vec<ec2::Instance> {
        eventually(
            &format!("{n} instances of {} running", self.id),
            Duration::from_secs(60),
            || async {
                let members = self.members().await;
                let now = ids(&members);
                (now.len() == n && now.is_disjoint(gone)).then_some(members)
            },
        )
        .await
    }

    /// Terminates instances with the SDK, behind the controller's back.
    pub async fn terminate(&self, ids: &[&str]) {
        let mut req = self.ec2.terminate_instances();
        for id in ids {
            req = req.instance_ids(*id);
        }
        req.send().await.unwrap();
    }

    /// Destroys the group and waits for its instances to go.
    pub async fn teardown(&self) {
        self.group.destroy_group(&self.id).await.unwrap();
        self.running(0, &BTreeSet::new()).await;
    }
}
