//! The original InfraKit's end-to-end flow against our manager named `mystack`, with our
//! instance-file and flavor-vanilla plugins, driven call by call as clients of two generations
//! drive it:
//!
//! - the last version's CLI: `Handshake.Hello` before every command, only objects listed there
//!   addressed, every call keyed (`"Name": "mystack/cattle"`), `mystack/groups commit-group`;
//! - a v0.5 client: `Handshake.Implements`, then the Group calls with the group's ID and no
//!   object in `Name`.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use common::{eventually, example, Home};
use infrakit_testkit::wire::call_blocking;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// How a client addresses the manager's groups.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Client {
    /// The last version's CLI: keyed objects, learnt from `Handshake.Hello`.
    Keyed,
    /// A v0.5 client: the socket's name, the group's ID.
    Plain,
}

struct Stack {
    home: Home,
    socket: PathBuf,
    files: PathBuf,
    client: Client,
}

impl Stack {
    fn start(client: Client) -> Stack {
        let home = Home::new();
        let files = home.path().join("files");
        home.ok(&["plugin", "start", "flavor-vanilla"]);
        home.ok(&[
            "plugin",
            "start",
            "instance-file",
            "--dir",
            files.to_str().unwrap(),
        ]);
        home.ok(&["manager", "--name", "mystack", "start"]);
        let socket = home.path().join("plugins").join("mystack");
        let stack = Stack {
            home,
            socket,
            files,
            client,
        };
        eventually("mystack leads", WAIT, || {
            let r = stack.raw("Manager.IsLeader", json!({}));
            (r["result"]["Leader"] == true).then_some(())
        });
        stack
    }

    fn raw(&self, method: &str, params: Value) -> Value {
        call_blocking(&self.socket, method, params)
    }

    /// What the last version's CLI can address: every `mystack/<object>` of `Group/0.1.1`.
    fn hello_groups(&self) -> BTreeSet<String> {
        let r = self.raw("Handshake.Hello", json!({}));
        r["result"]["Objects"]["Group/0.1.1"]
            .as_array()
            .unwrap_or_else(|| panic!("no Group/0.1.1 objects: {r}"))
            .iter()
            .map(|o| o["Name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Makes a Group call on `object` (`groups` or a group ID) as this client would; the result,
    /// or the error's message.
    fn group(&self, method: &str, object: &str, mut params: Value) -> Result<Value, String> {
        match self.client {
            Client::Keyed => {
                let objects = self.hello_groups();
                assert!(
                    objects.contains(object),
                    "the CLI cannot address mystack/{object}: Hello lists {objects:?}"
                );
                params["Name"] = json!(format!("mystack/{object}"));
            }
            Client::Plain => {
                let r = self.raw("Handshake.Implements", json!({}));
                let apis = r["result"]["APIs"].as_array().unwrap();
                assert!(apis.contains(&json!({"Name": "Group", "Version": "0.1.0"})));
                params["Name"] = json!("mystack");
            }
        }
        let r = self.raw(method, params);
        match (r.get("result"), r.get("error")) {
            (Some(result), None) => Ok(result.clone()),
            (None, Some(e)) => Err(e["message"].as_str().unwrap_or_default().to_string()),
            _ => panic!("neither result nor error: {r}"),
        }
    }

    fn commit(&self, object: &str, spec: &Value, pretend: bool) -> String {
        let r = self
            .group(
                "Group.CommitGroup",
                object,
                json!({"Spec": spec, "Pretend": pretend}),
            )
            .unwrap();
        r["Details"].as_str().unwrap().to_string()
    }

    /// `mystack/cattle ls -q`: the members' IDs.
    fn members(&self) -> BTreeSet<String> {
        let r = self
            .group("Group.DescribeGroup", "cattle", json!({"ID": "cattle"}))
            .unwrap();
        r["Description"]["Instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["ID"].as_str().unwrap().to_string())
            .collect()
    }

    fn files(&self) -> BTreeSet<String> {
        std::fs::read_dir(&self.files)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until the group has `n` members and as many instance files.
    fn settles_at(&self, n: usize) -> BTreeSet<String> {
        eventually(&format!("cattle at {n} members"), WAIT, || {
            let m = self.members();
            (m.len() == n && self.files() == m).then_some(m)
        })
    }
}

fn spec(file: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(example(file)).unwrap()).unwrap()
}

/// The end-to-end flow of the original's last version (its `e2e-test-1.sh`), call by call.
fn end_to_end(client: Client) {
    let stack = Stack::start(client);
    if client == Client::Keyed {
        assert_eq!(stack.hello_groups(), BTreeSet::from(["groups".to_string()]));
    }

    let first = stack.commit("groups", &spec("cattle.json"), false);
    assert_eq!(first, "Managing 5 instances");
    let five = stack.settles_at(5);
    if client == Client::Keyed {
        assert_eq!(
            stack.hello_groups(),
            BTreeSet::from(["groups".to_string(), "cattle".to_string()])
        );
    }

    let pretend = stack.commit("cattle", &spec("cattle2.json"), true);
    assert_eq!(
        pretend,
        "Performing a rolling update on 5 instances, then adding 5 instances to increase the group size to 10"
    );
    assert_eq!(stack.members(), five, "a pretend commit changes nothing");

    stack.commit("cattle", &spec("cattle2.json"), false);
    let ten = eventually("10 members on the new configuration", WAIT, || {
        let m = stack.members();
        (m.len() == 10 && m.is_disjoint(&five) && stack.files() == m).then_some(m)
    });

    // Three instance files deleted: healed back to ten.
    let killed: Vec<&String> = ten.iter().take(3).collect();
    for id in &killed {
        std::fs::remove_file(stack.files.join(id)).unwrap();
    }
    let healed = eventually("healed to 10", WAIT, || {
        let m = stack.members();
        (m.len() == 10 && killed.iter().all(|k| !m.contains(*k)) && stack.files() == m).then_some(m)
    });
    assert_eq!(healed.len(), 10);

    // `mystack/cattle scale 5`: Size, then SetSize, and the CLI's sentence from their answers.
    let size = stack
        .group("Group.Size", "cattle", json!({"ID": "cattle"}))
        .unwrap();
    assert_eq!(size["Size"], 10);
    stack
        .group(
            "Group.SetSize",
            "cattle",
            json!({"ID": "cattle", "Size": 5}),
        )
        .unwrap();
    assert_eq!(
        format!("Group cattle at {} instances, scale to 5", size["Size"]),
        "Group cattle at 10 instances, scale to 5"
    );
    let scaled = stack.settles_at(5);

    // free-group, then a re-commit of the same spec adopts the five, replacing none.
    let inspected = stack
        .group("Group.InspectGroups", "groups", json!({"ID": ""}))
        .unwrap();
    let kept = inspected["Groups"][0].clone();
    assert_eq!(kept["ID"], "cattle");
    stack
        .group("Group.FreeGroup", "cattle", json!({"ID": "cattle"}))
        .unwrap();
    if client == Client::Keyed {
        assert_eq!(stack.hello_groups(), BTreeSet::from(["groups".to_string()]));
    }
    assert_eq!(
        stack.files(),
        scaled,
        "freeing a group leaves its instances"
    );
    stack.commit("groups", &kept, false);
    assert_eq!(
        stack.settles_at(5),
        scaled,
        "the re-commit adopted the five"
    );

    stack
        .group("Group.DestroyGroup", "cattle", json!({"ID": "cattle"}))
        .unwrap();
    eventually("no instance files left", WAIT, || {
        stack.files().is_empty().then_some(())
    });
    let gone = stack
        .group("Group.DescribeGroup", "groups", json!({"ID": "cattle"}))
        .unwrap_err();
    assert_eq!(gone, "Group 'cattle' is not being watched");
    drop(stack.home);
}

#[test]
fn the_last_versions_keyed_flow_passes_against_mystack() {
    end_to_end(Client::Keyed);
}

#[test]
fn the_v05_flow_still_passes_against_mystack() {
    end_to_end(Client::Plain);
}

/// `mystack/groups`: describing the collection as a group is the original's error; an object
/// that is not there is not found.
#[test]
fn the_collection_is_not_a_group_and_unknown_objects_are_not_found() {
    let stack = Stack::start(Client::Keyed);
    let r = stack.raw(
        "Group.DescribeGroup",
        json!({"Name": "mystack/groups", "ID": "groups"}),
    );
    assert_eq!(
        r["error"],
        json!({"code": -32000, "message": "Group 'groups' is not being watched", "data": null})
    );
    let r = stack.raw(
        "Group.InspectGroups",
        json!({"Name": "mystack/nope", "ID": ""}),
    );
    assert_eq!(r["error"]["message"], "not found: mystack/nope (key=nope)");
}
