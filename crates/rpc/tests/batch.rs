//! The batch extensions over a real socket: `InstanceBatch.Provision` and `FlavorBatch.Prepare`
//! answer one result per item, in order, a failed item with its own error; a plugin without
//! the extensions (as the original's) is asked one call per item, and the caller cannot tell.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::UnixListener;

use infrakit_rpc::{Client, FlavorClient, Handlers, InstanceClient, PluginServer};
use infrakit_spi::{
    Allocation, Description, DestroyContext, Error, Flavor, Index, Instance, Result, Spec, Tags,
};

/// Provisions `i-<Name>`, and fails the specs whose properties say `Fail`.
struct Picky;

#[async_trait]
impl Instance for Picky {
    async fn validate(&self, _: &Value) -> Result<()> {
        Ok(())
    }
    async fn provision(&self, spec: Spec) -> Result<String> {
        if spec.properties["Fail"] == json!(true) {
            return Err(Error::invalid("Properties.Fail", "told to fail"));
        }
        Ok(format!(
            "i-{}",
            spec.properties["Name"].as_str().unwrap_or("")
        ))
    }
    async fn label(&self, _: &str, _: &Tags) -> Result<()> {
        Ok(())
    }
    async fn destroy(&self, _: &str, _: &DestroyContext) -> Result<()> {
        Ok(())
    }
    async fn describe_instances(&self, _: &Tags, _: bool) -> Result<Vec<Description>> {
        Ok(Vec::new())
    }
}

fn spec(name: &str, fail: bool) -> Spec {
    Spec {
        properties: json!({"Name": name, "Fail": fail}),
        ..Spec::default()
    }
}

#[tokio::test]
async fn a_batch_answers_each_item_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let server = PluginServer::start(
        tmp.path(),
        "instance-picky",
        Handlers::new().instance("", Arc::new(Picky)),
    )
    .await
    .unwrap();
    let client = InstanceClient::new(Client::new("instance-picky", server.socket()), "");
    let results = client
        .provision_many(vec![spec("a", false), spec("b", true), spec("c", false)], 2)
        .await;
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].as_ref().unwrap(), "i-a");
    match &results[1] {
        Err(Error::Invalid { path, message }) => {
            assert_eq!(path, "Properties.Fail");
            assert_eq!(message, "told to fail");
        }
        other => panic!("the failed item keeps its error: {other:?}"),
    }
    assert_eq!(results[2].as_ref().unwrap(), "i-c");
    assert!(client.provision_many(Vec::new(), 2).await.is_empty());
}

/// A flavor that writes the index into the spec's init.
struct Indexing;

#[async_trait]
impl Flavor for Indexing {
    async fn validate(&self, _: &Value, _: &Allocation) -> Result<()> {
        Ok(())
    }
    async fn prepare(&self, _: &Value, mut spec: Spec, _: &Allocation, i: &Index) -> Result<Spec> {
        if i.sequence == 1 {
            return Err(Error::plugin("no second one"));
        }
        spec.init = format!("{}/{}", i.group, i.sequence);
        Ok(spec)
    }
    async fn healthy(&self, _: &Value, _: &Description) -> Result<infrakit_spi::Health> {
        Ok(infrakit_spi::Health::Healthy)
    }
    async fn drain(&self, _: &Value, _: &Description) -> Result<()> {
        Ok(())
    }
}

fn index(sequence: u64) -> Index {
    Index {
        group: "web".into(),
        sequence,
    }
}

#[tokio::test]
async fn a_flavor_batch_prepares_each_spec_with_its_index() {
    let tmp = tempfile::tempdir().unwrap();
    let server = PluginServer::start(
        tmp.path(),
        "flavor-indexing",
        Handlers::new().flavor("", Arc::new(Indexing)),
    )
    .await
    .unwrap();
    let client = FlavorClient::new(Client::new("flavor-indexing", server.socket()), "");
    let prepared = client
        .prepare_many(
            &Value::Null,
            vec![
                (spec("a", false), index(0)),
                (spec("b", false), index(1)),
                (spec("c", false), index(2)),
            ],
            &Allocation::default(),
        )
        .await;
    assert_eq!(prepared[0].as_ref().unwrap().init, "web/0");
    assert!(
        prepared[1]
            .as_ref()
            .is_err_and(|e| e.to_string().contains("no second one")),
        "{:?}",
        prepared[1]
    );
    assert_eq!(prepared[2].as_ref().unwrap().init, "web/2");
}

/// Serves only the original's methods, as an original plugin would, recording each call.
fn original_plugin(socket: &std::path::Path) -> Arc<Mutex<Vec<String>>> {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let listener = UnixListener::bind(socket).unwrap();
    let seen = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let request: Value = serde_json::from_slice(&body).unwrap();
                            let method = request["method"].as_str().unwrap_or("").to_string();
                            seen.lock().unwrap().push(method.clone());
                            let params = &request["params"];
                            let answer = match method.as_str() {
                                "Instance.Provision" => {
                                    json!({"result": {"ID": format!("i-{}", params["Spec"]["Properties"]["Name"].as_str().unwrap_or(""))}})
                                }
                                "Flavor.Prepare" => json!({"result": {"Spec": params["Spec"]}}),
                                // Go's net/rpc, as the original's plugins answer unknown methods.
                                other => {
                                    json!({"error": {"code": -32000, "message": format!("rpc: can't find service {other}")}})
                                }
                            };
                            let mut answer = answer;
                            answer["jsonrpc"] = json!("2.0");
                            answer["id"] = request["id"].clone();
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                                answer.to_string(),
                            ))))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    calls
}

#[tokio::test]
async fn a_plugin_without_the_extensions_is_asked_one_call_per_item() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("old");
    let calls = original_plugin(&socket);
    let instances = InstanceClient::new(Client::new("old", &socket), "");
    let ids: Vec<String> = instances
        .provision_many(
            vec![spec("a", false), spec("b", false), spec("c", false)],
            2,
        )
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(ids, ["i-a", "i-b", "i-c"]);
    let flavor = FlavorClient::new(Client::new("old", &socket), "");
    let prepared = flavor
        .prepare_many(
            &Value::Null,
            vec![(spec("a", false), index(0)), (spec("b", false), index(1))],
            &Allocation::default(),
        )
        .await;
    assert!(prepared.iter().all(|p| p.is_ok()));
    let mut seen = calls.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            "Flavor.Prepare",
            "Flavor.Prepare",
            "FlavorBatch.Prepare",
            "Instance.Provision",
            "Instance.Provision",
            "Instance.Provision",
            "InstanceBatch.Provision",
        ],
        "one attempt at each extension, then the original's calls"
    );
}
