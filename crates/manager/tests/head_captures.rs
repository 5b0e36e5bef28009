//! Replays every exchange recorded from the original InfraKit's last-version manager
//! (`tests/data/head-manager.txt`) against our manager `mystack` over its Unix socket, in the
//! order its CLI made them, and compares the answers: the same objects in `Handshake.Hello`,
//! every field the original answered present with the same type (ours may add fields, which Go
//! clients ignore), and the same texts: echoed names and IDs, `Details`, sizes and errors.
//! A group's `Properties` are the user's own spec: the original answered them with its defaults
//! filled in (`"Updating": {"Duration": "0s", ...}`), we answer them as committed, so only their
//! presence is compared.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};

use common::mystack;
use infrakit_testkit::eventually;
use infrakit_testkit::wire::rpc;

/// One recorded exchange: what the CLI sent, and the original's answer (whole, or cut short
/// when it was recorded).
struct Exchange {
    request: String,
    answer: Answer,
}

enum Answer {
    Whole(Value),
    Cut(String),
}

/// The exchanges by heading (`Group.Size mystack/cattle`).
fn recorded() -> BTreeMap<String, Exchange> {
    let text = include_str!("data/head-manager.txt");
    let mut out = BTreeMap::new();
    let mut lines = text.lines().filter(|l| !l.starts_with('#'));
    while let Some(line) = lines.next() {
        let Some(heading) = line.strip_prefix("== ") else {
            continue;
        };
        let request = lines.next().unwrap().strip_prefix("--> ").unwrap();
        let answer = lines.next().unwrap().strip_prefix("<-- ").unwrap();
        let answer = match serde_json::from_str(answer) {
            Ok(v) => Answer::Whole(v),
            Err(_) => Answer::Cut(answer.to_string()),
        };
        out.insert(
            heading.to_string(),
            Exchange {
                request: request.to_string(),
                answer,
            },
        );
    }
    out
}

/// Checks that `ours` has every field `theirs` has, with the same JSON type (a `null` of
/// theirs matches anything); `Properties` (a user's spec) are only checked to be there.
fn covers(theirs: &Value, ours: &Value, path: &str, faults: &mut Vec<String>) {
    match (theirs, ours) {
        (Value::Null, _) => {}
        (Value::Object(t), Value::Object(o)) => {
            for (k, tv) in t {
                match o.get(k) {
                    Some(_) if k == "Properties" || k == "properties" => {}
                    Some(ov) => covers(tv, ov, &format!("{path}.{k}"), faults),
                    None => faults.push(format!("{path}.{k}: missing")),
                }
            }
        }
        (Value::Array(t), Value::Array(o)) => {
            if let (Some(tv), Some(ov)) = (t.first(), o.first()) {
                covers(tv, ov, &format!("{path}[0]"), faults);
            }
        }
        (t, o) if std::mem::discriminant(t) == std::mem::discriminant(o) => {}
        (t, o) => faults.push(format!("{path}: theirs {t}, ours {o}")),
    }
}

fn assert_covers(heading: &str, theirs: &Value, ours: &Value) {
    let mut faults = Vec::new();
    covers(theirs, ours, "", &mut faults);
    assert!(
        faults.is_empty(),
        "{heading}: {faults:#?}\nours: {ours}\ntheirs: {theirs}"
    );
}

/// The field names of an answer cut short when recorded, up to its first `Properties` (the
/// user's spec, where our instance plugin may keep other fields): each must be in ours.
fn assert_has_fields(heading: &str, cut: &str, ours: &Value) {
    let head = cut
        .split("\"Properties\":")
        .next()
        .unwrap()
        .split("\"properties\":")
        .next()
        .unwrap();
    let mut theirs = BTreeSet::new();
    for part in head.split('"').collect::<Vec<_>>().windows(2) {
        if part[1].starts_with(':') && !part[0].is_empty() && !part[0].contains(' ') {
            theirs.insert(part[0].to_string());
        }
    }
    let mut mine = BTreeSet::new();
    collect_keys(ours, &mut mine);
    let missing: Vec<_> = theirs.difference(&mine).collect();
    assert!(
        missing.is_empty(),
        "{heading}: missing {missing:?} in {ours}"
    );
}

fn collect_keys(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.insert(k.clone());
                collect_keys(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_keys(v, out)),
        _ => {}
    }
}

/// The objects of each interface in a `Handshake.Hello` answer, as sets.
fn objects(hello: &Value) -> BTreeMap<String, BTreeSet<String>> {
    hello["result"]["Objects"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(iface, objs)| {
            let names = objs
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["Name"].as_str().unwrap().to_string())
                .collect();
            (iface.clone(), names)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recorded_exchange_answers_as_the_original_did() {
    let dir = tempfile::tempdir().unwrap();
    let stack = mystack(dir.path()).await;
    let socket = stack.server.socket().to_path_buf();
    let all = recorded();
    let send = |heading: &str| {
        let request = all[heading].request.clone();
        let socket = socket.clone();
        async move { rpc(&socket, &request).await }
    };
    let whole = |heading: &str| match &all[heading].answer {
        Answer::Whole(v) => v.clone(),
        Answer::Cut(_) => panic!("{heading} was recorded cut short"),
    };
    let cut = |heading: &str| match &all[heading].answer {
        Answer::Cut(text) => text.clone(),
        Answer::Whole(v) => v.to_string(),
    };
    let same_objects = |heading: &str, ours: &Value| {
        let theirs = objects(&whole(heading));
        let ours = objects(ours);
        for (iface, names) in &theirs {
            assert_eq!(ours.get(iface), Some(names), "{heading}: {iface}");
        }
    };

    // Before any group: the collection alone.
    let ours = send("Handshake.Hello").await;
    same_objects("Handshake.Hello", &ours);

    let heading = "Group.CommitGroup mystack/groups";
    let ours = send(heading).await;
    assert_covers(heading, &whole(heading), &ours);
    assert_eq!(ours["result"], whole(heading)["result"], "{heading}");

    let members = || async {
        let r = send("Group.DescribeGroup mystack/cattle").await;
        r["result"]["Description"]["Instances"]
            .as_array()
            .map(Vec::len)
    };
    eventually("cattle at 5", Duration::from_secs(20), || async {
        (members().await == Some(5)).then_some(())
    })
    .await;

    let ours = send("Handshake.Hello #2").await;
    same_objects("Handshake.Hello #2", &ours);

    let heading = "Group.DescribeGroup mystack/cattle";
    let ours = send(heading).await;
    assert_has_fields(heading, &cut(heading), &ours);
    assert_eq!(ours["result"]["Name"], "mystack/cattle");
    assert_eq!(ours["result"]["ID"], "cattle");

    let heading = "Controller.Describe mystack/cattle";
    let ours = send(heading).await;
    assert_has_fields(heading, &cut(heading), &ours);
    let object = &ours["result"]["Objects"][0];
    assert_eq!(ours["result"]["Objects"].as_array().unwrap().len(), 1);
    assert_eq!(object["kind"], "group");
    assert_eq!(object["version"], "Group/0.1.1");
    assert_eq!(
        object["metadata"],
        json!({"id": "cattle", "name": "group/cattle", "tags": null})
    );
    assert_eq!(object["state"]["Instances"].as_array().unwrap().len(), 5);

    for heading in [
        "Group.CommitGroup mystack/cattle",
        "Group.Size mystack/cattle",
        "Group.SetSize mystack/cattle",
        "Group.DescribeGroup mystack/groups",
    ] {
        let ours = send(heading).await;
        assert_covers(heading, &whole(heading), &ours);
        let theirs = whole(heading);
        match theirs.get("error") {
            Some(e) => assert_eq!(ours["error"], *e, "{heading}"),
            None => assert_eq!(ours["result"], theirs["result"], "{heading}"),
        }
    }

    for heading in [
        "Group.InspectGroups mystack/groups",
        "Group.InspectGroups mystack/cattle",
    ] {
        let ours = send(heading).await;
        assert_covers(heading, &whole(heading), &ours);
        let theirs = whole(heading);
        assert_eq!(ours["result"]["Name"], theirs["result"]["Name"]);
        assert_eq!(ours["result"]["ID"], "");
        assert_eq!(
            ours["result"]["Groups"][0]["Properties"]["Allocation"]["Size"], 3,
            "{heading}: the SetSize above is in the spec"
        );
    }

    let heading = "Group.FreeGroup mystack/cattle";
    let ours = send(heading).await;
    assert_covers(heading, &whole(heading), &ours);
    assert_eq!(ours["result"]["Name"], "mystack/cattle");
    let after = send("Handshake.Hello").await;
    assert_eq!(
        objects(&after)["Group/0.1.1"],
        BTreeSet::from(["groups".to_string()]),
        "a freed group leaves Hello"
    );

    // The CLI commits it again (to the collection), then destroys it.
    send("Group.CommitGroup mystack/groups").await;
    let heading = "Group.DestroyGroup mystack/cattle";
    let ours = send(heading).await;
    assert_covers(heading, &whole(heading), &ours);
    assert_eq!(ours["result"]["ID"], "cattle");

    stack.stop().await;
}
