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
use infrakit_spi::{Description, Group, GroupDescription, Instance, Tags};
use infrakit_testkit::group::{self, ids};
use infrakit_testkit::{eventually, until, ProcessDir};

/// How long a test waits for what the plugin's events drive (a dead process replaced): several
/// times what it takes on an idle machine (well under a second), and still below the 60 s poll
/// that would otherwise find it. Reaching it in time is what shows the events work.
const BEFORE_THE_POLL: Duration = Duration::from_secs(30);

/// Reconcile passes of group `id` that failed so far, from the controller's metrics.
fn reconcile_failures(group: &GroupPlugin, id: &str) -> u64 {
    group
        .telemetry()
        .metrics
        .group_sample("infrakit_reconcile_failures_total", id)
        .unwrap_or(0)
}

/// Plugins looked up in `dir`, with the vanilla flavor registered in-process.
fn plugins(dir: impl AsRef<Path>) -> Arc<Plugins> {
    let plugins = Arc::new(Plugins::new(dir.as_ref()));
    plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
    plugins
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
    group::converged(group, id, n, BEFORE_THE_POLL).await
}

/// The IDs an instance plugin lists.
async fn listed(plugin: &dyn Instance) -> BTreeSet<String> {
    plugin
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect()
}

/// The member with logical ID `lid`.
fn pet<'a>(d: &'a GroupDescription, lid: &str) -> Option<&'a Description> {
    d.instances.iter().find(|i| i.logical_id() == Some(lid))
}

/// The members' logical IDs.
fn logical_ids(d: &GroupDescription) -> BTreeSet<&str> {
    d.instances
        .iter()
        .map(|i| i.logical_id().unwrap())
        .collect()
}

/// SIGKILLs process `pid`.
fn sigkill(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
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

/// Sends a captured request body and checks the response: each `(JSON pointer, value)` of
/// `want`, a missing value reading as null (`""` points at the whole response). A failure names
/// the method and the pointer. Returns the response.
async fn call(socket: &Path, body: &str, want: &[(&str, Value)]) -> Value {
    let v = rpc(socket, body).await;
    let request: Value = serde_json::from_str(body).unwrap();
    for (pointer, value) in want {
        assert_eq!(
            v.pointer(pointer).unwrap_or(&Value::Null),
            value,
            "{} at {pointer:?} of {v}",
            request["method"]
        );
    }
    v
}

#[tokio::test]
async fn group_methods_match_the_wire_captures() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    let plugins = plugins(&dir);
    let files = Arc::new(FilePlugin::new(tmp.path().join("files")).unwrap());
    plugins.register_instance("instance-file", files.clone());
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

    call(&sock, r#"{"jsonrpc":"2.0","method":"Group.CommitGroup","params":{"Name":"group-stateless","Spec":{"ID":"cattle","Properties":{"Allocation":{"Size":2},"Instance":{"Plugin":"instance-file","Properties":{"Note":"v1"}},"Flavor":{"Plugin":"flavor-vanilla","Properties":{"Init":["echo hello"],"Tags":{"tier":"web"}}}}},"Pretend":false},"id":230145908432712945}"#, &[
        ("", json!({"jsonrpc":"2.0","result":{"Name":"group-stateless","ID":"cattle","Details":"Managing 2 instances"},"id":230145908432712945u64})),
    ]).await;
    converged(&group, "cattle", 2).await;

    // Exactly the captured tags and prepared spec, including the recorded config hash.
    let tags = json!({"infrakit.config.hash":"rsfonnrfmaykaiytaj26ud5ixjk7m4rd","infrakit.group":"cattle","tier":"web"});
    let v = call(&sock, r#"{"jsonrpc":"2.0","method":"Group.DescribeGroup","params":{"Name":"group-stateless","ID":"cattle"},"id":1124036572001155406}"#, &[
        ("/result/Name", json!("group-stateless")),
        ("/result/ID", json!("cattle")),
        ("/result/Description/Converged", json!(true)),
        ("/result/Description/Instances/0/Tags", tags.clone()),
        ("/result/Description/Instances/0/LogicalID", Value::Null),
        ("/result/Description/Instances/0/Properties", json!({"Properties":{"Note":"v1"},"Tags":tags,"Init":"echo hello","LogicalID":null,"Attachments":null})),
    ]).await;
    call(&sock, r#"{"jsonrpc":"2.0","method":"Group.InspectGroups","params":{"Name":"group-stateless","ID":""},"id":123120403758044522}"#, &[
        ("/result/Groups/0/ID", json!("cattle")),
        ("/result/Groups/0/Properties/Allocation", json!({"Size": 2})),
    ]).await;
    call(&sock, r#"{"jsonrpc":"2.0","method":"Group.Size","params":{"Name":"group-stateless","ID":"cattle"},"id":992679048839967766}"#, &[
        ("/result", json!({"Name":"group-stateless","ID":"cattle","Size":2})),
    ]).await;

    let victim = v["result"]["Description"]["Instances"][0]["ID"]
        .as_str()
        .unwrap()
        .to_string();
    call(&sock, &format!(r#"{{"jsonrpc":"2.0","method":"Group.DestroyInstances","params":{{"Name":"group-stateless","ID":"cattle","Instances":["{victim}"]}},"id":826479638613112998}}"#), &[
        ("/result", json!({"Name":"group-stateless","ID":"cattle"})),
    ]).await;
    let d = converged(&group, "cattle", 1).await;
    assert!(!ids(&d).contains(&victim));
    assert_eq!(group.size("cattle").await.unwrap(), 1);

    call(&sock, r#"{"jsonrpc":"2.0","method":"Group.FreeGroup","params":{"Name":"group-stateless","ID":"cattle"},"id":3539916565017515734}"#, &[
        ("/result/ID", json!("cattle")),
    ]).await;
    call(&sock, r#"{"jsonrpc":"2.0","method":"Group.DestroyGroup","params":{"Name":"group-stateless","ID":"cattle"},"id":5933738276459039721}"#, &[
        ("/error/code", json!(-32000)),
        ("/error/message", json!("Group 'cattle' is not being watched")),
    ]).await;
    assert_eq!(
        listed(&*files).await.len(),
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
    let group = GroupPlugin::new(plugins(&dir), config(Duration::from_secs(60)));
    group
        .commit_group(
            group::spec("workers")
                .size(3)
                .instance("instance-process", json!({"Cmd": "sleep", "Args": ["300"]}))
                .flavor("flavor-vanilla", Value::Null)
                .build(),
            false,
        )
        .await
        .unwrap();
    let before = ids(&converged(&group, "workers", 3).await);
    let victim = before.iter().next().unwrap().clone();
    sigkill(procs.pid(&victim).unwrap());
    let after = eventually(
        "a replacement process runs, before the 60 s poll",
        BEFORE_THE_POLL,
        || async {
            let now = listed(&*procs).await;
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
    let plugins = plugins(tmp.path().join("plugins"));
    let files = Arc::new(FilePlugin::new(tmp.path().join("files")).unwrap());
    plugins.register_instance("instance-file", files.clone());
    let group = GroupPlugin::new(plugins, config(Duration::from_millis(50)));
    let mk = |ids: &[&str]| {
        group::spec("db")
            .logical_ids(ids)
            .instance("instance-file", json!({}))
            .flavor(
                "flavor-vanilla",
                json!({"Attachments": [{"ID": "data", "Type": "volume"}]}),
            )
            .build()
    };
    group
        .commit_group(mk(&["db1", "db2", "db3"]), false)
        .await
        .unwrap();
    let d = converged(&group, "db", 3).await;
    assert_eq!(logical_ids(&d), BTreeSet::from(["db1", "db2", "db3"]));
    let db2 = pet(&d, "db2").unwrap().id.clone();
    std::fs::remove_file(files.dir().join(&db2)).unwrap();
    let d = eventually("db2 recreated", Duration::from_secs(30), || async {
        let d = group.describe_group("db").await.ok()?;
        let new = pet(&d, "db2")?;
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
        .commit_group(mk(&["db2", "db3", "db4"]), true)
        .await
        .unwrap();
    assert_eq!(details, "Adding members db4, then removing members db1");
    group
        .commit_group(mk(&["db2", "db3", "db4"]), false)
        .await
        .unwrap();
    let d = converged(&group, "db", 3).await;
    assert_eq!(logical_ids(&d), BTreeSet::from(["db2", "db3", "db4"]));
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
    let group = GroupPlugin::new(plugins(&dir), config(Duration::from_millis(20)));
    group
        .commit_group(
            group::spec("web")
                .size(3)
                .instance("instance-file", Value::Null)
                .flavor("flavor-vanilla", Value::Null)
                .build(),
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
    until(
        "three more reconciles fail",
        Duration::from_secs(30),
        || async { reconcile_failures(&group, "web") >= failed + 3 },
    )
    .await;
    assert_eq!(
        listed(&*files).await,
        before,
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
    let plugins = plugins(tmp.path().join("plugins"));
    let sim = Arc::new(Simulator::new(SimulatorConfig::default()));
    plugins.register_instance("instance-simulator", sim.clone());
    plugins.register_publisher("instance-simulator", sim.clone());
    let group = GroupPlugin::new(plugins, config(Duration::from_secs(60)));
    group
        .commit_group(
            group::spec("sim")
                .size(2000)
                .instance("instance-simulator", Value::Null)
                .flavor("flavor-vanilla", Value::Null)
                .build(),
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
    let plugins = plugins(tmp.path().join("plugins"));
    let procs = Arc::new(ProcessPlugin::open(tmp.path().join("procs")).unwrap());
    plugins.register_instance("instance-process", procs.clone());
    plugins.register_publisher("instance-process", procs.clone());
    let group = GroupPlugin::new(plugins, config(Duration::from_secs(60)));
    let script = r#"echo "$INFRAKIT_INSTANCE_ID" >> "$INFRAKIT_VOLUMES/data-$INFRAKIT_LOGICAL_ID/history"; exec sleep 300"#;
    group
        .commit_group(
            group::spec("db")
                .logical_ids(&["db1", "db2", "db3"])
                .instance(
                    "instance-process",
                    json!({"Cmd": "sh", "Args": ["-c", script]}),
                )
                .flavor(
                    "flavor-vanilla",
                    json!({"Attachments": [{"ID": "data-{{ LogicalID }}", "Type": "volume"}]}),
                )
                .build(),
            false,
        )
        .await
        .unwrap();
    let d = converged(&group, "db", 3).await;
    let old = pet(&d, "db2").unwrap().id.clone();
    let history = procs.volume_dir("data-db2").unwrap().join("history");
    until(
        "db2 wrote to its volume",
        Duration::from_secs(30),
        || async { std::fs::read_to_string(&history).is_ok_and(|s| s.contains(&old)) },
    )
    .await;

    sigkill(procs.pid(&old).unwrap());
    let new = eventually(
        "db2 replaced, before the 60 s poll",
        BEFORE_THE_POLL,
        || async {
            let d = group.describe_group("db").await.ok()?;
            let db2 = pet(&d, "db2")?;
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
