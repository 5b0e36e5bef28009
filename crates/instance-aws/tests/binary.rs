//! The `infrakit-instance-aws` binary: configured from the environment and flags, serving the
//! plugin on its socket, against a real moto server.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use infrakit_rpc::{Client, InstanceClient};
use infrakit_spi::{Instance, Spec, Tags};
use serde_json::json;

use common::{ami, eventually, Moto};

const BIN: &str = env!("CARGO_BIN_EXE_infrakit-instance-aws");

/// The binary with a clean environment: no AWS settings but those given, `HOME` in `home` (so
/// no shared config files), `INFRAKIT_HOME` in `home` too.
fn command(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("INFRAKIT_HOME", home.join("infrakit"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Stops a child on drop (also when the test fails).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the plugin answers on `socket`, failing if the process exits first.
async fn serving(child: &mut Running, socket: &Path) -> InstanceClient {
    let client = Client::new("instance-aws", socket).with_timeout(Duration::from_secs(20));
    let client = &client;
    eventually("the plugin answers", Duration::from_secs(20), || {
        if let Some(status) = child.0.try_wait().unwrap() {
            let mut err = String::new();
            child.0.stderr.take().unwrap().read_to_string(&mut err).ok();
            panic!("infrakit-instance-aws exited ({status}): {err}");
        }
        async move { client.hello().await.ok() }
    })
    .await;
    InstanceClient::new(client.clone(), "")
}

/// Waits until the child exits.
async fn exited(child: &mut Running, within: Duration) -> ExitStatus {
    eventually("the plugin exits", within, || {
        std::future::ready(child.0.try_wait().unwrap())
    })
    .await
}

fn creds() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", common::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", common::SECRET_KEY),
    ]
}

#[tokio::test]
async fn serves_ec2_with_the_endpoint_from_a_flag() {
    let moto = Moto::start();
    let ami = ami(&moto.ec2()).await;
    let home = tempfile::tempdir().unwrap();
    let plugins: PathBuf = home.path().join("sockets");
    let mut env = creds();
    env.push(("AWS_REGION", common::REGION));
    let mut child = Running(
        command(
            home.path(),
            &env,
            &[
                "--name",
                "aws-test",
                "--dir",
                plugins.to_str().unwrap(),
                "--endpoint-url",
                &moto.endpoint,
            ],
        )
        .spawn()
        .unwrap(),
    );
    let socket = plugins.join("aws-test");
    let plugin = serving(&mut child, &socket).await;
    let group = Tags::from([("infrakit.group".to_string(), "bin".to_string())]);
    let id = plugin
        .provision(Spec {
            properties: json!({"ImageId": ami, "InstanceType": "t2.nano"}),
            tags: group.clone(),
            ..Spec::default()
        })
        .await
        .unwrap();
    let listed = plugin.describe_instances(&group, true).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert_eq!(
        listed[0].properties.as_ref().unwrap().to_value()["InstanceType"],
        "t2.nano"
    );
    let e = plugin.validate(&json!({"ImageId": 7})).await.unwrap_err();
    assert!(e.to_string().contains("Properties.ImageId"), "{e}");

    // SIGTERM stops it and removes its socket.
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = exited(&mut child, Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    assert!(!socket.exists());
}

#[tokio::test]
async fn takes_region_and_endpoint_from_the_environment() {
    let moto = Moto::start();
    let ami = ami(&moto.ec2()).await;
    let home = tempfile::tempdir().unwrap();
    let mut env = creds();
    env.push(("AWS_DEFAULT_REGION", common::REGION));
    env.push(("AWS_ENDPOINT_URL", &moto.endpoint));
    let mut child = Running(command(home.path(), &env, &[]).spawn().unwrap());
    // The default name, in $INFRAKIT_HOME/plugins.
    let socket = home.path().join("infrakit/plugins/instance-aws");
    let plugin = serving(&mut child, &socket).await;
    let id = plugin
        .provision(Spec {
            properties: json!({"RunInstancesInput": {"ImageId": ami}}),
            ..Spec::default()
        })
        .await
        .unwrap();
    let all = plugin
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].id, id);
}

#[test]
fn refuses_to_start_without_a_region() {
    let home = tempfile::tempdir().unwrap();
    let out = command(home.path(), &creds(), &[]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error: no AWS region"), "{err}");
}
