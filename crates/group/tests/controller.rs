//! The group controller with real plugins, in-process and over sockets.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use infrakit_flavor_vanilla::VanillaFlavor;
use infrakit_group::{ControllerConfig, GroupPlugin};
use infrakit_instance_file::FilePlugin;
use infrakit_instance_process::ProcessPlugin;
use infrakit_instance_simulator::{Simulator, SimulatorConfig};
use infrakit_rpc::{Handlers, PluginServer, Plugins};
use infrakit_spi::{Group, GroupDescription, GroupSpec, Instance, Tags};
use infrakit_testkit::{eventually, ProcessDir};

/// How long a test waits for what the plugin's events drive (a dead process replaced): several
/// times what it takes on an idle machine (well under a second), and still below the 60 s poll
/// that would otherwise find it. Reaching it in time is what shows the events work.
const BEFORE_THE_POLL: Duration = Duration::from_secs(30);

/// Reconcile passes of group `id` that failed so far, from the controller's metrics.
fn reconcile_failures(group: &GroupPlugin, id: &str) -> u64 {
    let prefix = format!("infrakit_reconcile_failures_total{{group=\"{id}\"}} ");
    group
        .telemetry()
        .metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or(0)
}

fn spec(id: &str, allocation: Value, instance: Value, flavor: Value) -> GroupSpec {
    GroupSpec {
        id: id.into(),
        properties: json!({"Allocation": allocation, "Instance": instance, "Flavor": flavor}),
    }
}

fn ids(d: &GroupDescription) -> BTreeSet<String> {
    d.instances.iter().map(|i| i.id.clone()).collect()
}

fn config(poll: Duration) -> ControllerConfig {
    ControllerConfig {
        poll_interval: poll,
        ..ControllerConfig::default()
    }
}

/// Waits until group `id` has converged at `n` instances. In the tests with a 60 s poll, healing
/// within this bound is driven by events.
async fn converged(group: &GroupPlugin, id: &str, n: usize) -> GroupDescription {
    eventually(
        &format!("{id} converged at {n}"),
        BEFORE_THE_POLL,
        || async {
            let d = group.describe_group(id).await.ok()?;
            (d.converged && d.instances.len() == n).then_some(d)
        },
    )
    .await
}

/// Sends a captured request body and returns the parsed response.
async fn rpc(socket: &Path, body: &str) -> Value {
    use http_body_util::BodyExt;
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post("/")
        .header("Host", "h")
        .header("Content-Type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn group_methods_match_the_wire_captures() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    let plugins = Arc::new(Plugins::new(&dir));
    let files = Arc::new(FilePlugin::new(tmp.path().join("files")).unwrap());
    plugins.register_instance("instance-file", files.clone());
    plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
    let group = Arc::new(GroupPlugin::new(
        plugins.clone(),
        config(Duration::from_millis(100)),
    ));
    let server = PluginServer::start(
        &dir,
        "group-stateless",
        Handlers::new().group(group.clone()),
    )
    .await
    .unwrap();
    let sock = server.socket().to_path_buf();

    let v = rpc(&sock, r#"{"jsonrpc":"2.0","method":"Group.CommitGroup","params":{"Name":"group-stateless","Spec":{"ID":"cattle","Properties":{"Allocation":{"Size":2},"Instance":{"Plugin":"instance-file","Properties":{"Note":"v1"}},"Flavor":{"Plugin":"flavor-vanilla","Properties":{"Init":["echo hello"],"Tags":{"tier":"web"}}}}},"Pretend":false},"id":230145908432712945}"#).await;
    assert_eq!(
        v,
        json!({"jsonrpc":"2.0","result":{"Name":"group-stateless","ID":"cattle","Details":"Managing 2 instances"},"id":230145908432712945u64})
    );
    converged(&group, "cattle", 2).await;

    let v = rpc(&sock, r#"{"jsonrpc":"2.0","method":"Group.DescribeGroup","params":{"Name":"group-stateless","ID":"cattle"},"id":1124036572001155406}"#).await;
    let r = &v["result"];
    assert_eq!(
        (r["Name"].as_str(), r["ID"].as_str()),
        (Some("group-stateless"), Some("cattle"))
    );
    assert_eq!(r["Description"]["Converged"], true);
    let inst = &r["Description"]["Instances"][0];
    // Exactly the captured tags and prepared spec, including the recorded config hash.
    let tags = json!({"infrakit.config.hash":"rsfonnrfmaykaiytaj26ud5ixjk7m4rd","infrakit.group":"cattle","tier":"web"});
    assert_eq!(inst["Tags"], tags);
    assert_eq!(inst["LogicalID"], Value::Null);
    assert_eq!(
        inst["Properties"],
        json!({"Properties":{"Note":"v1"},"Tags":tags,"Init":"echo hello","LogicalID":null,"Attachments":null})
    );

    let v = rpc(&sock, r#"{"jsonrpc":"2.0","method":"Group.InspectGroups","params":{"Name":"group-stateless","ID":""},"id":123120403758044522}"#).await;
    assert_eq!(v["result"]["Groups"][0]["ID"], "cattle");
    assert_eq!(
        v["result"]["Groups"][0]["Properties"]["Allocation"],
        json!({"Size": 2})
    );

    let v = rpc(&sock, r#"{"jsonrpc":"2.0","method":"Group.Size","params":{"Name":"group-stateless","ID":"cattle"},"id":992679048839967766}"#).await;
    assert_eq!(
        v["result"],
        json!({"Name":"group-stateless","ID":"cattle","Size":2})
    );

    let victim = inst["ID"].as_str().unwrap().to_string();
    let v = rpc(&sock, &format!(r#"{{"jsonrpc":"2.0","method":"Group.DestroyInstances","params":{{"Name":"group-stateless","ID":"cattle","Instances":["{victim}"]}},"id":826479638613112998}}"#)).await;
    assert_eq!(v["result"], json!({"Name":"group-stateless","ID":"cattle"}));
    let d = converged(&group, "cattle", 1).await;
    assert!(!ids(&d).contains(&victim));
    assert_eq!(group.size("cattle").await.unwrap(), 1);

    let v = rpc(&sock, r#"{"jsonrpc":"2.0","method":"Group.FreeGroup","params":{"Name":"group-stateless","ID":"cattle"},"id":3539916565017515734}"#).await;
    assert_eq!(v["result"]["ID"], "cattle");
    let v = rpc(&sock, r#"{"jsonrpc":"2.0","method":"Group.DestroyGroup","params":{"Name":"group-stateless","ID":"cattle"},"id":5933738276459039721}"#).await;
    assert_eq!(v["error"]["code"], -32000);
    assert_eq!(v["error"]["message"], "Group 'cattle' is not being watched");
    assert_eq!(
        files
            .describe_instances(&Tags::new(), false)
            .await
            .unwrap()
            .len(),
        1,
        "free leaves instances alone"
    );
}

#[tokio::test]
async fn a_killed_process_is_replaced_without_waiting_for_the_poll() {
    // The process plugin runs behind its socket (not registered in-process), so the controller
    // has to follow its events over server-sent events.
    let tmp = ProcessDir::new();
    let dir = tmp.path().join("plugins");
    let procs = Arc::new(ProcessPlugin::open(tmp.path().join("procs")).unwrap());
    let _ps = PluginServer::start(
        &dir,
        "instance-process",
        Handlers::new()
            .instance("", procs.clone())
            .publisher(procs.clone()),
    )
    .await
    .unwrap();
    let plugins = Arc::new(Plugins::new(&dir));
    plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
    let group = GroupPlugin::new(plugins, config(Duration::from_secs(60)));
    group
        .commit_group(
            spec(
                "workers",
                json!({"Size": 3}),
                json!({"Plugin": "instance-process", "Properties": {"Cmd": "sleep", "Args": ["300"]}}),
                json!({"Plugin": "flavor-vanilla"}),
            ),
            false,
        )
        .await
        .unwrap();
    let before = ids(&converged(&group, "workers", 3).await);
    let victim = before.iter().next().unwrap().clone();
    let pid = procs.pid(&victim).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let after = eventually(
        "a replacement process runs, before the 60 s poll",
        BEFORE_THE_POLL,
        || async {
            let now: BTreeSet<String> = procs
                .describe_instances(&Tags::new(), false)
                .await
                .unwrap()
                .into_iter()
                .map(|d| d.id)
                .collect();
            (now.len() == 3 && !now.contains(&victim)).then_some(now)
        },
    )
    .await;
    assert_eq!(
        before.intersection(&after).count(),
        2,
        "the other two are untouched"
    );
    group.destroy_group("workers").await.unwrap();
}

#[tokio::test]
async fn pets_are_recreated_with_their_logical_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = Arc::new(Plugins::new(tmp.path().join("plugins")));
    let files = Arc::new(FilePlugin::new(tmp.path().join("files")).unwrap());
    plugins.register_instance("instance-file", files.clone());
    plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
    let group = GroupPlugin::new(plugins, config(Duration::from_millis(50)));
    let mk = |ids: Value| {
        spec(
            "db",
            json!({"LogicalIDs": ids}),
            json!({"Plugin": "instance-file", "Properties": {}}),
            json!({"Plugin": "flavor-vanilla", "Properties": {"Attachments": [{"ID": "data", "Type": "volume"}]}}),
        )
    };
    group
        .commit_group(mk(json!(["db1", "db2", "db3"])), false)
        .await
        .unwrap();
    let d = converged(&group, "db", 3).await;
    let lids: BTreeSet<_> = d
        .instances
        .iter()
        .map(|i| i.logical_id().unwrap().to_string())
        .collect();
    assert_eq!(
        lids,
        ["db1", "db2", "db3"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let db2 = d
        .instances
        .iter()
        .find(|i| i.logical_id() == Some("db2"))
        .unwrap()
        .id
        .clone();
    std::fs::remove_file(files.dir().join(&db2)).unwrap();
    let d = eventually("db2 recreated", Duration::from_secs(30), || async {
        let d = group.describe_group("db").await.ok()?;
        let new = d.instances.iter().find(|i| i.logical_id() == Some("db2"))?;
        (new.id != db2 && d.instances.len() == 3).then(|| new.clone())
    })
    .await;
    assert_eq!(&d.tags["infrakit.logical_id"], "db2");
    assert_eq!(
        d.properties.unwrap().to_value()["Attachments"],
        json!([{"ID": "data", "Type": "volume"}])
    );

    // Changing the logical IDs adds and removes members.
    let details = group
        .commit_group(mk(json!(["db2", "db3", "db4"])), true)
        .await
        .unwrap();
    assert_eq!(details, "Adding members db4, then removing members db1");
    group
        .commit_group(mk(json!(["db2", "db3", "db4"])), false)
        .await
        .unwrap();
    let d = converged(&group, "db", 3).await;
    let lids: BTreeSet<_> = d
        .instances
        .iter()
        .map(|i| i.logical_id().unwrap().to_string())
        .collect();
    assert_eq!(
        lids,
        ["db2", "db3", "db4"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}

#[tokio::test]
async fn an_unreachable_instance_plugin_destroys_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    let files_dir = tmp.path().join("files");
    let files = Arc::new(FilePlugin::new(files_dir.clone()).unwrap());
    let server = PluginServer::start(
        &dir,
        "instance-file",
        Handlers::new().instance("", files.clone()),
    )
    .await
    .unwrap();
    let plugins = Arc::new(Plugins::new(&dir));
    plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
    let group = GroupPlugin::new(plugins, config(Duration::from_millis(20)));
    group
        .commit_group(
            spec(
                "web",
                json!({"Size": 3}),
                json!({"Plugin": "instance-file"}),
                json!({"Plugin": "flavor-vanilla"}),
            ),
            false,
        )
        .await
        .unwrap();
    let before = ids(&converged(&group, "web", 3).await);

    // The plugin goes away for a while: describe fails, the controller must not act.
    server.stop().await;
    let err = group.describe_group("web").await.unwrap_err();
    assert!(err.to_string().contains("instance-file"), "{err}");
    // Let several reconciles fail; the assertion is that none acted.
    let failed = reconcile_failures(&group, "web");
    eventually(
        "three more reconciles fail",
        Duration::from_secs(30),
        || async { (reconcile_failures(&group, "web") >= failed + 3).then_some(()) },
    )
    .await;
    let on_disk: BTreeSet<String> = files
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(
        on_disk, before,
        "nothing was created or destroyed while the plugin was away"
    );

    // It comes back: the same instances are adopted, none replaced.
    let _server = PluginServer::start(
        &dir,
        "instance-file",
        Handlers::new().instance("", files.clone()),
    )
    .await
    .unwrap();
    let after = ids(&converged(&group, "web", 3).await);
    assert_eq!(after, before);
}

#[tokio::test]
async fn thousands_of_simulated_instances_converge_and_heal() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = Arc::new(Plugins::new(tmp.path().join("plugins")));
    let sim = Arc::new(Simulator::new(SimulatorConfig::default()));
    plugins.register_instance("instance-simulator", sim.clone());
    plugins.register_publisher("instance-simulator", sim.clone());
    plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
    let group = GroupPlugin::new(plugins, config(Duration::from_secs(60)));
    group
        .commit_group(
            spec(
                "sim",
                json!({"Size": 2000}),
                json!({"Plugin": "instance-simulator"}),
                json!({"Plugin": "flavor-vanilla"}),
            ),
            false,
        )
        .await
        .unwrap();
    converged(&group, "sim", 2000).await;
    let killed = sim.kill_random(500);
    assert_eq!(killed.len(), 500);
    let d = converged(&group, "sim", 2000).await;
    assert!(killed.iter().all(|k| !ids(&d).contains(k)));
}

#[tokio::test]
async fn a_replaced_pet_keeps_its_logical_id_and_sees_its_predecessors_data() {
    let tmp = ProcessDir::new();
    let plugins = Arc::new(Plugins::new(tmp.path().join("plugins")));
    let procs = Arc::new(ProcessPlugin::open(tmp.path().join("procs")).unwrap());
    plugins.register_instance("instance-process", procs.clone());
    plugins.register_publisher("instance-process", procs.clone());
    plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
    let group = GroupPlugin::new(plugins, config(Duration::from_secs(60)));
    let script = r#"echo "$INFRAKIT_INSTANCE_ID" >> "$INFRAKIT_VOLUMES/data-$INFRAKIT_LOGICAL_ID/history"; exec sleep 300"#;
    group
        .commit_group(
            spec(
                "db",
                json!({"LogicalIDs": ["db1", "db2", "db3"]}),
                json!({"Plugin": "instance-process", "Properties": {"Cmd": "sh", "Args": ["-c", script]}}),
                json!({"Plugin": "flavor-vanilla", "Properties": {"Attachments": [{"ID": "data-{{ LogicalID }}", "Type": "volume"}]}}),
            ),
            false,
        )
        .await
        .unwrap();
    let d = converged(&group, "db", 3).await;
    let old = d
        .instances
        .iter()
        .find(|i| i.logical_id() == Some("db2"))
        .unwrap()
        .id
        .clone();
    let history = procs.volume_dir("data-db2").unwrap().join("history");
    eventually(
        "db2 wrote to its volume",
        Duration::from_secs(30),
        || async {
            std::fs::read_to_string(&history)
                .ok()
                .filter(|s| s.contains(&old))
                .map(|_| ())
        },
    )
    .await;

    let pid = procs.pid(&old).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let new = eventually(
        "db2 replaced, before the 60 s poll",
        BEFORE_THE_POLL,
        || async {
            let d = group.describe_group("db").await.ok()?;
            let db2 = d.instances.iter().find(|i| i.logical_id() == Some("db2"))?;
            (db2.id != old).then(|| db2.id.clone())
        },
    )
    .await;
    let lines: Vec<String> = eventually(
        "the replacement wrote to the same volume",
        Duration::from_secs(30),
        || async {
            let text = std::fs::read_to_string(&history).ok()?;
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            (lines.len() == 2).then_some(lines)
        },
    )
    .await;
    assert_eq!(
        lines,
        vec![old, new.clone()],
        "the replacement sees its predecessor's data"
    );
    let d = group.describe_group("db").await.unwrap();
    assert_eq!(
        &d.instances.iter().find(|i| i.id == new).unwrap().tags["infrakit.logical_id"],
        "db2"
    );
    group.destroy_group("db").await.unwrap();
}
