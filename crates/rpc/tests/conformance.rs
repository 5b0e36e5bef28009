//! Wire conformance: the original InfraKit's JSON bodies, sent over a real Unix socket, get
//! answers of the same shape (see the recorded exchanges in the project reference).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::net::UnixStream;
use tokio::sync::broadcast;

use infrakit_rpc::{Client, FlavorClient, Handlers, InstanceClient, PluginServer};
use infrakit_spi::event::Publisher;
use infrakit_spi::instance::Properties;
use infrakit_spi::{
    Allocation, Description, DestroyContext, Error, Event, Flavor, Health, Index, Instance, Result,
    Spec, Tags,
};

/// A minimal in-memory instance plugin, enough to exercise the protocol layer.
#[derive(Default)]
struct MemInstances {
    items: Mutex<BTreeMap<String, Spec>>,
    destroyed: Mutex<Vec<(String, String)>>,
    events: Option<broadcast::Sender<Event>>,
}

#[async_trait]
impl Instance for MemInstances {
    async fn validate(&self, properties: &Value) -> Result<()> {
        if properties.get("Bad").is_some() {
            return Err(Error::invalid("Properties.Bad", "not allowed"));
        }
        Ok(())
    }
    async fn provision(&self, spec: Spec) -> Result<String> {
        let mut items = self.items.lock().unwrap();
        let id = format!("instance-{}", items.len() + 1);
        items.insert(id.clone(), spec);
        Ok(id)
    }
    async fn label(&self, id: &str, labels: &Tags) -> Result<()> {
        let mut items = self.items.lock().unwrap();
        let spec = items
            .get_mut(id)
            .ok_or_else(|| Error::instance_not_found(id))?;
        spec.tags.extend(labels.clone());
        Ok(())
    }
    async fn destroy(&self, id: &str, context: &DestroyContext) -> Result<()> {
        self.items.lock().unwrap().remove(id);
        self.destroyed
            .lock()
            .unwrap()
            .push((id.to_string(), context.reason.clone()));
        Ok(())
    }
    async fn describe_instances(&self, tags: &Tags, properties: bool) -> Result<Vec<Description>> {
        Ok(self
            .items
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| infrakit_spi::instance::tags_match(&s.tags, tags))
            .map(|(id, s)| Description {
                id: id.clone(),
                logical_id: s.logical_id.clone(),
                tags: s.tags.clone(),
                properties: properties.then(|| Properties::from_serialize(s).unwrap()),
                created: None,
            })
            .collect())
    }
}

impl Publisher for MemInstances {
    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.as_ref().unwrap().subscribe()
    }
}

/// A flavor that adds one tag and answers a fixed health; `hang` makes Healthy never return.
struct TagFlavor {
    tag: &'static str,
    hang: bool,
}

#[async_trait]
impl Flavor for TagFlavor {
    async fn validate(&self, _: &Value, allocation: &Allocation) -> Result<()> {
        if allocation.size == 0 && !allocation.is_pets() {
            return Err(Error::plugin("size must be positive"));
        }
        Ok(())
    }
    async fn prepare(
        &self,
        _: &Value,
        mut spec: Spec,
        _: &Allocation,
        index: &Index,
    ) -> Result<Spec> {
        spec.tags.insert("flavor", self.tag);
        spec.tags.insert("seq", index.sequence.to_string());
        Ok(spec)
    }
    async fn healthy(&self, _: &Value, _: &Description) -> Result<Health> {
        if self.hang {
            futures::future::pending::<()>().await;
        }
        Ok(Health::Healthy)
    }
    async fn drain(&self, _: &Value, _: &Description) -> Result<()> {
        Ok(())
    }
}

/// Sends `body` as InfraKit's Go client does and returns (HTTP status, body text).
use infrakit_testkit::wire::{post, rpc};

struct Fixture {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    servers: Vec<PluginServer>,
    instances: Arc<MemInstances>,
    events: broadcast::Sender<Event>,
}

async fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    let (events, _) = broadcast::channel(16);
    let instances = Arc::new(MemInstances {
        events: Some(events.clone()),
        ..Default::default()
    });
    let inst = PluginServer::start(
        &dir,
        "instance-file",
        Handlers::new()
            .instance("", instances.clone())
            .publisher(instances.clone()),
    )
    .await
    .unwrap();
    let flav = PluginServer::start(
        &dir,
        "flavor-vanilla",
        Handlers::new()
            .flavor(
                "",
                Arc::new(TagFlavor {
                    tag: "default",
                    hang: false,
                }),
            )
            .flavor(
                "worker",
                Arc::new(TagFlavor {
                    tag: "worker",
                    hang: false,
                }),
            )
            .flavor(
                "slow",
                Arc::new(TagFlavor {
                    tag: "slow",
                    hang: true,
                }),
            ),
    )
    .await
    .unwrap();
    Fixture {
        dir,
        _dir: tmp,
        servers: vec![inst, flav],
        instances,
        events,
    }
}

#[tokio::test]
async fn handshake_hello_matches_the_capture_shape() {
    let f = fixture().await;
    let v = rpc(
        &f.dir.join("flavor-vanilla"),
        r#"{"jsonrpc":"2.0","method":"Handshake.Hello","params":{},"id":2219426187578070227}"#,
    )
    .await;
    assert_eq!(v["id"].as_u64(), Some(2219426187578070227));
    let objects = &v["result"]["Objects"];
    let names: Vec<&str> = objects["Flavor/0.1.1"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec![".", "slow", "worker"]);
    assert_eq!(
        objects["Flavor/0.1.1"][0],
        json!({"Name": ".", "ProxyFor": ""})
    );
    assert!(objects.get("Flavor/0.1.0").is_some());
}

#[tokio::test]
async fn every_generation_of_handshake_is_answered() {
    let f = fixture().await;
    let sock = f.dir.join("instance-file");
    for method in ["Plugin.Implements", "Handshake.Implements"] {
        let v = rpc(
            &sock,
            &format!(r#"{{"jsonrpc":"2.0","method":"{method}","params":{{}},"id":1}}"#),
        )
        .await;
        let apis = v["result"]["APIs"].as_array().unwrap();
        for version in ["0.1.0", "0.3.0", "0.5.0", "0.6.1"] {
            assert!(
                apis.contains(&json!({"Name": "Instance", "Version": version})),
                "{method} {version}"
            );
        }
    }
    let v = rpc(
        &sock,
        r#"{"jsonrpc":"2.0","method":"Handshake.Types","params":{},"id":1}"#,
    )
    .await;
    assert_eq!(v["result"]["Types"]["Instance/0.5.0"], json!(["."]));
}

#[tokio::test]
async fn instance_methods_match_the_captures() {
    let f = fixture().await;
    let sock = f.dir.join("instance-file");
    let v = rpc(&sock, r#"{"jsonrpc":"2.0","method":"Instance.DescribeInstances","params":{"Type":"","Tags":{},"Properties":false},"id":4464182788965591687}"#).await;
    assert_eq!(
        v,
        json!({"jsonrpc":"2.0","result":{"Type":"","Descriptions":[]},"id":4464182788965591687u64})
    );
    let v = rpc(&sock, r#"{"jsonrpc":"2.0","method":"Instance.Validate","params":{"Type":"","Properties":{"Note":"v1"}},"id":1725548395093415145}"#).await;
    assert_eq!(v["result"], json!({"Type":"","OK":true}));
    let v = rpc(&sock, r#"{"jsonrpc":"2.0","method":"Instance.Provision","params":{"Type":"","Spec":{"Properties":{"Note":"v1"},"Tags":{"infrakit.config.hash":"rsfonnrfmaykaiytaj26ud5ixjk7m4rd","infrakit.group":"cattle","tier":"web"},"Init":"echo hello","LogicalID":null,"Attachments":null}},"id":4512088724765299400}"#).await;
    assert_eq!(v["result"], json!({"Type":"","ID":"instance-1"}));
    assert_eq!(v["id"].as_u64(), Some(4512088724765299400));
    let v = rpc(&sock, r#"{"jsonrpc":"2.0","method":"Instance.DescribeInstances","params":{"Type":"","Tags":{"tier":"web"},"Properties":true},"id":7}"#).await;
    let d = &v["result"]["Descriptions"][0];
    assert_eq!(d["ID"], "instance-1");
    assert_eq!(d["LogicalID"], Value::Null);
    assert_eq!(d["Properties"]["Init"], "echo hello");
    assert_eq!(d["Properties"]["Attachments"], Value::Null);
    let v = rpc(&sock, r#"{"jsonrpc":"2.0","method":"Instance.Label","params":{"Type":"","Instance":"instance-1","Labels":{"owner":"me"}},"id":8}"#).await;
    assert_eq!(v["result"], json!({"Type":"","OK":true}));
    let v = rpc(&sock, r#"{"jsonrpc":"2.0","method":"Instance.Destroy","params":{"Type":"","Instance":"instance-1","Context":{"Reason":"rolling_update"}},"id":982559251697520149}"#).await;
    assert_eq!(v["result"], json!({"Type":"","OK":true}));
    // An older client sends no Context.
    rpc(&sock, r#"{"jsonrpc":"2.0","method":"Instance.Destroy","params":{"Instance":"instance-9"},"id":9}"#).await;
    let destroyed = f.instances.destroyed.lock().unwrap().clone();
    assert_eq!(
        destroyed,
        vec![
            ("instance-1".to_string(), "rolling_update".to_string()),
            ("instance-9".to_string(), "terminate".to_string())
        ]
    );
}

#[tokio::test]
async fn flavor_methods_route_by_type() {
    let f = fixture().await;
    let sock = f.dir.join("flavor-vanilla");
    let v = rpc(&sock, r#"{"jsonrpc":"2.0","method":"Flavor.Validate","params":{"Type":"","Properties":{"Init":["echo hello"],"Tags":{"tier":"web"}},"Allocation":{"Size":2,"LogicalIDs":null}},"id":9067991906389497516}"#).await;
    assert_eq!(v["result"], json!({"Type":"","OK":true}));
    let v = rpc(&sock, r#"{"jsonrpc":"2.0","method":"Flavor.Prepare","params":{"Type":"worker","Properties":{},"Spec":{"Properties":{"Note":"v1"},"Tags":{"infrakit.group":"cattle"},"Init":"","LogicalID":null,"Attachments":null},"Allocation":{"Size":2,"LogicalIDs":null},"Index":{"Group":"cattle","Sequence":2}},"id":4185239939957547350}"#).await;
    assert_eq!(v["result"]["Type"], "worker");
    assert_eq!(
        v["result"]["Spec"]["Tags"],
        json!({"flavor":"worker","infrakit.group":"cattle","seq":"2"})
    );
    assert_eq!(v["result"]["Spec"]["LogicalID"], Value::Null);
    let v = rpc(&sock, r#"{"jsonrpc":"2.0","method":"Flavor.Healthy","params":{"Type":"","Properties":{},"Instance":{"ID":"instance-8","LogicalID":null,"Tags":{}}},"id":3802954175886257220}"#).await;
    assert_eq!(v["result"], json!({"Type":"","Health":1}));
    let v = rpc(&sock, r#"{"jsonrpc":"2.0","method":"Flavor.Drain","params":{"Type":"","Properties":{},"Instance":{"ID":"instance-8","LogicalID":null,"Tags":{}}},"id":5}"#).await;
    assert_eq!(v["result"], json!({"Type":"","OK":true}));
    let v = rpc(&sock, r#"{"jsonrpc":"2.0","method":"Flavor.Healthy","params":{"Type":"nope","Properties":{},"Instance":{"ID":"i"}},"id":6}"#).await;
    assert_eq!(v["error"]["code"], -32000);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("type 'nope'"));
}

#[tokio::test]
async fn errors_use_the_standard_codes() {
    let f = fixture().await;
    let sock = f.dir.join("instance-file");
    let v = rpc(
        &sock,
        r#"{"jsonrpc":"2.0","method":"Instance.Explode","params":{},"id":1}"#,
    )
    .await;
    assert_eq!(v["error"]["code"], -32601);
    assert_eq!(v["id"], 1);
    let v = rpc(
        &sock,
        r#"{"jsonrpc":"2.0","method":"Group.CommitGroup","params":{},"id":2}"#,
    )
    .await;
    assert_eq!(
        v["error"]["code"], -32601,
        "an instance plugin does not serve Group"
    );
    let v = rpc(&sock, r#"{"jsonrpc":"2.0","method":"#).await;
    assert_eq!(v["error"]["code"], -32700);
    assert_eq!(v["id"], Value::Null);
    let v = rpc(
        &sock,
        r#"{"jsonrpc":"1.0","method":"Instance.Validate","params":{},"id":3}"#,
    )
    .await;
    assert_eq!(v["error"]["code"], -32600);
    assert_eq!(v["id"], 3);
    let v = rpc(&sock, r#"[1,2]"#).await;
    assert_eq!(v["error"]["code"], -32600);
    let v = rpc(&sock, r#"{"jsonrpc":"2.0","method":"Instance.Validate","params":{"Properties":{"Bad":1}},"id":"s-1"}"#).await;
    assert_eq!(
        v["error"],
        json!({"code": -32000, "message": "Properties.Bad: not allowed", "data": {"Path": "Properties.Bad", "Message": "not allowed"}})
    );
    assert_eq!(v["id"], "s-1");
    let v = rpc(
        &sock,
        r#"{"jsonrpc":"2.0","method":"Instance.Provision","params":{"Spec":{"Tags":[1]}},"id":4}"#,
    )
    .await;
    assert_eq!(v["error"]["code"], -32602);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("params.Spec.Tags"));
    // gorilla also takes params as a one-element array.
    let v = rpc(
        &sock,
        r#"{"jsonrpc":"2.0","method":"Instance.Validate","params":[{"Properties":{}}],"id":5}"#,
    )
    .await;
    assert_eq!(v["result"]["OK"], true);
}

#[tokio::test]
async fn notifications_get_no_body_and_http_errors_are_plain() {
    let f = fixture().await;
    let sock = f.dir.join("instance-file");
    let (status, body) = post(
        &sock,
        Some("application/json"),
        r#"{"jsonrpc":"2.0","method":"Instance.Validate","params":{}}"#,
    )
    .await;
    assert_eq!((status, body.as_str()), (200, ""));
    let (status, _) = post(&sock, Some("text/plain"), "{}").await;
    assert_eq!(status, 415);
    let (status, _) = post(
        &sock,
        None,
        r#"{"jsonrpc":"2.0","method":"Handshake.Hello","params":{},"id":1}"#,
    )
    .await;
    assert_eq!(status, 200, "a missing content type is accepted");
}

#[tokio::test]
async fn clients_implement_the_traits_over_the_socket() {
    let f = fixture().await;
    let inst = InstanceClient::new(
        Client::new("instance-file", f.dir.join("instance-file")),
        "",
    );
    let mut tags = Tags::new();
    tags.insert("infrakit.group", "g");
    let id = inst
        .provision(Spec {
            tags: tags.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let found = inst.describe_instances(&tags, false).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, id);
    assert!(found[0].properties.is_none());
    let err = inst.validate(&json!({"Bad": true})).await.unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { path, .. } if path == "Properties.Bad"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "Properties.Bad: not allowed");

    let worker = FlavorClient::new(
        Client::new("flavor-vanilla", f.dir.join("flavor-vanilla")),
        "worker",
    );
    let spec = worker
        .prepare(
            &Value::Null,
            Spec::default(),
            &Allocation::size(1),
            &Index {
                group: "g".into(),
                sequence: 3,
            },
        )
        .await
        .unwrap();
    assert_eq!(&spec.tags["flavor"], "worker");
    assert_eq!(&spec.tags["seq"], "3");
}

#[tokio::test]
async fn a_missing_or_hanging_plugin_gives_a_clear_error() {
    let f = fixture().await;
    let gone = InstanceClient::new(
        Client::new("instance-gone", f.dir.join("instance-gone")),
        "",
    );
    let err = gone.validate(&Value::Null).await.unwrap_err().to_string();
    assert!(
        err.contains("instance-gone")
            && err.contains(&f.dir.join("instance-gone").display().to_string()),
        "{err}"
    );

    let slow = FlavorClient::new(
        Client::new("flavor-vanilla", f.dir.join("flavor-vanilla"))
            .with_timeout(Duration::from_millis(200)),
        "slow",
    );
    let err = slow
        .healthy(&Value::Null, &Description::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("Flavor.Healthy"));
}

#[tokio::test]
async fn sockets_and_pid_files_are_managed() {
    let mut f = fixture().await;
    let pid = std::fs::read_to_string(f.dir.join("instance-file.pid")).unwrap();
    assert_eq!(pid.trim(), std::process::id().to_string());
    let entries = infrakit_rpc::dir::list(&f.dir).unwrap();
    let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, vec!["flavor-vanilla", "instance-file"]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&f.dir).unwrap().permissions().mode() & 0o777,
        0o700
    );

    // A second server under a live name is refused.
    let err = PluginServer::start(&f.dir, "instance-file", Handlers::new())
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);

    // Stopping removes both files.
    let server = f.servers.remove(0);
    server.stop().await;
    assert!(!f.dir.join("instance-file").exists());
    assert!(!f.dir.join("instance-file.pid").exists());

    // A stale socket (nobody listening) is replaced.
    let stale = std::os::unix::net::UnixListener::bind(f.dir.join("instance-stale")).unwrap();
    drop(stale);
    assert!(f.dir.join("instance-stale").exists());
    let s = PluginServer::start(&f.dir, "instance-stale", Handlers::new())
        .await
        .unwrap();
    assert!(UnixStream::connect(s.socket()).await.is_ok());
}

#[tokio::test]
async fn events_are_served_as_server_sent_events() {
    let f = fixture().await;
    let sock = f.dir.join("instance-file");
    let mut stream = Box::pin(
        infrakit_rpc::events::subscribe(&sock, "/instance/", Duration::from_secs(5))
            .await
            .unwrap(),
    );
    f.events
        .send(Event::instance("other", "x", "", Value::Null))
        .map(|_| ())
        .unwrap();
    let mut e = Event::instance(
        "exited",
        "instance-7",
        "process 42 exited",
        json!({"Tags": {"a": "b"}}),
    );
    e.topic = "/elsewhere".into();
    f.events.send(e).unwrap();
    f.events
        .send(Event::instance(
            "exited",
            "instance-1",
            "process 42 exited",
            json!({"Tags": {"a": "b"}}),
        ))
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.kind, "other");
    let second = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        second.id, "instance-1",
        "events outside the topic are filtered"
    );
    assert_eq!(second.data["Tags"]["a"], "b");

    // A plugin without a publisher refuses subscriptions.
    let err =
        infrakit_rpc::events::subscribe(&f.dir.join("flavor-vanilla"), "/", Duration::from_secs(5))
            .await
            .err()
            .unwrap();
    assert!(err.to_string().contains("404"), "{err}");
}
