//! The combo flavor over real sockets: the combo runs behind its own socket (as a separate
//! plugin process would) and finds the vanilla flavor behind another; a group controller uses
//! the combo through its socket.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use infrakit_flavor_combo::ComboFlavor;
use infrakit_flavor_vanilla::VanillaFlavor;
use infrakit_group::{ControllerConfig, GroupPlugin};
use infrakit_instance_file::FilePlugin;
use infrakit_rpc::{Handlers, PluginServer, Plugins};
use infrakit_spi::{Description, Error, Group, GroupSpec, Health, Instance, Tags};
use infrakit_testkit::group;

/// A plugin directory with `flavor-vanilla` and `flavor-combo` each behind a socket, the combo
/// looking flavors up through a registry of its own (another process, as far as it can tell).
struct Sockets {
    tmp: tempfile::TempDir,
    _servers: Vec<PluginServer>,
    /// The registry a client of the plugins uses: it knows nothing in-process.
    plugins: Arc<Plugins>,
    _combo_registry: Arc<Plugins>,
}

async fn sockets() -> Sockets {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    let vanilla = PluginServer::start(
        &dir,
        "flavor-vanilla",
        Handlers::new().flavor("", Arc::new(VanillaFlavor::new())),
    )
    .await
    .unwrap();
    let combo_registry = Arc::new(Plugins::new(&dir));
    let combo = PluginServer::start(
        &dir,
        "flavor-combo",
        Handlers::new().flavor("", Arc::new(ComboFlavor::new(&combo_registry))),
    )
    .await
    .unwrap();
    Sockets {
        plugins: Arc::new(Plugins::new(&dir)),
        _servers: vec![vanilla, combo],
        _combo_registry: combo_registry,
        tmp,
    }
}

fn group_spec(id: &str, flavors: Value) -> GroupSpec {
    group::spec(id)
        .size(2)
        .instance("instance-file", json!({"Note": "combo"}))
        .flavor("flavor-combo", json!({"Flavors": flavors}))
        .build()
}

#[tokio::test]
async fn a_group_gets_every_flavor_through_the_sockets() {
    let s = sockets().await;
    let files = Arc::new(FilePlugin::new(s.tmp.path().join("files")).unwrap());
    s.plugins.register_instance("instance-file", files.clone());
    let group = GroupPlugin::new(
        s.plugins.clone(),
        ControllerConfig {
            poll_interval: Duration::from_millis(100),
            ..ControllerConfig::default()
        },
    );

    // A bad field deep inside one flavor is reported with its full path; nothing is created.
    let bad = group_spec(
        "web",
        json!([
            {"Plugin": "flavor-vanilla", "Properties": {"Init": ["echo one"]}},
            {"Plugin": "flavor-vanilla", "Properties": {"Health": {"TCP": 3}}},
        ]),
    );
    match group.commit_group(bad, false).await.unwrap_err() {
        Error::Invalid { path, .. } => assert_eq!(
            path,
            "Properties.Flavor.Properties.Flavors[1].Properties.Health.TCP"
        ),
        other => panic!("expected a path, got {other}"),
    }
    let missing = group_spec("web", json!([{"Plugin": "flavor-nope"}]));
    match group.commit_group(missing, false).await.unwrap_err() {
        Error::Invalid { path, message } => {
            assert_eq!(path, "Properties.Flavor.Properties.Flavors[0].Plugin");
            assert!(message.contains("flavor-nope"), "{message}");
        }
        other => panic!("expected a path, got {other}"),
    }
    assert!(files
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap()
        .is_empty());

    let good = group_spec(
        "web",
        json!([
            {"Plugin": "flavor-vanilla", "Properties": {"Init": ["echo one"], "Tags": {"tier": "web", "first": "1"}}},
            {"Plugin": "flavor-vanilla", "Properties": {"Init": ["echo two"], "Tags": {"tier": "db"}}},
        ]),
    );
    group.commit_group(good, false).await.unwrap();
    let d = group::converged(&group, "web", 2, Duration::from_secs(20)).await;
    for inst in &d.instances {
        assert_eq!(&inst.tags["tier"], "db", "the later flavor wins");
        assert_eq!(&inst.tags["first"], "1");
        assert_eq!(&inst.tags["infrakit.group"], "web");
        let spec = &inst.properties.as_ref().unwrap().to_value();
        assert_eq!(spec["Init"], "echo one\necho two");
        assert_eq!(spec["Properties"], json!({"Note": "combo"}));
    }
    group.destroy_group("web").await.unwrap();
}

#[tokio::test]
async fn health_and_drain_answer_through_the_sockets() {
    let s = sockets().await;
    let combo = s.plugins.flavor("flavor-combo").unwrap();
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let open_addr = open.local_addr().unwrap().to_string();
    let closed_addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let probing = |addrs: &[&str]| {
        let flavors: Vec<Value> = addrs
            .iter()
            .map(|a| json!({"Plugin": "flavor-vanilla", "Properties": {"Health": {"TCP": a, "Interval": "1ms"}}}))
            .collect();
        json!({ "Flavors": flavors })
    };
    let inst = Description {
        id: "i-1".into(),
        ..Default::default()
    };
    assert_eq!(
        combo
            .healthy(&probing(&[&open_addr, &open_addr]), &inst)
            .await
            .unwrap(),
        Health::Healthy
    );
    assert_eq!(
        combo
            .healthy(&probing(&[&open_addr, &closed_addr]), &inst)
            .await
            .unwrap(),
        Health::Unhealthy
    );
    let gone = json!({"Flavors": [
        {"Plugin": "flavor-vanilla"},
        {"Plugin": "flavor-gone"},
    ]});
    assert_eq!(combo.healthy(&gone, &inst).await.unwrap(), Health::Unknown);

    combo
        .drain(&json!({"Flavors": [{"Plugin": "flavor-vanilla"}]}), &inst)
        .await
        .unwrap();
    let two_gone = json!({"Flavors": [
        {"Plugin": "flavor-gone"},
        {"Plugin": "flavor-vanilla"},
        {"Plugin": "flavor-lost"},
    ]});
    let e = combo.drain(&two_gone, &inst).await.unwrap_err().to_string();
    assert!(e.starts_with("2 flavors failed to drain: "), "{e}");
    assert!(
        e.contains("Flavors[0] (flavor-gone)") && e.contains("Flavors[2] (flavor-lost)"),
        "{e}"
    );
    drop(open);
}
