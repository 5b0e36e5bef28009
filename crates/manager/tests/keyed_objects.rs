//! The manager's keyed objects beyond the recorded exchanges, over its socket: routing edge
//! cases, the Controller and Stack calls, and the `status` and `vars` metadata trees.

mod common;

use std::time::Duration;

use serde_json::{json, Value};

use common::mystack;
use infrakit_testkit::eventually;
use infrakit_testkit::wire::call;

fn cattle(size: u64) -> Value {
    json!({
        "ID": "cattle",
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "instance-file", "Properties": {"Note": "v1"}},
            "Flavor": {"Plugin": "flavor-vanilla", "Properties": {}}
        }
    })
}

fn error(r: &Value) -> &str {
    r["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {r}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_routed_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let stack = mystack(dir.path()).await;
    let s = stack.server.socket();

    let r = call(
        s,
        "Group.CommitGroup",
        json!({"Name": "mystack/groups", "Spec": cattle(2)}),
    )
    .await;
    assert_eq!(r["result"]["Details"], "Managing 2 instances", "{r}");

    // An ID that contradicts the object is refused, naming both.
    let r = call(
        s,
        "Group.Size",
        json!({"Name": "mystack/cattle", "ID": "web"}),
    )
    .await;
    assert_eq!(
        error(&r),
        "params.ID: 'web' contradicts params.Name, which names group 'cattle'"
    );
    // The object alone names the group.
    let r = call(s, "Group.Size", json!({"Name": "mystack/cattle"})).await;
    assert_eq!(
        r["result"],
        json!({"Name": "mystack/cattle", "ID": "cattle", "Size": 2})
    );
    // IDs that look like paths are never another group.
    let r = call(
        s,
        "Group.InspectGroups",
        json!({"Name": "mystack/a/cattle"}),
    )
    .await;
    assert_eq!(error(&r), "not found: mystack/a/cattle (key=a/cattle)");
    let r = call(
        s,
        "Controller.Describe",
        json!({"Name": "mystack/nope", "Metadata": null}),
    )
    .await;
    assert_eq!(error(&r), "not found: mystack/nope (key=nope)");

    // Freed between a client's Hello and its call: the group is not there, and nothing else
    // is acted on.
    let hello = call(s, "Handshake.Hello", json!({})).await;
    assert!(hello["result"]["Objects"]["Group/0.1.1"]
        .as_array()
        .unwrap()
        .contains(&json!({"Name": "cattle", "ProxyFor": ""})));
    call(
        s,
        "Group.FreeGroup",
        json!({"Name": "mystack/cattle", "ID": "cattle"}),
    )
    .await;
    for method in ["Group.DescribeGroup", "Group.SetSize", "Group.DestroyGroup"] {
        let r = call(
            s,
            method,
            json!({"Name": "mystack/cattle", "ID": "cattle", "Size": 1}),
        )
        .await;
        assert_eq!(error(&r), "Group 'cattle' is not being watched", "{method}");
    }
    let r = call(s, "Group.InspectGroups", json!({"Name": "mystack/cattle"})).await;
    assert_eq!(error(&r), "not found: mystack/cattle (key=cattle)");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_and_stack_calls_manage_groups_as_objects() {
    let dir = tempfile::tempdir().unwrap();
    let stack = mystack(dir.path()).await;
    let s = stack.server.socket();
    let object = json!({
        "kind": "group",
        "version": "Group/0.1.1",
        "metadata": {"name": "group/cattle"},
        "properties": cattle(2)["Properties"],
    });

    // A plan changes nothing; a commit makes the group.
    let r = call(
        s,
        "Controller.Plan",
        json!({"Name": "mystack/groups", "Operation": 0, "Spec": object}),
    )
    .await;
    assert_eq!(
        r["result"]["Plan"]["Message"],
        json!(["Managing 2 instances"])
    );
    assert_eq!(r["result"]["Object"]["metadata"]["id"], "cattle");
    let r = call(s, "Manager.Specs", json!({})).await;
    assert_eq!(r["result"]["Specs"], json!([]));

    let r = call(
        s,
        "Controller.Commit",
        json!({"Name": "mystack/groups", "Operation": 0, "Spec": object}),
    )
    .await;
    assert_eq!(
        r["result"]["Plan"]["Message"],
        json!(["Managing 2 instances"]),
        "{r}"
    );
    let r = call(s, "Manager.Specs", json!({})).await;
    assert_eq!(r["result"]["Specs"][0]["metadata"]["name"], "group/cattle");
    assert_eq!(
        r["result"]["Specs"][0]["properties"],
        cattle(2)["Properties"]
    );

    // A group object refuses a spec for another group, with the field.
    let mut web = object.clone();
    web["metadata"]["name"] = json!("group/web");
    let r = call(
        s,
        "Controller.Commit",
        json!({"Name": "mystack/cattle", "Operation": 0, "Spec": web}),
    )
    .await;
    assert_eq!(
        r["error"]["data"]["Path"], "params.Spec.metadata.name",
        "{r}"
    );
    let mut ingress = object.clone();
    ingress["kind"] = json!("ingress");
    let r = call(s, "Manager.Enforce", json!({"Specs": [object, ingress]})).await;
    assert_eq!(r["error"]["data"]["Path"], "params.Specs[1].kind", "{r}");

    // Inspect: each group with its state; Enforce commits a new size.
    eventually("2 members", Duration::from_secs(20), || async {
        let r = call(s, "Manager.Inspect", json!({})).await;
        let n = r["result"]["Objects"][0]["state"]["Instances"]
            .as_array()
            .map(Vec::len);
        (n == Some(2)).then_some(())
    })
    .await;
    let mut bigger = object.clone();
    bigger["properties"]["Allocation"]["Size"] = json!(3);
    let r = call(s, "Manager.Enforce", json!({"Specs": [bigger]})).await;
    assert!(r["result"]["Details"][0]
        .as_str()
        .unwrap()
        .starts_with("Committed cattle: "));
    let r = call(s, "Group.Size", json!({"Name": "mystack/cattle"})).await;
    assert_eq!(r["result"]["Size"], 3);

    // Free through the controller: the group leaves, its instances stay.
    let r = call(
        s,
        "Controller.Free",
        json!({"Name": "mystack/cattle", "Metadata": null}),
    )
    .await;
    assert_eq!(r["result"]["Objects"][0]["metadata"]["id"], "cattle", "{r}");
    let r = call(s, "Manager.Specs", json!({})).await;
    assert_eq!(r["result"]["Specs"], json!([]));

    // Adopted again through the stack, then destroyed by a destroy operation.
    call(s, "Manager.Enforce", json!({"Specs": [bigger]})).await;
    let r = call(
        s,
        "Controller.Commit",
        json!({"Name": "", "Operation": 1, "Spec": bigger}),
    )
    .await;
    assert_eq!(
        r["result"]["Plan"]["Message"],
        json!(["Destroyed cattle"]),
        "{r}"
    );
    let files = dir.path().join("files");
    eventually("no instances left", Duration::from_secs(20), || async {
        let left = std::fs::read_dir(&files)
            .map(|d| d.filter_map(|e| e.ok()).count())
            .unwrap_or(0);
        (left == 0).then_some(())
    })
    .await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vars_change_only_with_the_hash_of_what_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let stack = mystack(dir.path()).await;
    let s = stack.server.socket();

    let r = call(
        s,
        "Updatable.Keys",
        json!({"Name": "mystack/status", "Path": "."}),
    )
    .await;
    assert_eq!(r["result"]["Nodes"], json!(["leader", "name"]));
    let r = call(
        s,
        "Updatable.Get",
        json!({"Name": "mystack/status", "Path": "leader"}),
    )
    .await;
    assert_eq!(r["result"]["Value"], true);
    let r = call(
        s,
        "Updatable.Changes",
        json!({"Name": "mystack/status", "Changes": [{"Path": "leader", "Value": false}]}),
    )
    .await;
    assert_eq!(error(&r), "readonly");

    let r = call(
        s,
        "Updatable.Changes",
        json!({"Name": "mystack/vars", "Changes": [{"Path": "zone/size", "Value": 3}]}),
    )
    .await;
    let proposal = r["result"].clone();
    assert_eq!(proposal["Original"], json!({}));
    assert_eq!(proposal["Proposed"], json!({"zone": {"size": 3}}));
    // Another change lands first: the proposal made before it no longer commits.
    let r = call(
        s,
        "Updatable.Changes",
        json!({"Name": "mystack/vars", "Changes": [{"Path": ["zone", "name"], "Value": "east"}]}),
    )
    .await;
    let first = r["result"].clone();
    let r = call(
        s,
        "Updatable.Commit",
        json!({"Name": "mystack/vars", "Proposed": first["Proposed"], "Cas": first["Cas"]}),
    )
    .await;
    assert_eq!(r["result"], json!({"Name": "mystack/vars"}), "{r}");
    let r = call(
        s,
        "Updatable.Commit",
        json!({"Name": "mystack/vars", "Proposed": proposal["Proposed"], "Cas": proposal["Cas"]}),
    )
    .await;
    assert_eq!(error(&r), "cas mismatch");
    let r = call(
        s,
        "Updatable.Get",
        json!({"Name": "mystack/vars", "Path": "zone"}),
    )
    .await;
    assert_eq!(r["result"]["Value"], json!({"name": "east"}));

    // Kept in the store: a manager started again on the same home reads them back.
    stack.stop().await;
    let again = mystack(dir.path()).await;
    let r = call(
        again.server.socket(),
        "Updatable.Get",
        json!({"Name": "mystack/vars", "Path": "zone/name"}),
    )
    .await;
    assert_eq!(r["result"]["Value"], "east");
    let r = call(
        again.server.socket(),
        "Updatable.Keys",
        json!({"Name": "mystack", "Path": "."}),
    )
    .await;
    assert_eq!(error(&r), "not found: mystack (key=)");
    again.stop().await;
}
