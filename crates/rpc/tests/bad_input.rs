//! Bad input over a real Unix socket: every method, given malformed JSON, wrong types, missing or
//! contradictory params, answers with a JSON-RPC error naming the problem, and the plugin behind
//! it is never called.

mod common;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::UnixStream;

use common::Recorder;
use infrakit_rpc::{Handlers, PluginServer};

struct Fixture {
    _tmp: tempfile::TempDir,
    socket: std::path::PathBuf,
    recorder: Arc<Recorder>,
    _server: PluginServer,
}

async fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let server = PluginServer::start(
        &tmp.path().join("plugins"),
        "everything",
        Handlers::new()
            .instance("", recorder.clone())
            .flavor("", recorder.clone())
            .group(recorder.clone()),
    )
    .await
    .unwrap();
    Fixture {
        socket: server.socket().to_path_buf(),
        _tmp: tmp,
        recorder,
        _server: server,
    }
}

async fn post(socket: &Path, body: impl Into<Bytes>) -> (u16, String) {
    let stream = UnixStream::connect(socket).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post("/")
        .header("Host", "h")
        .header("Content-Type", "application/json")
        .body(Full::new(body.into()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Sends `method` with `params` and returns the error object, failing if there is none.
async fn error_of(socket: &Path, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 7});
    let (status, text) = post(socket, body.to_string()).await;
    assert_eq!(status, 200, "{method}: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(
        v.get("result").is_none(),
        "{method} {params} should have failed: {v}"
    );
    assert_eq!(v["id"], 7, "{v}");
    v["error"].clone()
}

#[tokio::test]
async fn every_method_refuses_bad_params_before_calling_the_plugin() {
    let f = fixture().await;
    let description = json!({"ID": "i-1", "Tags": {}});
    // (method, params, path the error must name)
    let cases: Vec<(&str, Value, &str)> = vec![
        // Wrong types.
        ("Instance.Validate", json!({"Type": 5}), "params.Type"),
        (
            "Instance.Provision",
            json!({"Spec": {"Tags": [1]}}),
            "params.Spec.Tags",
        ),
        (
            "Instance.Provision",
            json!({"Spec": {"Init": 12}}),
            "params.Spec.Init",
        ),
        (
            "Instance.Provision",
            json!({"Spec": {"Attachments": "disk"}}),
            "params.Spec.Attachments",
        ),
        ("Instance.Provision", json!({"Spec": "x"}), "params.Spec"),
        (
            "Instance.Label",
            json!({"Instance": "i-1", "Labels": {"a": 1}}),
            "params.Labels.a",
        ),
        (
            "Instance.Destroy",
            json!({"Instance": 3}),
            "params.Instance",
        ),
        (
            "Instance.Destroy",
            json!({"Instance": "i-1", "Context": {"Reason": []}}),
            "params.Context.Reason",
        ),
        (
            "Instance.DescribeInstances",
            json!({"Tags": "env=prod"}),
            "params.Tags",
        ),
        (
            "Instance.DescribeInstances",
            json!({"Properties": "yes"}),
            "params.Properties",
        ),
        (
            "Flavor.Validate",
            json!({"Allocation": {"Size": -1}}),
            "params.Allocation.Size",
        ),
        (
            "Flavor.Prepare",
            json!({"Spec": {"Tags": "t"}}),
            "params.Spec.Tags",
        ),
        (
            "Flavor.Prepare",
            json!({"Index": {"Sequence": "first"}}),
            "params.Index.Sequence",
        ),
        (
            "Flavor.Healthy",
            json!({"Instance": {"ID": 1}}),
            "params.Instance.ID",
        ),
        (
            "Flavor.Drain",
            json!({"Instance": {"ID": "i-1", "Tags": [1]}}),
            "params.Instance.Tags",
        ),
        (
            "Group.CommitGroup",
            json!({"Spec": {"ID": ["w"]}}),
            "params.Spec.ID",
        ),
        (
            "Group.SetSize",
            json!({"ID": "w", "Size": -3}),
            "params.Size",
        ),
        (
            "Group.SetSize",
            json!({"ID": "w", "Size": "3"}),
            "params.Size",
        ),
        (
            "Group.DestroyInstances",
            json!({"ID": "w", "Instances": "i-1"}),
            "params.Instances",
        ),
        ("Group.Size", json!({"ID": 1}), "params.ID"),
        ("Group.PauseRollout", json!({"Name": {}}), "params.Name"),
        // Missing required params.
        ("Instance.Provision", json!({}), "params"),
        ("Instance.Label", json!({"Labels": {}}), "params"),
        ("Instance.Destroy", json!({}), "params"),
        ("Flavor.Healthy", json!({}), "params"),
        ("Flavor.Drain", json!({"Instance": {}}), "params.Instance"),
        ("Group.CommitGroup", json!({"Name": "group"}), "params.Spec"),
        ("Group.CommitGroup", json!({"Spec": {}}), "params.Spec.ID"),
        ("Group.PlanGroup", json!({}), "params.Spec"),
        ("Group.SetSize", json!({"ID": "w"}), "params.Size"),
        (
            "Group.DestroyInstances",
            json!({"ID": "w"}),
            "params.Instances",
        ),
        ("Group.DestroyGroup", json!({"Name": "group"}), "params.ID"),
        ("Group.FreeGroup", json!({}), "params.ID"),
        ("Group.DescribeGroup", json!({"ID": ""}), "params.ID"),
        ("Group.UndoRollout", json!({}), "params.ID"),
        // Empty identifiers.
        (
            "Instance.Destroy",
            json!({"Instance": ""}),
            "params.Instance",
        ),
        (
            "Instance.Label",
            json!({"Instance": " "}),
            "params.Instance",
        ),
        (
            "Group.DestroyInstances",
            json!({"ID": "w", "Instances": ["i-1", ""]}),
            "params.Instances[1]",
        ),
        // Contradictions.
        (
            "Group.CommitGroup",
            json!({"ID": "a", "Spec": {"ID": "b"}}),
            "params.Spec.ID",
        ),
        (
            "Group.CommitGroup",
            json!({"Name": "group/a", "Spec": {"ID": "b"}}),
            "params.Spec.ID",
        ),
        (
            "Group.PlanGroup",
            json!({"ID": "a", "Spec": {"ID": "b"}}),
            "params.Spec.ID",
        ),
        (
            "Group.DestroyGroup",
            json!({"Name": "group/a", "ID": "b"}),
            "params.ID",
        ),
        (
            "Group.SetSize",
            json!({"Name": "group/a", "ID": "b", "Size": 1}),
            "params.ID",
        ),
    ];
    for (method, params, path) in cases {
        let err = error_of(&f.socket, method, params.clone()).await;
        assert_eq!(err["code"], -32602, "{method} {params}: {err}");
        let message = err["message"].as_str().unwrap();
        assert!(
            message.starts_with(path),
            "{method} {params}: message should start with {path}: {message}"
        );
        assert_eq!(err["data"]["Path"], path, "{method} {params}: {err}");
        assert!(err["data"]["Message"].is_string(), "{err}");
        assert_eq!(
            f.recorder.take(),
            Vec::<String>::new(),
            "{method} {params} reached the plugin"
        );
    }

    // The same checks pass good input through (so the recorder does see calls).
    for (method, params) in [
        ("Instance.Destroy", json!({"Instance": "i-1"})),
        ("Flavor.Drain", json!({"Instance": description})),
        (
            "Group.SetSize",
            json!({"Name": "group/w", "ID": "w", "Size": 2}),
        ),
        ("Group.DescribeGroup", json!({"Name": "group/w"})),
        (
            "Group.CommitGroup",
            json!({"Name": "group", "Spec": {"ID": "w"}}),
        ),
        (
            "Group.DestroyInstances",
            json!({"ID": "w", "Instances": []}),
        ),
    ] {
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
        let (_, text) = post(&f.socket, body.to_string()).await;
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(v.get("error").is_none(), "{method}: {v}");
        assert_eq!(f.recorder.take().len(), 1, "{method}");
    }
}

#[tokio::test]
async fn broken_envelopes_get_errors_and_reach_nobody() {
    let f = fixture().await;
    let long_method = format!("Instance.{}", "x".repeat(100_000));
    let cases: Vec<(Vec<u8>, i64)> = vec![
        (b"".to_vec(), -32700),
        (b"{".to_vec(), -32700),
        (b"\xff\xfe{}".to_vec(), -32700),
        (b"null".to_vec(), -32600),
        (b"42".to_vec(), -32600),
        (b"[]".to_vec(), -32600),
        (br#"{"jsonrpc":"2.0"}"#.to_vec(), -32600),
        (br#"{"jsonrpc":2,"method":"Instance.Destroy","id":1}"#.to_vec(), -32600),
        (br#"{"jsonrpc":"2.0","method":7,"id":1}"#.to_vec(), -32600),
        (br#"{"method":"Instance.Destroy","params":{"Instance":"i-1"},"id":1}"#.to_vec(), -32600),
        (br#"{"jsonrpc":"2.0","method":"Instance.Destroy","params":{"Instance":"i-1"},"id":{"a":1}}"#.to_vec(), -32600),
        (br#"{"jsonrpc":"2.0","method":"Instance.Destroy","params":{"Instance":"i-1"},"id":[1]}"#.to_vec(), -32600),
        (br#"{"jsonrpc":"2.0","method":"Instance.Destroy","params":{"Instance":"i-1"},"id":true}"#.to_vec(), -32600),
        (br#"{"jsonrpc":"2.0","method":"Instance.Destroy","params":"i-1","id":1}"#.to_vec(), -32602),
        (br#"{"jsonrpc":"2.0","method":"Instance.Destroy","params":[{"Instance":"i-1"},{}],"id":1}"#.to_vec(), -32602),
        (br#"{"jsonrpc":"2.0","method":"Instance.Destroy","params":[1],"id":1}"#.to_vec(), -32602),
        (br#"{"jsonrpc":"2.0","method":"Destroy","params":{"Instance":"i-1"},"id":1}"#.to_vec(), -32601),
        (br#"{"jsonrpc":"2.0","method":"Group.Explode","params":{"ID":"w"},"id":1}"#.to_vec(), -32601),
        (br#"{"jsonrpc":"2.0","method":"Instance.Destroy","params":{"Instance":"i-1"},"params":{},"id":1}"#.to_vec(), -32600),
        (
            format!(r#"{{"jsonrpc":"2.0","method":"{long_method}","params":{{}},"id":1}}"#).into_bytes(),
            -32601,
        ),
        // Nested deeper than the JSON parser's recursion limit.
        (
            format!(
                r#"{{"jsonrpc":"2.0","method":"Instance.Provision","params":{{"Spec":{{"Properties":{}{}}}}},"id":1}}"#,
                "[".repeat(10_000),
                "]".repeat(10_000)
            )
            .into_bytes(),
            -32602,
        ),
    ];
    for (body, code) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
        let (status, text) = post(&f.socket, body).await;
        assert_eq!(status, 200, "{shown}: {text}");
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{shown}: {e}: {text}"));
        assert_eq!(v["error"]["code"], code, "{shown}: {v}");
        assert!(v.get("result").is_none(), "{shown}: {v}");
        assert!(
            text.len() < 4096,
            "{shown}: the error must not echo the whole input ({} bytes)",
            text.len()
        );
        assert_eq!(f.recorder.take(), Vec::<String>::new(), "{shown}");
    }
}
